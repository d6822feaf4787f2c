package merkle

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"slices"
	"sort"
	"sync"
)

// Sorted is a static index over a fixed set of entries: a sorted array with prefix
// digests. It is what an endpoint without a maintained index builds from one scan per
// session (DESIGN §3): O(n log n) to build, O(log n) per query.
type Sorted struct {
	pos     [][]byte
	entries []Entry
	prefix  []Digest // prefix[i] = digest of entries[:i]
	stats   ReadStats
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

// NewSortedItems builds a Sorted index from items, which it sorts in place. Items at the
// same position are not allowed; one of them is kept.
func NewSortedItems(items []SortedItem) *Sorted {
	// Sort small keys (the position's first 8 bytes as a number, the position, the item's
	// index) rather than the items themselves: fewer bytes move, and most comparisons are
	// of two numbers.
	type key struct {
		head uint64
		pos  []byte
		i    int
	}
	keys := make([]key, len(items))
	for i, it := range items {
		var b [8]byte
		copy(b[:], it.Pos)
		keys[i] = key{binary.BigEndian.Uint64(b[:]), it.Pos, i}
	}
	cmp := func(a, b key) int {
		if a.head != b.head {
			if a.head < b.head {
				return -1
			}
			return 1
		}
		return bytes.Compare(a.pos, b.pos)
	}
	if !slices.IsSortedFunc(keys, cmp) {
		slices.SortFunc(keys, cmp)
	}
	s := &Sorted{pos: make([][]byte, 0, len(items)), entries: make([]Entry, 0, len(items))}
	s.prefix = make([]Digest, 1, len(items)+1)
	for j, k := range keys {
		it := &items[k.i]
		d := Digest{Count: 1, Sum: it.Hash}
		if n := len(s.pos); n > 0 && keys[j-1].head == k.head && bytes.Equal(s.pos[n-1], it.Pos) {
			s.entries[n-1] = it.Entry
			s.prefix[n] = s.prefix[n-1].Add(d)
			continue
		}
		s.pos = append(s.pos, it.Pos)
		s.entries = append(s.entries, it.Entry)
		s.prefix = append(s.prefix, s.prefix[len(s.prefix)-1].Add(d))
	}
	return s
}

// Len returns the number of entries.
func (s *Sorted) Len() int { return len(s.entries) }

// Stats reports what queries have read.
func (s *Sorted) Stats() ReadStats { return s.stats }

// index returns the index of the first entry at or after p (nil p: 0).
func (s *Sorted) index(p []byte, isHi bool) int {
	if p == nil {
		if isHi {
			return len(s.pos)
		}
		return 0
	}
	s.stats.Nodes++
	return sort.Search(len(s.pos), func(i int) bool { return bytes.Compare(s.pos[i], p) >= 0 })
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
		if idx <= i || (len(out) > 0 && bytes.Equal(out[len(out)-1], s.pos[idx])) {
			continue
		}
		out = append(out, s.pos[idx])
	}
	return out, nil
}

// Entries calls fn for each entry in [lo, hi) until fn returns false.
func (s *Sorted) Entries(lo, hi []byte, fn func(Entry) bool) error {
	i, j := s.index(lo, false), s.index(hi, true)
	for ; i < j; i++ {
		s.stats.Entries++
		if !fn(s.entries[i]) {
			break
		}
	}
	return nil
}
