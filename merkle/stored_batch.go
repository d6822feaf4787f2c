package merkle

import (
	"bytes"
	"slices"
)

// BatchOp is one change of Stored.Batch: insert Entry at its position (replacing the entry
// there), or with Remove set remove the entry at Entry's position (only Key and Version are
// looked at).
type BatchOp struct {
	Entry  Entry
	Remove bool
	// Known says the caller knows what the index holds at Entry's position before this op,
	// so Batch need not read it: for an insert, nothing; for a Remove, Entry itself, every
	// field of it. A store that keeps each row's entry in the row, written in the same
	// transaction as the index, knows this for nearly every write. A wrong Known op
	// corrupts the index's sums (Check finds it).
	Known bool
}

// Batch applies ops as if they were applied one by one in order (Insert or Remove), with
// the same stored result, but shares the work of the many: the ops are sorted by position
// (the last op for a position wins), and every change that leaves the structure alone (the
// old and new entry, where present, are level 0: 15 in 16 of them) only adds its hash
// difference to the nodes covering it, so those are read and written once per covering
// node rather than once per op. The rest (entries of level >= 1) go one by one first.
//
// Cost: O(T) seeks per level-0 op for the entry slot (a Get; none for a Known op), plus
// about two seeks per distinct covering node, plus the one-by-one cost of the structural
// ops.
func (s *Stored) Batch(ops []BatchOp) error {
	if len(ops) == 0 {
		return nil
	}
	type item struct {
		pos   []byte
		i     int
		first int // the first op at pos: what the slot held before the batch
	}
	items := make([]item, len(ops))
	for i := range ops {
		if !ops[i].Remove && s.o == KeyOrder && ops[i].Entry.Version != 0 {
			return errKeyOrderVersion
		}
		items[i] = item{ops[i].Entry.Position(s.o), i, i}
	}
	slices.SortFunc(items, func(a, b item) int {
		if c := bytes.Compare(a.pos, b.pos); c != 0 {
			return c
		}
		return a.i - b.i
	})
	// The last op for a position wins: Insert replaces, Remove removes. The first one says
	// what the slot held before.
	w := 0
	for i := range items {
		if i+1 < len(items) && bytes.Equal(items[i].pos, items[i+1].pos) {
			items[i+1].first = items[i].first
			continue
		}
		items[w] = items[i]
		w++
	}
	items = items[:w]

	// Pass 1: read each slot; apply structural changes now, keep level-0 ones.
	type flatOp struct {
		pos, k0, val []byte // val nil: delete the slot
		delta        Digest // count and sum change of every covering node (count may wrap)
	}
	flats := make([]flatOp, 0, len(items))
	removed := false
	for _, it := range items {
		op := &ops[it.i]
		pos := it.pos
		k0 := s.nodeKey(0, pos)
		var old []byte
		var ok bool
		var oh Hash
		if before := &ops[it.first]; before.Known {
			if ok = before.Remove; ok {
				oh = before.Entry.Hash()
			}
		} else {
			var err error
			if old, ok, err = s.kv.Get(k0); err != nil {
				return err
			}
			if ok {
				if oh, err = storedEntryHash(old); err != nil {
					return err
				}
			}
		}
		if op.Remove {
			if !ok {
				continue
			}
			if s.level(oh) > 0 {
				if err := s.removeAt(pos, k0, oh); err != nil {
					return err
				}
				continue
			}
			removed = true
			flats = append(flats, flatOp{pos: pos, k0: k0,
				delta: Digest{}.Sub(Digest{Count: 1, Sum: oh})})
			continue
		}
		h := op.Entry.Hash()
		val := encodeStoredEntry(op.Entry, h)
		if ok && old == nil { // Known: the entry removed first
			old = encodeStoredEntry(ops[it.first].Entry, oh)
		}
		if ok && bytes.Equal(old, val) {
			continue
		}
		lvl := s.level(h)
		switch {
		case !ok && lvl == 0:
			flats = append(flats, flatOp{pos: pos, k0: k0, val: val, delta: Digest{Count: 1, Sum: h}})
		case ok && lvl == 0 && s.level(oh) == 0:
			flats = append(flats, flatOp{pos: pos, k0: k0, val: val,
				delta: Digest{Sum: h}.Sub(Digest{Sum: oh})})
		case ok && s.level(oh) == lvl:
			if err := s.replace(pos, k0, val, oh, h); err != nil {
				return err
			}
		default:
			if ok {
				if err := s.removeAt(pos, k0, oh); err != nil {
					return err
				}
			}
			if err := s.insertAt(pos, k0, val, h); err != nil {
				return err
			}
		}
	}
	if len(flats) == 0 {
		return nil
	}

	// Pass 2: sweep the level-0 changes in position order, keeping at each level the node
	// covering the current position until a position reaches the next node.
	t, err := s.loadTop()
	if err != nil {
		return err
	}
	if t == 0 {
		// Only inserts can find the index empty (a removed entry was there).
		if err := s.setTop(1); err != nil {
			return err
		}
		t = 1
	}
	type cover struct {
		n     storedNode
		end   []byte // position of the next node; nil: none
		acc   Digest
		valid bool
	}
	covers := make([]cover, t+1)
	flush := func(k int) error {
		c := &covers[k]
		if !c.valid || c.acc.IsZero() {
			return nil
		}
		c.n.d = c.n.d.Add(c.acc)
		sw, err := s.nodeWrite(k, c.n)
		if err != nil {
			return err
		}
		if sw.del {
			return s.kv.Delete(sw.key)
		}
		return s.kv.Set(sw.key, sw.value)
	}
	for _, f := range flats {
		// A level's node lies within the node above it: once a level's cover still
		// holds f, so do those above.
		for k := 1; k <= t; k++ {
			c := &covers[k]
			if c.valid && (c.end == nil || bytes.Compare(f.pos, c.end) < 0) {
				break
			}
			if err := flush(k); err != nil {
				return err
			}
			ns, err := s.lastNodes(k, f.pos, 1, false)
			if err != nil {
				return err
			}
			var end []byte
			err = s.scan(k, keyAfter(s.nodeKey(k, f.pos)), s.levelEnd(k), false, false,
				func(_ bool, p []byte, _ Digest) bool {
					end = append([]byte{}, p...)
					return false
				})
			if err != nil {
				return err
			}
			*c = cover{n: ns[0], end: end, valid: true}
		}
		for k := 1; k <= t; k++ {
			covers[k].acc = covers[k].acc.Add(f.delta)
		}
		if f.val == nil {
			err = s.kv.Delete(f.k0)
		} else {
			err = s.kv.Set(f.k0, f.val)
		}
		if err != nil {
			return err
		}
	}
	for k := 1; k <= t; k++ {
		if err := flush(k); err != nil {
			return err
		}
	}
	if removed {
		return s.shrink() // the index may now be empty
	}
	return nil
}
