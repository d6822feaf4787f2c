package merkle

// This file implements Stored, the Index persisted through a KV: a content-defined
// aggregate skip structure.
//
// Levels. An entry's level is the number of leading zero 4-bit nibbles of its EntryHash,
// capped at 12, so each level holds about 1/16 of the nodes of the level below, and the
// shape depends only on the set of entries, never on the order of writes. Level 0 holds the
// entries. For each level k in 1..T, with T = max(1, highest entry level), there is a node
// for every entry of level >= k, holding the Digest of all entries from its position
// (inclusive) to the next level-k node (exclusive), plus a head node covering the entries
// before the first level-k node. A level-k node's children are the level-(k-1) nodes in its
// span (about 16). Levels above T are not stored: their only node would be a head equal to
// the root.
//
// Key layout, under the caller's prefix P (everything is in P's keyspace):
//
//	P || 0x00 || position        -> entry: flags(1) || be64(ExpiresAt) || ValueHash(32) ||
//	                                 EntryHash(32), 73 bytes; key and version are the
//	                                 position's (Ordering.Split), the EntryHash is stored so
//	                                 that it is never recomputed
//	P || k || 0x00               -> head node of level k (1 <= k <= 12): Digest, 40 bytes
//	                                 (Digest.MarshalBinary); absent when it covers nothing
//	P || k || 0x01 || position   -> level-k node at position: Digest, 40 bytes
//	P || 0xFF                    -> meta: one byte, T; absent when the index is empty
//
// The stored bytes are a function of the set of entries alone (tests rebuild them from
// scratch and compare).
//
// Writes. Insert of an entry of level h reads the entry slot and, per level, the covering
// node (greatest node at or before the position: one reverse seek); at levels k <= h it
// also reads the next level-k node and the ~16 level-(k-1) nodes up to it, to split the
// covering node. All reads happen before the writes (so a KV that buffers writes and
// flushes before a scan flushes once per Insert). Remove merges the entry's nodes into
// their predecessors: per level one reverse seek reading at most two nodes. So a write costs
// O(T) seeks and O(T) node writes, plus O(16·h) reads for the rare high-level entries.
// Replacing an entry whose level does not change only adds the hash difference on the path;
// one whose level changes is a Remove then an Insert. When the top level is left with no
// node but its head, it is dropped (T shrinks), so T is always max(1, highest level).
//
// Batch applies many inserts and removes with the same result: it sorts them by position,
// applies those of entries of level >= 1 one by one, then sweeps the rest (level 0 before
// and after: they change no structure, only the sums of the nodes covering them) in
// position order, keeping the covering node of each level until the sweep passes its
// end, so each node is read and written once per batch (see stored_batch.go).
//
// Queries are forward walks. Digest and Digests start at the top level (a handful of
// nodes) and walk it across the range; a node strictly containing a cut point (lo, a bound,
// hi) is descended: its children are read in one forward scan that stops after the node's
// last cut, the rest of the node being its digest minus what was read. Neighbouring nodes
// to descend (at most one node apart) share one scan. A level whose nodes are much larger
// than the parts is thus crossed in a few node reads, and a level whose nodes are smaller
// than the parts is only read at the cut points: O(T·16) reads per cut, and one seek per
// descended run rather than per bound. Split counts the range, picks the level L whose
// nodes hold about count/k/4 entries, walks level L across the range with one scan
// accumulating counts, descends only at lo to rank the first node, and returns node
// positions (every node is an entry) nearest to the count quantiles; bounds that are level-L
// nodes then cost Digests no descent below level L. A cut point between two entries of
// a level-1 node costs Digests a read of that node's entries from its start to the cut.
//
// Sessions use the cut queries of stored_cuts.go instead (CutDigests, SplitCuts,
// SnapCuts): there a cut point stands for the first level-1 node at or after it, so every
// part is made of whole level-1 nodes and no entry is read to place a cut; a range
// spanning few level-1 nodes is answered by one scan of them.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"sort"
)

const (
	storedMaxLevel = 12
	storedHeadMark = 0x00
	storedNodeMark = 0x01
	storedMetaByte = 0xFF
	// storedRunGap is how many cut-free nodes may separate two nodes to descend for them to
	// share one scan: reading ~16 extra children is cheaper than a seek.
	storedRunGap = 1
	// storedEntrySize is the length of an encoded level-0 value.
	storedEntrySize = 1 + 8 + 32 + 32
)

// Stored is an Index kept in a KV (in production one Badger transaction). It is cheap to
// create: make one per transaction. It caches the top level between calls, so while it is
// in use no other writer may change its prefix in the same KV. Not safe for concurrent use.
type Stored struct {
	kv     KV
	prefix []byte
	o      Ordering
	nbits  int // bits of EntryHash per level: 4 (tests use less to get deep trees)
	top    int // T, valid when topOK
	topOK  bool
	stats  ReadStats
}

var _ Index = (*Stored)(nil)

// NewStored returns the index kept in kv under prefix (which it copies) in ordering o. It
// reads nothing until used.
func NewStored(kv KV, prefix []byte, o Ordering) *Stored {
	return newStoredBits(kv, prefix, o, 4)
}

func newStoredBits(kv KV, prefix []byte, o Ordering, nbits int) *Stored {
	return &Stored{kv: kv, prefix: append([]byte{}, prefix...), o: o, nbits: nbits}
}

