package merkle

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"slices"
	"sort"
	"sync"
	"unsafe"
)

// Sorted is a static index over a fixed set of entries: the entries in position order,
// with prefix digests. It is what an endpoint without a maintained index builds from one
// scan per session (DESIGN §3): O(n log n) to build, O(log n) per query. Entries are kept
// where the builders collected them and only an index of them is sorted: a scan of
// millions of rows is neither copied nor moved. Nothing in it holds a pointer per entry,
// so that a million entries cost the garbage collector nothing to scan (the collector's
// marking of pointerful items took a third of a PostgreSQL scan's time).
type Sorted struct {
	o      Ordering
	blocks [][]sortedRec
	arenas [][][]byte // per block, its builder's arenas
	order  []uint32   // places (block<<blockBits | index) in position order
	sums   []Digest   // sums[c] = digest of the first c*sumEvery entries in order
	stats  ReadStats
}

// blockBits is log2 of builderBlock: a place is block<<blockBits | index, in 32 bits (an
// index holds fewer than 2^32 entries).
const blockBits = 16

// sumEvery is how many entries apart the stored prefix sums are: a digest adds at most
// 2*(sumEvery-1) EntryHashes to two stored sums, and the sums take 2.5 bytes an entry
// rather than 40.
const sumEvery = 16

// sortedRec is one entry of a SortedBuilder: its position is n bytes at off in arena.
type sortedRec struct {
	arena, off, n uint32
	flags         byte
	version       uint64
	expiresAt     int64
	valueHash     Hash
	hash          Hash
}

// SortedBuilder collects the entries of a Sorted index. It is not safe for concurrent
// use: scanning goroutines each fill their own and BuildSorted joins them.
type SortedBuilder struct {
	o      Ordering
	blocks [][]sortedRec
	arenas [][]byte
}

// NewSortedBuilder returns an empty builder of entries in ordering o.
func NewSortedBuilder(o Ordering) *SortedBuilder { return &SortedBuilder{o: o} }

// builderBlock and builderArena are the sizes of the blocks a builder grows by (no
// regrowing copies).
const (
	builderBlock = 1 << blockBits
	builderArena = 4 << 20
)

// Add adds e (its key is copied) and computes its EntryHash.
func (b *SortedBuilder) Add(e Entry) {
	// A small index stays small: blocks start at 64 records and grow fourfold to
	// builderBlock (a new one when the last is full, never a copy), arenas double from 4 KB.
	if len(b.blocks) == 0 || len(b.blocks[len(b.blocks)-1]) == cap(b.blocks[len(b.blocks)-1]) {
		c := builderBlock
		if k := len(b.blocks); k < 5 {
			c = 64 << (2 * k) // 64, 256, 1,024, 4,096, 16,384
		}
		b.blocks = append(b.blocks, hugeSlice[sortedRec](c)[:0])
	}
	n := b.o.PositionLen(e.Key)
	if len(b.arenas) == 0 || len(b.arenas[len(b.arenas)-1])+n > cap(b.arenas[len(b.arenas)-1]) {
		b.arenas = append(b.arenas, hugeSlice[byte](max(min(builderArena, 4096<<len(b.arenas)), n))[:0])
	}
	ar := &b.arenas[len(b.arenas)-1]
	off := len(*ar)
	*ar = b.o.AppendPosition(*ar, e.Key, e.Version)
	blk := &b.blocks[len(b.blocks)-1]
	*blk = append(*blk, sortedRec{arena: uint32(len(b.arenas) - 1), off: uint32(off), n: uint32(n),
		flags: e.Flags, version: e.Version, expiresAt: e.ExpiresAt, valueHash: e.ValueHash, hash: e.Hash()})
}

// NewSorted builds a Sorted index over entries in ordering o. Entries at the same position
// are not allowed; one of them is kept.
func NewSorted(o Ordering, entries []Entry) *Sorted {
	workers := min(runtime.GOMAXPROCS(0), 1+len(entries)/parallelMin)
	bs := make([]*SortedBuilder, workers)
	per := (len(entries) + workers - 1) / workers
	parallel(workers, len(entries), func(from, to int) { // positions and hashes on every core
		for w := from; w < to; w++ {
			bs[w] = NewSortedBuilder(o)
			for _, e := range entries[min(len(entries), w*per):min(len(entries), (w+1)*per)] {
				bs[w].Add(e)
			}
		}
	})
	return BuildSorted(o, bs...)
}

