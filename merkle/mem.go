package merkle

import (
	"bytes"
	"math/bits"
)

// Mem is an in-memory Index: a treap ordered by position in which every node holds one
// entry, its EntryHash (computed once, at Insert) and the Digest of its subtree. Insert,
// Remove, Digest and rank selection take O(log n) expected steps; Digests takes
// O(len(bounds) · log n); Split O(k · log n); Entries O(log n + output).
//
// Many entries may share one version (a bulk load): their positions differ by key. A Mem is
// not safe for concurrent use; its zero value is not usable, call NewMem.
type Mem struct {
	o     Ordering
	root  *memNode
	seed  uint64 // state of the splitmix64 sequence that draws priorities
	stats ReadStats
}

type memNode struct {
	pos         []byte
	e           Entry // e.Key is Mem's own copy
	h           Hash
	prio        uint64
	left, right *memNode
	sum         Digest // digest of the subtree rooted here
}

var _ Index = (*Mem)(nil)

// NewMem returns an empty in-memory index over ordering o.
func NewMem(o Ordering) *Mem { return &Mem{o: o, seed: 0x9e3779b97f4a7c15} }

// Len returns the number of entries held.
func (m *Mem) Len() int {
	if m.root == nil {
		return 0
	}
	return int(m.root.sum.Count)
}

// Stats reports what queries (Digest, Digests, Split, Entries) have read since NewMem:
// Entries counts entries handed to an Entries callback, Nodes the tree nodes visited.
// Writes are not counted.
func (m *Mem) Stats() ReadStats { return m.stats }