// Stats reports what queries (Root, Digest, Digests, Split, Entries) have read through the
// KV since NewStored: Entries counts level-0 entries read, Nodes the aggregate nodes above.
// Reads made by Insert and Remove are not counted.
func (s *Stored) Stats() ReadStats { return s.stats }

// ---- keys and values ----

func (s *Stored) levelKey(level int, extra int) []byte {
	k := make([]byte, len(s.prefix)+1, len(s.prefix)+2+extra)
	copy(k, s.prefix)
	k[len(s.prefix)] = byte(level)
	return k
}

// nodeKey is the key of the node (level 0: entry) at pos.
func (s *Stored) nodeKey(level int, pos []byte) []byte {
	k := s.levelKey(level, len(pos))
	if level > 0 {
		k = append(k, storedNodeMark)
	}
	return append(k, pos...)
}

// headKey is the key of level's head node (level >= 1).
func (s *Stored) headKey(level int) []byte {
	return append(s.levelKey(level, 0), storedHeadMark)
}

// levelStart is the first key of level: its head, or the level-0 keyspace.
func (s *Stored) levelStart(level int) []byte {
	if level == 0 {
		return s.levelKey(0, 0)
	}
	return s.headKey(level)
}

// levelEnd is the key just past level.
func (s *Stored) levelEnd(level int) []byte {
	if level == 0 {
		return s.levelKey(1, 0)
	}
	return append(s.levelKey(level, 0), storedNodeMark+1)
}

// boundStart is the key of level's first non-head node, if any.
func (s *Stored) boundStart(level int) []byte {
	return append(s.levelKey(level, 0), storedNodeMark)
}

func (s *Stored) metaKey() []byte { return append(append([]byte{}, s.prefix...), storedMetaByte) }

// keyAfter is the smallest key greater than k.
func keyAfter(k []byte) []byte { return append(append(make([]byte, 0, len(k)+1), k...), 0) }

// parseNode splits a key of level into head flag and position (aliasing key).
func (s *Stored) parseNode(level int, key []byte) (head bool, pos []byte, err error) {
	p := len(s.prefix) + 1
	if level == 0 {
		if len(key) < p {
			return false, nil, errStoredCorrupt("short entry key")
		}
		return false, key[p:], nil
	}
	if len(key) < p+1 {
		return false, nil, errStoredCorrupt("short node key")
	}
	switch key[p] {
	case storedHeadMark:
		if len(key) != p+1 {
			return false, nil, errStoredCorrupt("long head key")
		}
		return true, nil, nil
	case storedNodeMark:
		return false, key[p+1:], nil
	}
	return false, nil, errStoredCorrupt("bad node key mark")
}

func errStoredCorrupt(what string) error {
	return fmt.Errorf("merkle: stored index corrupt: %s", what)
}

func encodeStoredEntry(e Entry, h Hash) []byte {
	v := make([]byte, storedEntrySize)
	v[0] = e.Flags
	binary.BigEndian.PutUint64(v[1:], uint64(e.ExpiresAt))
	copy(v[9:], e.ValueHash[:])
	copy(v[41:], h[:])
	return v
}

// storedEntryHash returns the EntryHash kept in an encoded entry.
func storedEntryHash(v []byte) (Hash, error) {
	var h Hash
	if len(v) != storedEntrySize {
		return h, errStoredCorrupt("entry value length")
	}
	copy(h[:], v[41:])
	return h, nil
}

func (s *Stored) decodeEntry(pos, v []byte) (Entry, error) {
	if len(v) != storedEntrySize {
		return Entry{}, errStoredCorrupt("entry value length")
	}
	key, ver, err := s.o.Split(pos)
	if err != nil {
		return Entry{}, errStoredCorrupt(err.Error())
	}
	e := Entry{Key: append([]byte{}, key...), Version: ver, Flags: v[0],
		ExpiresAt: int64(binary.BigEndian.Uint64(v[1:]))}
	copy(e.ValueHash[:], v[9:41])
	return e, nil
}

// nodeDigest decodes a value of level: a Digest, or at level 0 the entry's singleton digest.
func nodeDigest(level int, v []byte) (Digest, error) {
	if level == 0 {
		h, err := storedEntryHash(v)
		return Digest{Count: 1, Sum: h}, err
	}
	d, ok := UnmarshalDigest(v)
	if !ok || d.Count == 0 {
		return d, errStoredCorrupt("node digest")
	}
	return d, nil
}

// level is the level of an entry with hash h.
func (s *Stored) level(h Hash) int {
	z := 0
	for _, b := range h {
		if b != 0 {
			z += bits.LeadingZeros8(b)
			break
		}
		z += 8
		if z >= storedMaxLevel*s.nbits {
			break
		}
	}
	return min(z/s.nbits, storedMaxLevel)
}

// ---- low-level reads ----