// BuildSorted builds a Sorted index in ordering o over the entries of the builders (all
// of ordering o), which it keeps: they must not be added to afterwards. Of entries at the
// same position, the one added last (builders taken in the order given) is kept.
func BuildSorted(o Ordering, builders ...*SortedBuilder) *Sorted {
	s := &Sorted{o: o}
	for _, b := range builders {
		if b.o != o {
			panic("merkle: BuildSorted over builders of another ordering")
		}
		for _, blk := range b.blocks {
			s.blocks = append(s.blocks, blk)
			s.arenas = append(s.arenas, b.arenas)
		}
	}
	if len(s.blocks) >= 1<<(32-blockBits) {
		panic("merkle: a Sorted index holds fewer than 2^32 entries")
	}
	// Sort small keys (the position's first 16 bytes as two numbers, and the entry's
	// place) rather than the records: few bytes move and most comparisons are of
	// numbers; only positions that agree on 16 bytes are compared in full.
	n := 0
	starts := make([]int, len(s.blocks)) // where each block's keys begin
	for bi, blk := range s.blocks {
		starts[bi] = n
		n += len(blk)
	}
	keys := hugeSlice[sortKey](n)
	parallel(len(s.blocks), n, func(from, to int) {
		for bi := from; bi < to; bi++ {
			for i := range s.blocks[bi] {
				at := uint32(bi)<<blockBits | uint32(i)
				var h [16]byte
				copy(h[:], s.pos(at))
				keys[starts[bi]+i] = sortKey{binary.BigEndian.Uint64(h[:8]), binary.BigEndian.Uint64(h[8:]), at}
			}
		}
	})
	cmpPos := func(a, b sortKey) int {
		switch {
		case a.h1 != b.h1:
			return cmpUint(a.h1, b.h1)
		case a.h2 != b.h2:
			return cmpUint(a.h2, b.h2)
		}
		return bytes.Compare(s.pos(a.at), s.pos(b.at))
	}
	cmp := func(a, b sortKey) int { // entries at one position in the order added
		if c := cmpPos(a, b); c != 0 {
			return c
		}
		return cmpUint(uint64(a.at), uint64(b.at))
	}
	keys, bounds := sortRuns(keys, cmp)
	// The last merge writes the order itself (the places alone, deduplicated) and the
	// prefix sums: no second array of keys.
	s.order, s.sums = hugeSlice[uint32](n)[:0], hugeSlice[Digest](n/sumEvery + 1)[:0]
	var sum Digest
	var last sortKey
	emit := func(k sortKey) {
		d := Digest{Count: 1, Sum: s.rec(k.at).hash}
		if m := len(s.order); m > 0 && cmpPos(last, k) == 0 {
			// The same position again: keep the later entry. No stored sum covers the
			// last entry yet (a sum is stored before the entry at its count is added).
			sum = sum.Sub(Digest{Count: 1, Sum: s.rec(s.order[m-1]).hash}).Add(d)
			s.order[m-1], last = k.at, k
			return
		}
		if len(s.order)%sumEvery == 0 {
			s.sums = append(s.sums, sum)
		}
		s.order = append(s.order, k.at)
		sum, last = sum.Add(d), k
	}
	mergeRuns(keys[:bounds[1]], keys[bounds[1]:], cmp, emit)
	return s
}

// rec returns the record at place at.
func (s *Sorted) rec(at uint32) *sortedRec { return &s.blocks[at>>blockBits][at&(builderBlock-1)] }

// pos returns the position of the entry at place at.
func (s *Sorted) pos(at uint32) []byte {
	r := s.rec(at)
	return s.arenas[at>>blockBits][r.arena][r.off : r.off+r.n : r.off+r.n]
}

// entry returns the entry at place at; its key is the index's own bytes.
func (s *Sorted) entry(at uint32) Entry {
	r := s.rec(at)
	key := s.pos(at)
	if s.o != KeyOrder {
		key = key[8:]
	}
	return Entry{Key: key, Version: r.version, ExpiresAt: r.expiresAt, Flags: r.flags, ValueHash: r.valueHash}
}

// sortKey is an entry's place in a Sorted's blocks with its position's first 16 bytes.
type sortKey struct {
	h1, h2 uint64
	at     uint32
}

// parallelMin is the fewest items worth a second goroutine (a variable for tests).
var parallelMin = 1 << 16

// parallel calls fn on consecutive ranges [from, to) of [0, parts), on every core when
// there are at least parallelMin items in all.
func parallel(parts, items int, fn func(from, to int)) {
	workers := min(runtime.GOMAXPROCS(0), parts, 1+items/parallelMin)
	if workers <= 1 {
		fn(0, parts)
		return
	}
	var wg sync.WaitGroup
	per := (parts + workers - 1) / workers
	for lo := 0; lo < parts; lo += per {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, min(parts, lo+per))
		}()
	}
	wg.Wait()
}