func (m *Mem) nextPrio() uint64 {
	m.seed += 0x9e3779b97f4a7c15
	z := m.seed
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func subtreeSum(n *memNode) Digest {
	if n == nil {
		return Digest{}
	}
	return n.sum
}

func subtreeCount(n *memNode) uint64 {
	if n == nil {
		return 0
	}
	return n.sum.Count
}

func (n *memNode) pull() {
	n.sum = subtreeSum(n.left).Add(Digest{Count: 1, Sum: n.h}).Add(subtreeSum(n.right))
}

func memRotateRight(t *memNode) *memNode {
	l := t.left
	t.left = l.right
	t.pull()
	l.right = t
	l.pull()
	return l
}

func memRotateLeft(t *memNode) *memNode {
	r := t.right
	t.right = r.left
	t.pull()
	r.left = t
	r.pull()
	return r
}

func memInsert(t, x *memNode) *memNode {
	if t == nil {
		return x
	}
	switch c := bytes.Compare(x.pos, t.pos); {
	case c == 0:
		t.e, t.h = x.e, x.h
	case c < 0:
		t.left = memInsert(t.left, x)
		if t.left.prio > t.prio {
			return memRotateRight(t)
		}
	default:
		t.right = memInsert(t.right, x)
		if t.right.prio > t.prio {
			return memRotateLeft(t)
		}
	}
	t.pull()
	return t
}

func memMerge(a, b *memNode) *memNode {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	if a.prio > b.prio {
		a.right = memMerge(a.right, b)
		a.pull()
		return a
	}
	b.left = memMerge(a, b.left)
	b.pull()
	return b
}

func memRemove(t *memNode, pos []byte) *memNode {
	if t == nil {
		return nil
	}
	switch c := bytes.Compare(pos, t.pos); {
	case c == 0:
		return memMerge(t.left, t.right)
	case c < 0:
		t.left = memRemove(t.left, pos)
	default:
		t.right = memRemove(t.right, pos)
	}
	t.pull()
	return t
}

// Insert adds e at its position, replacing the entry already there. In KeyOrder, e.Version
// must be 0.
func (m *Mem) Insert(e Entry) error {
	if m.o == KeyOrder && e.Version != 0 {
		return errKeyOrderVersion
	}
	e.Key = append([]byte{}, e.Key...)
	x := &memNode{pos: m.o.Position(e.Key, e.Version), e: e, h: e.Hash(), prio: m.nextPrio()}
	x.sum = Digest{Count: 1, Sum: x.h}
	m.root = memInsert(m.root, x)
	return nil
}

// Remove deletes the entry at e's position (only Key and Version are looked at); removing
// an absent position is a no-op.
func (m *Mem) Remove(e Entry) error {
	m.root = memRemove(m.root, m.o.Position(e.Key, e.Version))
	return nil
}

// prefix returns the digest of the entries at positions < x (nil x: none).
func (m *Mem) prefix(x []byte) Digest {
	var acc Digest
	if x == nil {
		return acc
	}
	for t := m.root; t != nil; {
		m.stats.Nodes++
		if bytes.Compare(t.pos, x) < 0 {
			acc = acc.Add(subtreeSum(t.left)).Add(Digest{Count: 1, Sum: t.h})
			t = t.right
		} else {
			t = t.left
		}
	}
	return acc
}

// rank returns the number of entries at positions < x; nil x means +inf when hi is set and
// -inf otherwise.
func (m *Mem) rank(x []byte, hi bool) uint64 {
	if x == nil {
		if hi {
			return subtreeCount(m.root)
		}
		return 0
	}
	var r uint64
	for t := m.root; t != nil; {
		m.stats.Nodes++
		if bytes.Compare(t.pos, x) < 0 {
			r += subtreeCount(t.left) + 1
			t = t.right
		} else {
			t = t.left
		}
	}
	return r
}

// selectRank returns the node with exactly r entries before it (r < Len()).
func (m *Mem) selectRank(r uint64) *memNode {
	for t := m.root; t != nil; {
		m.stats.Nodes++
		lc := subtreeCount(t.left)
		switch {
		case r < lc:
			t = t.left
		case r == lc:
			return t
		default:
			r -= lc + 1
			t = t.right
		}
	}
	return nil
}

// Digest returns the digest of the entries in [lo, hi) as a difference of two prefix sums.
func (m *Mem) Digest(lo, hi []byte) (Digest, error) {
	if rangeIsEmpty(lo, hi) {
		return Digest{}, nil
	}
	h := subtreeSum(m.root)
	if hi != nil {
		h = m.prefix(hi)
	}
	return h.Sub(m.prefix(lo)), nil
}

// Digests returns the digests of [lo,b0), [b0,b1), ..., [bn,hi): len(bounds)+1 digests.
// Bounds must be sorted and within [lo, hi] (equal neighbours give empty parts); otherwise
// it returns an error.
func (m *Mem) Digests(lo, hi []byte, bounds [][]byte) ([]Digest, error) {
	out := make([]Digest, len(bounds)+1)
	if len(bounds) == 0 && rangeIsEmpty(lo, hi) {
		return out, nil
	}
	if err := checkPartBounds(lo, hi, bounds); err != nil {
		return nil, err
	}
	prev := m.prefix(lo)
	for i, b := range bounds {
		p := m.prefix(b)
		out[i] = p.Sub(prev)
		prev = p
	}
	last := subtreeSum(m.root)
	if hi != nil {
		last = m.prefix(hi)
	}
	out[len(bounds)] = last.Sub(prev)
	return out, nil
}

// Split returns min(k, c)-1 positions of entries strictly inside [lo, hi), c being the
// number of entries in it, that cut it at exact count quantiles: the i-th returned position
// is that of the entry of rank floor(i·c/parts) within the range. Every part is non-empty.
// It returns nil when k < 2 or the range holds at most one entry.
func (m *Mem) Split(lo, hi []byte, k int) ([][]byte, error) {
	if k < 2 || rangeIsEmpty(lo, hi) {
		return nil, nil
	}
	r0, r1 := m.rank(lo, false), m.rank(hi, true)
	if r1 <= r0+1 {
		return nil, nil
	}
	c := r1 - r0
	parts := uint64(k)
	if parts > c {
		parts = c
	}
	out := make([][]byte, 0, parts-1)
	for i := uint64(1); i < parts; i++ {
		h, l := bits.Mul64(i, c)
		q, _ := bits.Div64(h, l, parts)
		n := m.selectRank(r0 + q)
		out = append(out, append([]byte{}, n.pos...))
	}
	return out, nil
}

// Entries calls fn for each entry in [lo, hi) in position order until fn returns false.
// fn receives its own copy of the key and may keep it; fn must not modify m.
func (m *Mem) Entries(lo, hi []byte, fn func(Entry) bool) error {
	if rangeIsEmpty(lo, hi) {
		return nil
	}
	m.entries(m.root, lo, hi, fn)
	return nil
}

// entries walks t in order over [lo, hi); it returns false once fn has asked to stop.
func (m *Mem) entries(t *memNode, lo, hi []byte, fn func(Entry) bool) bool {
	for t != nil {
		m.stats.Nodes++
		if lo != nil && bytes.Compare(t.pos, lo) < 0 {
			t = t.right
			continue
		}
		if hi != nil && bytes.Compare(t.pos, hi) >= 0 {
			t = t.left
			continue
		}
		if !m.entries(t.left, lo, nil, fn) {
			return false
		}
		e := t.e
		e.Key = append([]byte{}, e.Key...)
		m.stats.Entries++
		if !fn(e) {
			return false
		}
		lo, t = nil, t.right
	}
	return true
}