// scan iterates [start, end) of level, handing fn the parsed node; count says whether the
// reads are a query's (counted in Stats). Keys passed to fn alias the KV's buffers.
func (s *Stored) scan(level int, start, end []byte, reverse, count bool,
	fn func(head bool, pos []byte, d Digest) bool) error {
	var ierr error
	err := s.kv.Iterate(start, end, reverse, func(k, v []byte) bool {
		if count {
			if level == 0 {
				s.stats.Entries++
			} else {
				s.stats.Nodes++
			}
		}
		head, pos, err := s.parseNode(level, k)
		if err != nil {
			ierr = err
			return false
		}
		d, err := nodeDigest(level, v)
		if err != nil {
			ierr = err
			return false
		}
		return fn(head, pos, d)
	})
	if err != nil {
		return err
	}
	return ierr
}

// posArena copies positions into shared chunks, so that reading many nodes costs a few
// allocations rather than one a node. Copies stay valid for the arena's life and after.
type posArena []byte

func (a *posArena) copy(p []byte) []byte {
	if len(*a)+len(p) > cap(*a) {
		*a = make([]byte, 0, max(len(p), min(max(2*cap(*a), 16*len(p)), 64<<10)))
	}
	off := len(*a)
	*a = append(*a, p...)
	return (*a)[off:len(*a):len(*a)]
}

// nodesIn reads the level-l nodes whose keys lie in [start, end), positions copied.
func (s *Stored) nodesIn(l int, start, end []byte) ([]storedNode, error) {
	var nodes []storedNode
	var arena posArena
	err := s.scan(l, start, end, false, true, func(head bool, p []byte, d Digest) bool {
		nodes = append(nodes, storedNode{pos: arena.copy(p), head: head, d: d})
		return true
	})
	return nodes, err
}

// storedNode is a node read from a level: its position (nil and head set for the head)
// and digest.
type storedNode struct {
	pos  []byte
	head bool
	d    Digest
}

func (s *Stored) key(level int, n storedNode) []byte {
	if n.head {
		return s.headKey(level)
	}
	return s.nodeKey(level, n.pos)
}

// lastNodes returns up to max nodes of level (>= 1) at or before pos, greatest first. When
// fewer exist, the head is reported with a zero digest in their place (a head covering
// nothing is not stored).
func (s *Stored) lastNodes(level int, pos []byte, max int, count bool) ([]storedNode, error) {
	out := make([]storedNode, 0, max)
	err := s.scan(level, s.headKey(level), keyAfter(s.nodeKey(level, pos)), true, count,
		func(head bool, p []byte, d Digest) bool {
			out = append(out, storedNode{pos: append([]byte{}, p...), head: head, d: d})
			return len(out) < max
		})
	if err != nil {
		return nil, err
	}
	if len(out) < max && (len(out) == 0 || !out[len(out)-1].head) {
		out = append(out, storedNode{head: true})
	}
	return out, nil
}

// sumLevel returns the digest of all nodes of level: the root when level is T.
func (s *Stored) sumLevel(level int, count bool) (Digest, error) {
	var sum Digest
	err := s.scan(level, s.levelStart(level), s.levelEnd(level), false, count,
		func(_ bool, _ []byte, d Digest) bool {
			sum = sum.Add(d)
			return true
		})
	return sum, err
}

// loadTop returns T, reading the meta record once per Stored.
func (s *Stored) loadTop() (int, error) {
	if s.topOK {
		return s.top, nil
	}
	v, ok, err := s.kv.Get(s.metaKey())
	if err != nil {
		return 0, err
	}
	t := 0
	if ok {
		if len(v) != 1 || v[0] < 1 || v[0] > storedMaxLevel {
			return 0, errStoredCorrupt("meta record")
		}
		t = int(v[0])
	}
	s.top, s.topOK = t, true
	return t, nil
}

func (s *Stored) setTop(t int) error {
	if t == s.top {
		return nil
	}
	s.top = t
	if t == 0 {
		return s.kv.Delete(s.metaKey())
	}
	return s.kv.Set(s.metaKey(), []byte{byte(t)})
}

// ---- writes ----

// storedWrite is one pending write: a Set, or a Delete when del is set.
type storedWrite struct {
	key, value []byte
	del        bool
}

