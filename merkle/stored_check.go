package merkle

import (
	"bytes"
	"context"
	"sort"
)

// StoredCheck is what Stored.Check found.
type StoredCheck struct {
	Entries int64  // entries read
	Nodes   int64  // aggregate nodes read
	Sum     Digest // of every entry, as stored
	// BadEntries counts entries that do not decode or whose stored EntryHash is not the
	// hash of their fields.
	BadEntries int64
	// BadNodes counts nodes whose digest is not the sum of the level below over their
	// span, nodes missing where an entry of their level is or present where none is,
	// levels that do not exist or should not, and a wrong top-level record.
	BadNodes int64
}

// OK reports whether the check found nothing wrong.
func (c StoredCheck) OK() bool { return c.BadEntries == 0 && c.BadNodes == 0 }

// checkNode is a node read by Check, with the sum of its children.
type checkNode struct {
	pos  []byte
	head bool
	d    Digest
	sum  Digest
}

// Check reads the whole index and checks it against its own definition (see the type's
// documentation): each entry's stored EntryHash is the hash of its fields; at each level
// k from 1 to the top, there is a node exactly at each entry of level >= k, and each
// node's digest (the head's included) is the sum of the level below over its span; T is
// the highest entry level (at least 1) and no level above it is stored. It does not
// compare the entries with anything outside the index: Sum is for the caller to compare
// with the rows. Memory: the nodes of one level at a time (level 1: about 1/16 of the
// entries). It stops early only for KV errors and ctx.
func (s *Stored) Check(ctx context.Context) (StoredCheck, error) {
	var c StoredCheck
	t, err := s.loadTop()
	if err != nil {
		return c, err
	}
	var tall []tallEntry // where the nodes must be
	var arena posArena
	maxLevel := 0
	if t == 0 {
		// An empty index stores nothing at all.
		err := s.kv.Iterate(s.levelStart(0), nil, false, func(key, _ []byte) bool {
			if !bytes.HasPrefix(key, s.prefix) {
				return false
			}
			c.BadNodes++
			return true
		})
		return c, err
	}
	var below []checkNode // the level under the one being checked (nil for level 0)
	for k := 1; k <= t; k++ {
		if err := ctx.Err(); err != nil {
			return c, err
		}
		nodes, err := s.checkLevel(k, &c)
		if err != nil {
			return c, err
		}
		add := func(p []byte, d Digest) {
			// The owner is the last node at or before p: the head (nodes[0]) if none.
			i := sort.Search(len(nodes)-1, func(i int) bool { return bytes.Compare(nodes[i+1].pos, p) > 0 })
			nodes[i].sum = nodes[i].sum.Add(d)
		}
		if k == 1 {
			if tall, err = s.checkEntries(ctx, &c, &arena, add); err != nil {
				return c, err
			}
			for _, e := range tall {
				maxLevel = max(maxLevel, e.level)
			}
		} else {
			for _, n := range below {
				if !n.head {
					add(n.pos, n.d)
				} else {
					nodes[0].sum = nodes[0].sum.Add(n.d) // the head below lies in the head above
				}
			}
		}
		// Each node is the sum of its span; nodes stand exactly at the entries of level >= k.
		want := 0
		for _, n := range nodes {
			if n.d != n.sum {
				c.BadNodes++
			}
			if n.head {
				continue
			}
			for want < len(tall) && (tall[want].level < k || bytes.Compare(tall[want].pos, n.pos) < 0) {
				if tall[want].level >= k {
					c.BadNodes++ // an entry of this level with no node
				}
				want++
			}
			if want < len(tall) && bytes.Equal(tall[want].pos, n.pos) {
				want++
			} else {
				c.BadNodes++ // a node at no entry of its level
			}
		}
		for ; want < len(tall); want++ {
			if tall[want].level >= k {
				c.BadNodes++
			}
		}
		below = nodes
	}
	if t != max(maxLevel, 1) {
		c.BadNodes++ // the top-level record disagrees with the entries
	}
	// No level above the top.
	err = s.kv.Iterate(s.levelKey(t+1, 0), s.metaKey(), false, func(_, _ []byte) bool {
		c.BadNodes++
		return true
	})
	return c, err
}

// tallEntry is an entry of level >= 1: nodes stand at its position up to its level.
type tallEntry struct {
	pos   []byte
	level int
}

// checkEntries reads level 0 for Check: it counts the entries, sums them, checks each
// stored EntryHash against its fields, hands each entry's digest to add, and returns the
// entries of level >= 1 in position order (positions copied into arena).
func (s *Stored) checkEntries(ctx context.Context, c *StoredCheck, arena *posArena, add func(pos []byte, d Digest)) ([]tallEntry, error) {
	var tall []tallEntry
	var cerr error
	err := s.kv.Iterate(s.levelStart(0), s.levelEnd(0), false, func(key, v []byte) bool {
		c.Entries++
		if c.Entries%4096 == 0 {
			if cerr = ctx.Err(); cerr != nil {
				return false
			}
		}
		_, pos, err := s.parseNode(0, key)
		if err != nil {
			c.BadEntries++
			return true
		}
		stored, herr := storedEntryHash(v)
		e, derr := s.decodeEntry(pos, v)
		if herr != nil || derr != nil {
			c.BadEntries++
			return true
		}
		if e.Hash() != stored {
			c.BadEntries++
		}
		d := Digest{Count: 1, Sum: stored}
		c.Sum = c.Sum.Add(d)
		if lvl := s.level(stored); lvl > 0 {
			tall = append(tall, tallEntry{pos: arena.copy(pos), level: lvl})
		}
		add(pos, d)
		return true
	})
	if err == nil {
		err = cerr
	}
	return tall, err
}

// checkLevel reads every node of level k, the head first (with a zero digest when none
// is stored, so that the level always has one). A node that does not decode counts as
// bad and is left out.
func (s *Stored) checkLevel(k int, c *StoredCheck) ([]checkNode, error) {
	nodes := []checkNode{{head: true}}
	var arena posArena
	err := s.kv.Iterate(s.levelStart(k), s.levelEnd(k), false, func(key, v []byte) bool {
		c.Nodes++
		head, pos, err := s.parseNode(k, key)
		if err == nil {
			var d Digest
			if d, err = nodeDigest(k, v); err == nil {
				if head {
					nodes[0].d = d
				} else {
					nodes = append(nodes, checkNode{pos: arena.copy(pos), d: d})
				}
				return true
			}
		}
		c.BadNodes++
		return true
	})
	return nodes, err
}
