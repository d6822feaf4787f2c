package merkle

import (
	"bytes"
	"math/rand/v2"
	"sort"
	"testing"
)

// TestSortedBlocks builds Sorted over random entries split into random blocks, with
// positions that share long prefixes, end in zero bytes, are prefixes of each other and
// repeat, and checks order, counts, digests and splits against a plain sort.
func TestSortedBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := 0; round < 200; round++ {
		n := rng.IntN(300)
		var all []SortedItem
		for i := 0; i < n; i++ {
			k := make([]byte, rng.IntN(24))
			for j := range k {
				k[j] = byte(rng.IntN(3)) // few distinct bytes: long shared prefixes, zeros
			}
			e := Entry{Key: k, Version: uint64(rng.IntN(3)), ValueHash: Hash{byte(i), byte(i >> 8)}}
			all = append(all, SortedItem{Pos: e.Position(VersionOrder), Entry: e, Hash: e.Hash()})
		}
		var blocks [][]SortedItem
		for rest := all; len(rest) > 0; {
			m := 1 + rng.IntN(len(rest))
			blocks = append(blocks, rest[:m])
			rest = rest[m:]
		}
		s := NewSortedBlocks(blocks)

		// The model: the last item of each position (in input order), sorted.
		last := map[string]SortedItem{}
		for _, it := range all {
			last[string(it.Pos)] = it
		}
		var want []SortedItem
		for _, it := range last {
			want = append(want, it)
		}
		sort.Slice(want, func(i, j int) bool { return bytes.Compare(want[i].Pos, want[j].Pos) < 0 })
		if s.Len() != len(want) {
			t.Fatalf("round %d: %d entries, want %d", round, s.Len(), len(want))
		}
		var sum Digest
		for i, it := range want {
			if got := s.item(i); !bytes.Equal(got.Pos, it.Pos) || got.Hash != it.Hash {
				t.Fatalf("round %d: entry %d is %x, want %x", round, i, got.Pos, it.Pos)
			}
			sum = sum.Add(Digest{Count: 1, Sum: it.Hash})
		}
		if root, _ := s.Digest(nil, nil); root != sum {
			t.Fatalf("round %d: root %v, want %v", round, root, sum)
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