// sortRuns sorts keys (a total order) into at most two ascending runs, which the caller
// merges: keys[:bounds[1]] and keys[bounds[1]:] (bounds[1] may be len(keys)). Keys that
// come in a few ascending runs (a scan of a table stored in position order, collected by a
// few workers) are merged as they are; others are sorted in parts, one per core. Runs are
// merged pairwise, each pass's pairs in parallel.
func sortRuns(keys []sortKey, cmp func(a, b sortKey) int) ([]sortKey, []int) {
	bounds := []int{0}
	for i := 1; i < len(keys) && len(bounds) <= maxNaturalRuns; i++ {
		if cmp(keys[i-1], keys[i]) > 0 {
			bounds = append(bounds, i)
		}
	}
	if len(bounds) > maxNaturalRuns {
		runs := min(runtime.GOMAXPROCS(0), 1+len(keys)/parallelMin)
		bounds = make([]int, runs)
		for r := range bounds {
			bounds[r] = r * len(keys) / runs
		}
		parallel(runs, len(keys), func(from, to int) {
			for r := from; r < to; r++ {
				end := len(keys)
				if r+1 < runs {
					end = bounds[r+1]
				}
				slices.SortFunc(keys[bounds[r]:end], cmp)
			}
		})
	}
	bounds = append(bounds, len(keys))
	var buf []sortKey
	if len(bounds) > 3 {
		buf = hugeSlice[sortKey](len(keys))
	}
	for len(bounds) > 3 {
		pairs := (len(bounds) - 1) / 2
		parallel(pairs, len(keys), func(from, to int) {
			for p := from; p < to; p++ {
				lo, mid, hi := bounds[2*p], bounds[2*p+1], bounds[2*p+2]
				out := buf[lo:lo]
				mergeRuns(keys[lo:mid], keys[mid:hi], cmp, func(k sortKey) { out = append(out, k) })
			}
		})
		if (len(bounds)-1)%2 == 1 { // an odd run out: copied as it is
			lo := bounds[len(bounds)-2]
			copy(buf[lo:], keys[lo:])
		}
		var next []int
		for i := 0; i < len(bounds); i += 2 {
			next = append(next, bounds[i])
		}
		if next[len(next)-1] != len(keys) {
			next = append(next, len(keys))
		}
		bounds = next
		keys, buf = buf, keys
	}
	if len(bounds) == 2 {
		bounds = append(bounds, len(keys))
	}
	return keys, bounds
}

// hugeSlice makes a slice of n zero values whose memory is advised into huge pages where
// it is large enough to hold some (adviseHuge).
func hugeSlice[T any](n int) []T {
	s := make([]T, n)
	if n > 0 {
		adviseHuge(unsafe.Pointer(unsafe.SliceData(s)), uintptr(n)*unsafe.Sizeof(s[0]))
	}
	return s
}

// maxNaturalRuns is the most ascending runs sortRuns merges as they come.
const maxNaturalRuns = 64

// mergeRuns calls emit with the keys of the sorted a and b in merged order.
func mergeRuns(a, b []sortKey, cmp func(a, b sortKey) int, emit func(sortKey)) {
	for len(a) > 0 && len(b) > 0 {
		if cmp(b[0], a[0]) < 0 {
			emit(b[0])
			b = b[1:]
		} else {
			emit(a[0])
			a = a[1:]
		}
	}
	for _, k := range a {
		emit(k)
	}
	for _, k := range b {
		emit(k)
	}
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

// Len returns the number of entries.
func (s *Sorted) Len() int { return len(s.order) }

// Stats reports what queries have read.
func (s *Sorted) Stats() ReadStats { return s.stats }

// View returns a Sorted over the same entries with its own Stats, for another goroutine:
// queries only read the entries, so views may be queried concurrently.
func (s *Sorted) View() *Sorted {
	v := *s
	v.stats = ReadStats{}
	return &v
}

// index returns the index of the first entry at or after p (nil p: 0).
func (s *Sorted) index(p []byte, isHi bool) int {
	if p == nil {
		if isHi {
			return len(s.order)
		}
		return 0
	}
	s.stats.Nodes++
	return sort.Search(len(s.order), func(i int) bool { return bytes.Compare(s.pos(s.order[i]), p) >= 0 })
}

// Digest returns the digest of the entries in [lo, hi).
func (s *Sorted) Digest(lo, hi []byte) (Digest, error) {
	i, j := s.index(lo, false), s.index(hi, true)
	if j <= i {
		return Digest{}, nil
	}
	return s.prefixAt(j).Sub(s.prefixAt(i)), nil
}

// prefixAt returns the digest of the first i entries in order: a stored sum and the
// EntryHashes after it.
func (s *Sorted) prefixAt(i int) Digest {
	c := i / sumEvery
	if c >= len(s.sums) { // i = Len() at a multiple of sumEvery
		c = len(s.sums) - 1
	}
	if c < 0 {
		return Digest{}
	}
	d := s.sums[c]
	for k := c * sumEvery; k < i; k++ {
		d = d.Add(Digest{Count: 1, Sum: s.rec(s.order[k]).hash})
	}
	return d
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
		p := s.pos(s.order[idx])
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
		if !fn(s.entry(s.order[i])) {
			break
		}
	}
	return nil
}

// Each calls fn for every entry in position order until fn returns false. It is not
// counted in Stats: it serves the index's owner, not a session's queries.
func (s *Sorted) Each(fn func(Entry) bool) {
	for _, at := range s.order {
		if !fn(s.entry(at)) {
			return
		}
	}
}
