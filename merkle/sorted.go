package merkle

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"slices"
	"sort"
	"sync"
)

// Sorted is a static index over a fixed set of entries: the entries in position order,
// with prefix digests. It is what an endpoint without a maintained index builds from one
// scan per session (DESIGN §3): O(n log n) to build, O(log n) per query. It keeps the
// caller's items where they are (in the blocks the caller collected them in) and sorts
// only an index of them: a scan of millions of rows is neither copied nor moved.
type Sorted struct {
	blocks [][]SortedItem
	order  []uint64 // block<<32 | index within the block, in position order
	prefix []Digest // prefix[i] = digest of the first i entries in order
	stats  ReadStats
}

// NewSorted builds a Sorted index over entries in ordering o. Entries at the same position
// are not allowed; one of them is kept.
func NewSorted(o Ordering, entries []Entry) *Sorted {
	items := make([]SortedItem, len(entries))
	workers := min(runtime.GOMAXPROCS(0), 1+len(entries)/65536)
	per := (len(entries) + workers - 1) / max(1, workers)
	var wg sync.WaitGroup
	for w := range workers { // positions and hashes on every core
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w * per; i < min(len(entries), (w+1)*per); i++ {
				e := entries[i]
				items[i] = SortedItem{Pos: e.Position(o), Entry: e, Hash: e.Hash()}
			}
		}()
	}
	wg.Wait()
	return NewSortedItems(items)
}

// SortedItem is an entry with its position and EntryHash, computed by the caller (an
// endpoint that hashes rows as it reads them).
type SortedItem struct {
	Pos   []byte
	Entry Entry
	Hash  Hash
}

// NewSortedItems builds a Sorted index over items, which it keeps (the caller must not
// change them). Of items at the same position, the last one is kept.
func NewSortedItems(items []SortedItem) *Sorted {
	return NewSortedBlocks([][]SortedItem{items})
}

// NewSortedBlocks is NewSortedItems over items collected in blocks (each at most 2^32
// items), which it keeps where they are.
func NewSortedBlocks(blocks [][]SortedItem) *Sorted {
	// Sort small pointer-free keys (the position's first 16 bytes as two numbers, and the
	// item's place) rather than the items: few bytes move, the garbage collector has
	// nothing to scan or barrier in them, and most comparisons are of numbers; only
	// positions that agree on 16 bytes are compared in full.
	type key struct{ h1, h2, at uint64 }
	n := 0
	for _, b := range blocks {
		n += len(b)
	}
	keys := make([]key, 0, n)
	for bi, b := range blocks {
		for i := range b {
			var h [16]byte
			copy(h[:], b[i].Pos)
			keys = append(keys, key{binary.BigEndian.Uint64(h[:8]), binary.BigEndian.Uint64(h[8:]), uint64(bi)<<32 | uint64(i)})
		}
	}
	pos := func(at uint64) []byte { return blocks[at>>32][uint32(at)].Pos }
	cmpPos := func(a, b key) int {
		switch {
		case a.h1 != b.h1:
			return cmpUint(a.h1, b.h1)
		case a.h2 != b.h2:
			return cmpUint(a.h2, b.h2)
		}
		return bytes.Compare(pos(a.at), pos(b.at))
	}
	cmp := func(a, b key) int { // items at one position in the order given
		if c := cmpPos(a, b); c != 0 {
			return c
		}
		return cmpUint(a.at, b.at)
	}
	if !slices.IsSortedFunc(keys, cmp) {
		slices.SortFunc(keys, cmp)
	}
	s := &Sorted{blocks: blocks, order: make([]uint64, 0, n), prefix: make([]Digest, 1, n+1)}
	for j, k := range keys {
		d := Digest{Count: 1, Sum: blocks[k.at>>32][uint32(k.at)].Hash}
		if m := len(s.order); m > 0 && cmpPos(keys[j-1], k) == 0 {
			s.order[m-1] = k.at // the same position again: keep the later item
			s.prefix[m] = s.prefix[m-1].Add(d)
			continue
		}
		s.order = append(s.order, k.at)
		s.prefix = append(s.prefix, s.prefix[len(s.prefix)-1].Add(d))
	}
	return s
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// item returns the i-th item in position order.
func (s *Sorted) item(i int) *SortedItem {
	at := s.order[i]
	return &s.blocks[at>>32][uint32(at)]
}

// Len returns the number of entries.
func (s *Sorted) Len() int { return len(s.order) }

// Stats reports what queries have read.
func (s *Sorted) Stats() ReadStats { return s.stats }

// index returns the index of the first entry at or after p (nil p: 0).
func (s *Sorted) index(p []byte, isHi bool) int {
	if p == nil {
		if isHi {
			return len(s.order)
		}
		return 0
	}
	s.stats.Nodes++
	return sort.Search(len(s.order), func(i int) bool { return bytes.Compare(s.item(i).Pos, p) >= 0 })
}

// Digest returns the digest of the entries in [lo, hi).
func (s *Sorted) Digest(lo, hi []byte) (Digest, error) {
	i, j := s.index(lo, false), s.index(hi, true)
	if j <= i {
		return Digest{}, nil
	}
	return s.prefix[j].Sub(s.prefix[i]), nil
}

// Digests returns the digests of [lo,b0), [b0,b1), ..., [bn,hi).
func (s *Sorted) Digests(lo, hi []byte, bounds [][]byte) ([]Digest, error) {
	out := make([]Digest, 0, len(bounds)+1)
	prev := lo
	for _, b := range bounds {
		d, _ := s.Digest(prev, b)
		out = append(out, d)
		prev = b
	}
	d, _ := s.Digest(prev, hi)
	return append(out, d), nil
}

// Split returns up to k-1 entry positions strictly inside [lo, hi) at count quantiles.
func (s *Sorted) Split(lo, hi []byte, k int) ([][]byte, error) {
	i, j := s.index(lo, false), s.index(hi, true)
	n := j - i
	if k < 2 || n < 2 {
		return nil, nil
	}
	if k > n {
		k = n
	}
	out := make([][]byte, 0, k-1)
	for q := 1; q < k; q++ {
		idx := i + q*n/k
		p := s.item(idx).Pos
		if idx <= i || (len(out) > 0 && bytes.Equal(out[len(out)-1], p)) {
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

// Entries calls fn for each entry in [lo, hi) until fn returns false.
func (s *Sorted) Entries(lo, hi []byte, fn func(Entry) bool) error {
	i, j := s.index(lo, false), s.index(hi, true)
	for ; i < j; i++ {
		s.stats.Entries++
		if !fn(s.item(i).Entry) {
			break
		}
	}
	return nil
}