func (s *Stored) apply(ws []storedWrite) error {
	for _, w := range ws {
		var err error
		if w.del {
			err = s.kv.Delete(w.key)
		} else {
			err = s.kv.Set(w.key, w.value)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// nodeWrite stores n at level, deleting a head that covers nothing.
func (s *Stored) nodeWrite(level int, n storedNode) (storedWrite, error) {
	if n.d.Count == 0 {
		if !n.head || !n.d.IsZero() {
			return storedWrite{}, errStoredCorrupt("node digest underflow")
		}
		return storedWrite{key: s.headKey(level), del: true}, nil
	}
	return storedWrite{key: s.key(level, n), value: n.d.MarshalBinary()}, nil
}

// Insert adds e at its position, replacing the entry already there. In KeyOrder, e.Version
// must be 0 (the position does not carry it). Cost: O(T) seeks and node writes.
func (s *Stored) Insert(e Entry) error {
	if s.o == KeyOrder && e.Version != 0 {
		return errKeyOrderVersion
	}
	pos := e.Position(s.o)
	h := e.Hash()
	val := encodeStoredEntry(e, h)
	k0 := s.nodeKey(0, pos)
	old, ok, err := s.kv.Get(k0)
	if err != nil {
		return err
	}
	if ok {
		if bytes.Equal(old, val) {
			return nil
		}
		oh, err := storedEntryHash(old)
		if err != nil {
			return err
		}
		if s.level(oh) == s.level(h) {
			return s.replace(pos, k0, val, oh, h)
		}
		if err := s.removeAt(pos, k0, oh); err != nil {
			return err
		}
	}
	return s.insertAt(pos, k0, val, h)
}

// replace swaps the entry at pos for one of the same level: the structure is unchanged,
// every node on the path gains the hash difference.
func (s *Stored) replace(pos, k0, val []byte, oh, h Hash) error {
	t, err := s.loadTop()
	if err != nil {
		return err
	}
	if t == 0 {
		return errStoredCorrupt("entry without meta record")
	}
	lvl := s.level(h)
	delta := Digest{Sum: h}.Sub(Digest{Sum: oh})
	ws := []storedWrite{{key: k0, value: val}}
	for k := 1; k <= t; k++ {
		ns, err := s.lastNodes(k, pos, 1, false)
		if err != nil {
			return err
		}
		n := ns[0]
		if k <= lvl && (n.head || !bytes.Equal(n.pos, pos)) {
			return errStoredCorrupt("missing node of an entry")
		}
		n.d = n.d.Add(delta)
		w, err := s.nodeWrite(k, n)
		if err != nil {
			return err
		}
		ws = append(ws, w)
	}
	return s.apply(ws)
}

// insertAt adds the entry (hash h, encoded val) at pos, where there is none.
func (s *Stored) insertAt(pos, k0, val []byte, h Hash) error {
	lvl := s.level(h)
	d := Digest{Count: 1, Sum: h}
	t, err := s.loadTop()
	if err != nil {
		return err
	}
	newT := max(t, lvl, 1)
	var ws []storedWrite
	if newT > t && t > 0 {
		// New levels start as a head covering everything so far.
		total, err := s.sumLevel(t, false)
		if err != nil {
			return err
		}
		for k := t + 1; k <= newT; k++ {
			ws = append(ws, storedWrite{key: s.headKey(k), value: total.MarshalBinary()})
		}
	}
	ws = append(ws, storedWrite{key: k0, value: val})
	below := d // digest of the entry's node one level down
	for k := 1; k <= newT; k++ {
		var cov storedNode
		if k <= t {
			ns, err := s.lastNodes(k, pos, 1, false)
			if err != nil {
				return err
			}
			cov = ns[0]
		} else {
			// A level created above: its head covers everything before pos.
			cov = storedNode{head: true}
			if t > 0 {
				cov.d, _ = UnmarshalDigest(ws[k-t-1].value)
			}
		}
		if k > lvl {
			cov.d = cov.d.Add(d)
		} else {
			// Split cov at pos: the new node takes the level-(k-1) nodes from pos up to
			// the next level-k node.
			// Levels above t are created by this insert and hold no node after pos yet.
			end := s.levelEnd(k - 1)
			if k <= t {
				err := s.scan(k, s.nodeKey(k, pos), s.levelEnd(k), false, false,
					func(_ bool, p []byte, _ Digest) bool {
						end = s.nodeKey(k-1, p)
						return false
					})
				if err != nil {
					return err
				}
			}
			sum := below
			if k-1 <= t {
				err := s.scan(k-1, keyAfter(s.nodeKey(k-1, pos)), end, false, false,
					func(_ bool, _ []byte, nd Digest) bool {
						sum = sum.Add(nd)
						return true
					})
				if err != nil {
					return err
				}
			}
			ws = append(ws, storedWrite{key: s.nodeKey(k, pos), value: sum.MarshalBinary()})
			cov.d = cov.d.Sub(sum.Sub(d))
			below = sum
		}
		w, err := s.nodeWrite(k, cov)
		if err != nil {
			return err
		}
		ws = append(ws, w)
	}
	if err := s.apply(ws); err != nil {
		return err
	}
	return s.setTop(newT)
}

// Remove deletes the entry at e's position (only Key and Version are looked at); removing
// an absent position is a no-op. Cost: O(T) seeks reading at most two nodes each, and O(T)
// node writes.
func (s *Stored) Remove(e Entry) error {
	pos := e.Position(s.o)
	k0 := s.nodeKey(0, pos)
	old, ok, err := s.kv.Get(k0)
	if err != nil || !ok {
		return err
	}
	oh, err := storedEntryHash(old)
	if err != nil {
		return err
	}
	return s.removeAt(pos, k0, oh)
}

// removeAt deletes the entry of hash oh at pos, merging its nodes into their predecessors.
func (s *Stored) removeAt(pos, k0 []byte, oh Hash) error {
	lvl := s.level(oh)
	d := Digest{Count: 1, Sum: oh}
	t, err := s.loadTop()
	if err != nil {
		return err
	}
	if t < max(lvl, 1) {
		return errStoredCorrupt("entry above the top level")
	}
	ws := []storedWrite{{key: k0, del: true}}
	emptied := false
	for k := 1; k <= t; k++ {
		var n storedNode
		if k <= lvl {
			ns, err := s.lastNodes(k, pos, 2, false)
			if err != nil {
				return err
			}
			if len(ns) < 2 || ns[0].head || !bytes.Equal(ns[0].pos, pos) {
				return errStoredCorrupt("missing node of an entry")
			}
			n = ns[1]
			n.d = n.d.Add(ns[0].d.Sub(d))
			ws = append(ws, storedWrite{key: s.nodeKey(k, pos), del: true})
		} else {
			ns, err := s.lastNodes(k, pos, 1, false)
			if err != nil {
				return err
			}
			n = ns[0]
			n.d = n.d.Sub(d)
		}
		w, err := s.nodeWrite(k, n)
		if err != nil {
			return err
		}
		ws = append(ws, w)
		if k == t && n.head && n.d.Count == 0 {
			emptied = true
		}
	}
	if err := s.apply(ws); err != nil {
		return err
	}
	if lvl >= t || emptied {
		return s.shrink()
	}
	return nil
}

// shrink lowers T while the top level has no node but its head.
func (s *Stored) shrink() error {
	t := s.top
	for t > 0 {
		found := false
		err := s.scan(t, s.boundStart(t), s.levelEnd(t), false, false,
			func(bool, []byte, Digest) bool { found = true; return false })
		if err != nil {
			return err
		}
		if found {
			break
		}
		if t > 1 {
			if err := s.kv.Delete(s.headKey(t)); err != nil {
				return err
			}
			t--
			continue
		}
		_, ok, err := s.kv.Get(s.headKey(1))
		if err != nil {
			return err
		}
		if !ok {
			t = 0
		}
		break
	}
	return s.setTop(t)
}

// ---- queries ----

// Root returns the digest of every entry: the sum of the top level's nodes (a handful).
func (s *Stored) Root() (Digest, error) {
	t, err := s.loadTop()
	if err != nil || t == 0 {
		return Digest{}, err
	}
	return s.sumLevel(t, true)
}

// Digest returns the digest of the entries in [lo, hi): O(T·16) node reads.
func (s *Stored) Digest(lo, hi []byte) (Digest, error) {
	if lo == nil && hi == nil {
		return s.Root()
	}
	ds, err := s.Digests(lo, hi, nil)
	if err != nil {
		return Digest{}, err
	}
	return ds[0], nil
}

// Digests returns the digests of [lo,b0), [b0,b1), ..., [bn,hi): len(bounds)+1 digests,
// in one top-down forward walk (see the type's documentation). Bounds must be sorted and
// within [lo, hi] (equal neighbours give empty parts); otherwise it returns an error.
func (s *Stored) Digests(lo, hi []byte, bounds [][]byte) ([]Digest, error) {
	out := make([]Digest, len(bounds)+1)
	if len(bounds) == 0 && rangeIsEmpty(lo, hi) {
		return out, nil
	}
	if err := checkPartBounds(lo, hi, bounds); err != nil {
		return nil, err
	}
	t, err := s.loadTop()
	if err != nil || t == 0 {
		return out, err
	}
	if nodes, small, err := s.level1Nodes(lo, hi, smallRangeNodes); err != nil {
		return nil, err
	} else if small {
		return out, s.digestsBottomUp(nodes, lo, hi, bounds, out, nil)
	}
	w := newStoredWalker(s, lo, hi, bounds, out)
	end := s.levelEnd(t)
	if hi != nil {
		end = s.nodeKey(t, hi)
	}
	nodes, err := s.nodesIn(t, s.headKey(t), end)
	if err != nil {
		return nil, err
	}
	// The last node may reach past hi: its end is taken as +inf, which only costs a
	// descent that stops at hi.
	if err := w.distribute(t, nodes, nil, true); err != nil {
		return nil, err
	}
	return out, nil
}

// storedWalker distributes node digests over the parts cut by the non-nil points among
// lo, bounds, hi.
type storedWalker struct {
	s     *Stored
	cuts  [][]byte
	loOff int
	out   []Digest
	// whole1 credits every level-1 node whole to the part its position falls in: the cut
	// semantics of CutDigests, where a cut stands for the first level-1 node at or after it.
	whole1 bool
	// snaps, when not nil (len(cuts)), records for cuts what they snap to, the first
	// level-1 node at or after them, where the walk passes it (see snap); has says which.
	snaps [][]byte
	has   []bool
}

// snap records that cut k snaps to the level-1 node at p, unless it is recorded already.
// The caller guarantees that p is a level-1 node at or after cut k and that no level-1
// node lies between them.
func (w *storedWalker) snap(k int, p []byte) {
	if w.snaps != nil && !w.has[k] {
		w.snaps[k], w.has[k] = append([]byte{}, p...), true
	}
}

// snapAt records the cut equal to p, if any, as snapping to p: a node of any level at p
// is a level-1 node there.
func (w *storedWalker) snapAt(p []byte) {
	if w.snaps == nil {
		return
	}
	if k := w.upTo(p, false) - 1; k >= 0 && bytes.Equal(w.cuts[k], p) {
		w.snap(k, p)
	}
}

func newStoredWalker(s *Stored, lo, hi []byte, bounds [][]byte, out []Digest) *storedWalker {
	w := &storedWalker{s: s, out: out, cuts: CutPoints(lo, hi, bounds)}
	if lo != nil {
		w.loOff = 1
	}
	return w
}

// upTo returns the number of cuts <= x (x nil with head set: -inf).
func (w *storedWalker) upTo(x []byte, head bool) int {
	if head {
		return 0
	}
	return sort.Search(len(w.cuts), func(i int) bool { return bytes.Compare(w.cuts[i], x) > 0 })
}

// below returns the number of cuts < x (inf: all).
func (w *storedWalker) below(x []byte, inf bool) int {
	if inf {
		return len(w.cuts)
	}
	return sort.Search(len(w.cuts), func(i int) bool { return bytes.Compare(w.cuts[i], x) >= 0 })
}

// add credits d to the part holding positions with n cuts at or before them.
func (w *storedWalker) add(n int, d Digest) {
	if i := n - w.loOff; i >= 0 && i < len(w.out) {
		w.out[i] = w.out[i].Add(d)
	}
}

// lastCutIn returns the greatest cut strictly inside (start, end), if any.
func (w *storedWalker) lastCutIn(n storedNode, end []byte, endInf bool) ([]byte, bool) {
	i, j := w.upTo(n.pos, n.head), w.below(end, endInf)
	if i < j {
		return w.cuts[j-1], true
	}
	return nil, false
}

// distribute credits the consecutive nodes of level, the last of which ends at end (or
// +inf), to the parts: whole when no cut falls strictly inside a node, else by descent.
func (w *storedWalker) distribute(level int, nodes []storedNode, end []byte, endInf bool) error {
	nodeEnd := func(i int) ([]byte, bool) {
		if i+1 < len(nodes) {
			return nodes[i+1].pos, false
		}
		return end, endInf
	}
	cut := func(i int) bool {
		if level == 0 || (level == 1 && w.whole1) {
			return false
		}
		e, inf := nodeEnd(i)
		_, ok := w.lastCutIn(nodes[i], e, inf)
		return ok
	}
	for i := 0; i < len(nodes); {
		if !cut(i) {
			w.add(w.upTo(nodes[i].pos, nodes[i].head), nodes[i].d)
			if level >= 1 && !nodes[i].head {
				w.snapAt(nodes[i].pos)
			}
			i++
			continue
		}
		j := i // last node of the run that holds a cut
		for k := i + 1; k < len(nodes) && k <= j+1+storedRunGap; k++ {
			if cut(k) {
				j = k
			}
		}
		e, inf := nodeEnd(j)
		if err := w.descend(level, nodes[i:j+1], e, inf); err != nil {
			return err
		}
		i = j + 1
	}
	return nil
}

// descend reads the children of the consecutive nodes run (of level >= 1, the last ending
// at end) in one forward scan, stopping after the last node's last cut: the rest of that
// node is its digest minus its children read. The children are then distributed.
func (w *storedWalker) descend(level int, run []storedNode, end []byte, endInf bool) error {
	if w.whole1 && level == 2 {
		return w.descendTails(run, end, endInf)
	}
	return w.descendRun(level, run, end, endInf)
}

// descendRun is descend's one forward scan over the children of run.
func (w *storedWalker) descendRun(level int, run []storedNode, end []byte, endInf bool) error {
	s := w.s
	c := level - 1
	last := run[len(run)-1]
	lastCut, _ := w.lastCutIn(last, end, endInf)
	start := s.levelStart(c)
	if !run[0].head {
		start = s.nodeKey(c, run[0].pos)
	}
	stop := s.levelEnd(c)
	if !endInf {
		stop = s.nodeKey(c, end)
	}
	children := make([]storedNode, 0, 2<<s.nbits)
	var arena posArena
	var acc Digest
	var stopPos []byte
	stopped := false
	err := s.scan(c, start, stop, false, true, func(head bool, p []byte, d Digest) bool {
		if !head && bytes.Compare(p, lastCut) >= 0 {
			stopped, stopPos = true, append([]byte{}, p...)
			return false
		}
		children = append(children, storedNode{pos: arena.copy(p), head: head, d: d})
		if last.head || (!head && bytes.Compare(p, last.pos) >= 0) {
			acc = acc.Add(d)
		}
		return true
	})
	if err != nil {
		return err
	}
	if stopped {
		w.add(w.upTo(lastCut, false), last.d.Sub(acc))
		end, endInf = stopPos, false
	}
	return w.distribute(c, children, end, endInf)
}

// descendTails credits the level-1 children of the level-2 nodes of run under whole1
// semantics. A node with a cut inside has its children read from its first cut to its
// end, each credited where its position falls, and the rest of the node (its digest less
// those) credited to the part it starts in: a session's bound lies just before a level-1
// node, usually the next level-2 node, so this reads few children or none. A node that
// reaches past the range's end (+inf) is read from its start up to its last cut instead.
func (w *storedWalker) descendTails(run []storedNode, end []byte, endInf bool) error {
	s := w.s
	for i, n := range run {
		nend, inf := end, endInf
		if i+1 < len(run) {
			nend, inf = run[i+1].pos, false
		}
		from, to := w.upTo(n.pos, n.head), w.below(nend, inf)
		if from >= to {
			w.add(from, n.d)
			continue
		}
		if inf {
			if err := w.descendRun(2, run[i:i+1], nend, inf); err != nil {
				return err
			}
			continue
		}
		var acc Digest
		k := from // the cuts of [from, to) snap to the first node at or after them
		err := s.scan(1, s.nodeKey(1, w.cuts[from]), s.nodeKey(1, nend), false, true,
			func(_ bool, p []byte, d Digest) bool {
				acc = acc.Add(d)
				w.add(w.upTo(p, false), d)
				for ; k < to && bytes.Compare(w.cuts[k], p) <= 0; k++ {
					w.snap(k, p)
				}
				return true
			})
		if err != nil {
			return err
		}
		for ; k < to; k++ { // none of the level-1 nodes before nend is at or after them
			w.snap(k, nend)
		}
		w.add(from, n.d.Sub(acc))
	}
	return nil
}

// Split returns up to k-1 sorted positions of entries strictly inside [lo, hi) cutting it
// into parts of near-equal count: the positions of level-L nodes nearest to the count
// quantiles, L being the highest level (at least 1) whose nodes hold on average at most a
// quarter of a part (level 0, exact quantiles, only where level 1 has fewer than half the
// boundaries asked for). It returns up to min(k, c)-1 positions, c being the range's count
// (at least half as many; none when k < 2 or c <= 1); every part is non-empty. Cost: one
// Digest, one scan of about 4k..64k level-L nodes and one descent at lo.
func (s *Stored) Split(lo, hi []byte, k int) ([][]byte, error) {
	if k < 2 || rangeIsEmpty(lo, hi) {
		return nil, nil
	}
	t, err := s.loadTop()
	if err != nil || t == 0 {
		return nil, err
	}
	if nodes, small, err := s.level1Nodes(lo, hi, smallRangeNodes); err != nil {
		return nil, err
	} else if small {
		counts, err := s.countsBottomUp(nodes, lo, hi)
		if err != nil {
			return nil, err
		}
		var c uint64
		for _, n := range counts {
			c += n
		}
		if c <= 1 {
			return nil, nil
		}
		parts := min(uint64(k), c)
		if out := splitBottomUp(nodes, counts, lo, hi, int(parts)); len(out) > 0 && len(out) >= int(parts)/2 {
			return out, nil
		}
		return s.splitEntries(lo, hi, c, parts)
	}
	all, err := s.Digest(lo, hi)
	if err != nil {
		return nil, err
	}
	c := all.Count
	if c <= 1 {
		return nil, nil
	}
	parts := min(uint64(k), c)
	fan := uint64(1) << s.nbits
	// The highest level whose nodes hold at most a quarter of a part, for balance; but at
	// least level 1: its boundaries (one entry in 16) cut finely enough for a descent, and
	// level 0 would read every entry of the range.
	l, size, q := 0, uint64(1), c/(4*parts)
	for l < t && size <= q/fan {
		size *= fan
		l++
	}
	l = max(l, 1)
	for ; l > 0; l-- {
		out, err := s.splitLevel(l, lo, hi, c, parts, false)
		if err != nil || out != nil {
			return out, err
		}
	}
	return s.splitEntries(lo, hi, c, parts)
}

// quantile returns floor(i·c/parts).
func quantile(i, c, parts uint64) uint64 {
	h, l := bits.Mul64(i, c)
	q, _ := bits.Div64(h, l, parts)
	return q
}

// splitEntries cuts [lo, hi), holding c entries, at exact quantiles by walking its entries.
func (s *Stored) splitEntries(lo, hi []byte, c, parts uint64) ([][]byte, error) {
	start, end := s.levelStart(0), s.levelEnd(0)
	if lo != nil {
		start = s.nodeKey(0, lo)
	}
	if hi != nil {
		end = s.nodeKey(0, hi)
	}
	out := make([][]byte, 0, parts-1)
	var rank uint64
	next := quantile(1, c, parts)
	err := s.scan(0, start, end, false, true, func(_ bool, p []byte, _ Digest) bool {
		if rank == next {
			out = append(out, append([]byte{}, p...))
			if uint64(len(out)) == parts-1 {
				return false
			}
			next = quantile(uint64(len(out))+1, c, parts)
		}
		rank++
		return true
	})
	return out, err
}

// splitLevel picks parts-1 level-l nodes inside (lo, hi) nearest to the count quantiles of
// the range (c entries), or returns nil when the range has too few level-l nodes.
func (s *Stored) splitLevel(l int, lo, hi []byte, c, parts uint64, whole1 bool) ([][]byte, error) {
	out, _, _, err := s.splitLevelPrevs(l, lo, hi, c, parts, whole1)
	return out, err
}

// splitLevelPrevs is splitLevel that also returns, for each cut, the level-l node before
// it (nil when there is none: it is the level's first node), and under cut semantics
// (whole1), when lo and hi are level-l nodes (or open), the parts' digests, sums of the
// level-l nodes read.
func (s *Stored) splitLevelPrevs(l int, lo, hi []byte, c, parts uint64, whole1 bool) (out, prevs [][]byte, ds []Digest, err error) {
	start := s.headKey(l)
	if lo != nil {
		ns, err := s.lastNodes(l, lo, 1, true)
		if err != nil {
			return nil, nil, nil, err
		}
		start = s.key(l, ns[0])
	}
	end := s.levelEnd(l)
	if hi != nil {
		end = s.nodeKey(l, hi)
		if whole1 {
			end = keyAfter(end) // and hi's own node, if it is one: it says hi is aligned
		}
	}
	nodes, err := s.nodesIn(l, start, end)
	if err != nil {
		return nil, nil, nil, err
	}
	aligned := lo == nil || (len(nodes) > 0 && !nodes[0].head && bytes.Equal(nodes[0].pos, lo))
	if hi != nil && whole1 {
		if n := len(nodes); n > 0 && !nodes[n-1].head && bytes.Equal(nodes[n-1].pos, hi) {
			nodes = nodes[:n-1]
		} else {
			aligned = false
		}
	}
	if len(nodes) == 0 {
		return nil, nil, nil, nil
	}
	// Too few candidates: try a lower level. Under cut semantics (whole1) a level with at
	// least half as many boundaries as cuts asked for is cut at all of them, as level 1
	// always is: parts of about one node are as fine as a descent needs.
	few := uint64(len(nodes)) <= parts/2 || (l > 1 && !whole1)
	if uint64(len(nodes)) < parts && few {
		return nil, nil, nil, nil
	}
	// rank[i] = entries of the range before nodes[i+1].
	ranks := make([]uint64, len(nodes)-1)
	first := nodes[0]
	r := first.d.Count
	if lo != nil && (first.head || bytes.Compare(first.pos, lo) < 0) {
		// Only the part of the first node at or after lo counts.
		part := make([]Digest, 1)
		w := newStoredWalker(s, lo, nil, nil, part)
		w.whole1 = whole1
		if err := w.distribute(l, nodes[:1], nodes[1].pos, false); err != nil {
			return nil, nil, nil, err
		}
		r = part[0].Count
	}
	for i := 1; i < len(nodes); i++ {
		ranks[i-1] = r
		r += nodes[i].d.Count
	}
	cands, before := nodes[1:], nodes[:len(nodes)-1] // before[j] precedes cands[j]
	for len(ranks) > 0 && ranks[0] == 0 {            // the range's first entry: would empty part 0
		ranks, cands, before = ranks[1:], cands[1:], before[1:]
	}
	prevOf := func(j int) []byte {
		if before[j].head {
			return nil
		}
		return before[j].pos
	}
	need := int(parts - 1)
	if len(cands) < need {
		if (l > 1 && !whole1) || len(cands) == 0 || len(cands) < need/2 {
			return nil, nil, nil, nil
		}
		// Fewer boundaries than cuts asked for, but at least half as many: cut at all of
		// them rather than read a lower level of the range (level 1: every entry). Parts are
		// then about one node.
		out, prevs = make([][]byte, len(cands)), make([][]byte, len(cands))
		for i, n := range cands {
			out[i], prevs[i] = n.pos, prevOf(i)
		}
		return out, prevs, levelParts(nodes, out, whole1 && aligned), nil
	}
	out, prevs = make([][]byte, 0, need), make([][]byte, 0, need)
	j := 0
	for i := 1; i <= need; i++ {
		target := quantile(uint64(i), c, parts)
		maxJ := len(cands) - 1 - (need - i) // leave one candidate per later cut
		for j < maxJ && absDiff(ranks[j+1], target) <= absDiff(ranks[j], target) {
			j++
		}
		out, prevs = append(out, cands[j].pos), append(prevs, prevOf(j))
		j++
	}
	return out, prevs, levelParts(nodes, out, whole1 && aligned), nil
}

// levelParts sums the level's nodes of a range cut at bounds (positions among theirs)
// into the parts' digests, when ok; nil otherwise.
func levelParts(nodes []storedNode, bounds [][]byte, ok bool) []Digest {
	if !ok {
		return nil
	}
	ds := make([]Digest, len(bounds)+1)
	creditNodes(nodes, bounds, ds)
	return ds
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}

// EntriesHashed is Entries that also hands fn each entry's EntryHash, which the index
// keeps, so it is never recomputed.
func (s *Stored) EntriesHashed(lo, hi []byte, fn func(Entry, Hash) bool) error {
	if rangeIsEmpty(lo, hi) {
		return nil
	}
	start, end := s.levelStart(0), s.levelEnd(0)
	if lo != nil {
		start = s.nodeKey(0, lo)
	}
	if hi != nil {
		end = s.nodeKey(0, hi)
	}
	var ierr error
	err := s.kv.Iterate(start, end, false, func(k, v []byte) bool {
		s.stats.Entries++
		_, pos, err := s.parseNode(0, k)
		if err == nil {
			var e Entry
			if e, err = s.decodeEntry(pos, v); err == nil {
				var h Hash
				copy(h[:], v[41:])
				return fn(e, h)
			}
		}
		ierr = err
		return false
	})
	if err != nil {
		return err
	}
	return ierr
}

// Entries calls fn for each entry in [lo, hi) in position order until fn returns false,
// reading them in one forward scan. fn receives its own copy of the key and may keep it;
// it must not write through this index while the scan runs.
func (s *Stored) Entries(lo, hi []byte, fn func(Entry) bool) error {
	if rangeIsEmpty(lo, hi) {
		return nil
	}
	start, end := s.levelStart(0), s.levelEnd(0)
	if lo != nil {
		start = s.nodeKey(0, lo)
	}
	if hi != nil {
		end = s.nodeKey(0, hi)
	}
	var ierr error
	err := s.kv.Iterate(start, end, false, func(k, v []byte) bool {
		s.stats.Entries++
		_, pos, err := s.parseNode(0, k)
		if err == nil {
			var e Entry
			if e, err = s.decodeEntry(pos, v); err == nil {
				return fn(e)
			}
		}
		ierr = err
		return false
	})
	if err != nil {
		return err
	}
	return ierr
}
