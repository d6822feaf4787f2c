package merkle

import (
	"bytes"
	"sort"
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
// are not allowed; the last one wins.
func NewSorted(o Ordering, entries []Entry) *Sorted {
	s := &Sorted{entries: append([]Entry(nil), entries...)}
	sort.Slice(s.entries, func(i, j int) bool {
		return bytes.Compare(s.entries[i].Position(o), s.entries[j].Position(o)) < 0
	})
	s.pos = make([][]byte, 0, len(s.entries))
	out := s.entries[:0]
	for _, e := range s.entries {
		p := e.Position(o)
		if n := len(s.pos); n > 0 && bytes.Equal(s.pos[n-1], p) {
			out[n-1] = e
			continue
		}
		s.pos = append(s.pos, p)
		out = append(out, e)
	}
	s.entries = out
	s.prefix = make([]Digest, len(out)+1)
	for i, e := range out {
		s.prefix[i+1] = s.prefix[i].Add(e.Digest())
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
