package merkle

import (
	"bytes"
	"math/rand/v2"
	"runtime"
	"sort"
	"testing"
)

// TestSortedBlocks builds Sorted over random entries split into random blocks, with
// positions that share long prefixes, end in zero bytes, are prefixes of each other and
// repeat, and checks order, counts, digests and splits against a plain sort.
//
// Small inputs are sorted in one goroutine; the rounds are run again with parallelMin
// lowered and 1 to 5 cores, so that keys are built, sorted and merged in parallel runs
// (odd counts of runs included).
func TestSortedBlocks(t *testing.T) {
	for _, procs := range []int{0, 1, 2, 3, 5} {
		if procs > 0 {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			old := parallelMin
			parallelMin = 7
			defer func() { parallelMin = old }()
		}
		testSortedBlocks(t, VersionOrder)
		testSortedBlocks(t, KeyOrder)
	}
}

// modelItem is an entry with its position and EntryHash.
type modelItem struct {
	Pos   []byte
	Entry Entry
	Hash  Hash
}

func testSortedBlocks(t *testing.T, o Ordering) {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	for round := 0; round < 200; round++ {
		n := rng.IntN(300)
		var all []modelItem
		for i := 0; i < n; i++ {
			k := make([]byte, rng.IntN(24))
			for j := range k {
				k[j] = byte(rng.IntN(3)) // few distinct bytes: long shared prefixes, zeros
			}
			e := Entry{Key: k, Version: uint64(rng.IntN(3)), ValueHash: Hash{byte(i), byte(i >> 8)}}
			all = append(all, modelItem{Pos: e.Position(o), Entry: e, Hash: e.Hash()})
		}
		var builders []*SortedBuilder
		for rest := all; len(rest) > 0; {
			m := 1 + rng.IntN(len(rest))
			b := NewSortedBuilder(o)
			for _, it := range rest[:m] {
				b.Add(it.Entry)
			}
			builders = append(builders, b)
			rest = rest[m:]
		}
		s := BuildSorted(o, builders...)

		// The model: the last item of each position (in input order), sorted.
		last := map[string]modelItem{}
		for _, it := range all {
			last[string(it.Pos)] = it
		}
		var want []modelItem
		for _, it := range last {
			want = append(want, it)
		}
		sort.Slice(want, func(i, j int) bool { return bytes.Compare(want[i].Pos, want[j].Pos) < 0 })
		if s.Len() != len(want) {
			t.Fatalf("round %d: %d entries, want %d", round, s.Len(), len(want))
		}
		var sum Digest
		for i, it := range want {
			at := s.order[i]
			if e := s.entry(at); !bytes.Equal(e.Position(o), it.Pos) || s.rec(at).hash != it.Hash || !SameEntry(&e, &it.Entry) {
				t.Fatalf("ordering %v round %d: entry %d is %x, want %x", o, round, i, s.pos(at), it.Pos)
			}
			sum = sum.Add(Digest{Count: 1, Sum: it.Hash})
		}
		if root, _ := s.Digest(nil, nil); root != sum {
			t.Fatalf("round %d: root %v, want %v", round, root, sum)
		}
		for q := 0; q < 20 && len(want) > 0; q++ { // digests of random ranges, at every offset from the stored sums
			i, j := rng.IntN(len(want)), rng.IntN(len(want))
			if i > j {
				i, j = j, i
			}
			var w Digest
			for _, it := range want[i:j] {
				w = w.Add(Digest{Count: 1, Sum: it.Hash})
			}
			if d, _ := s.Digest(want[i].Pos, want[j].Pos); d != w {
				t.Fatalf("round %d: digest of entries %d..%d is %v, want %v", round, i, j, d, w)
			}
		}
		if len(want) > 2 {
			lo, hi := want[1].Pos, want[len(want)-1].Pos
			d, _ := s.Digest(lo, hi)
			var w Digest
			for _, it := range want[1 : len(want)-1] {
				w = w.Add(Digest{Count: 1, Sum: it.Hash})
			}
			if d != w {
				t.Fatalf("round %d: range digest %v, want %v", round, d, w)
			}
		}
	}
}
