package merkle

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
)

// naiveSnap returns the first cut entry (IsCut) at or after p in the model, nil if none.
func naiveSnap(pos [][]byte, es []Entry, p []byte) []byte {
	i, _ := slices.BinarySearchFunc(pos, p, bytes.Compare)
	for ; i < len(pos); i++ {
		if IsCut(es[i].Hash()) {
			return pos[i]
		}
	}
	return nil
}

// naiveCutDigests is CutDigests over the model: each cut point snapped by naiveSnap.
func naiveCutDigests(pos [][]byte, es []Entry, lo, hi []byte, bounds [][]byte) []Digest {
	out := make([]Digest, len(bounds)+1)
	snapOr := func(p []byte, open bool) ([]byte, bool) { // position, +inf
		if p == nil {
			return nil, !open
		}
		s := naiveSnap(pos, es, p)
		return s, s == nil
	}
	xlo, loInf := snapOr(lo, true)
	if loInf {
		return out
	}
	xs := make([][]byte, len(bounds))
	infs := make([]bool, len(bounds))
	for i, b := range bounds {
		xs[i], infs[i] = snapOr(b, false)
	}
	xhi, hiInf := snapOr(hi, false)
	for i, p := range pos {
		if xlo != nil && bytes.Compare(p, xlo) < 0 {
			continue
		}
		if !hiInf && bytes.Compare(p, xhi) >= 0 {
			break
		}
		j := 0
		for j < len(bounds) && !infs[j] && bytes.Compare(xs[j], p) <= 0 {
			j++
		}
		out[j] = out[j].Add(es[i].Digest())
	}
	return out
}

// TestStoredCuts checks SnapCuts, CutDigests and SplitCuts against the model: level-1
// nodes are the cut entries, parts are whole level-1 nodes, split bounds are cut entries
// with their predecessors, and no entry is ever read.
func TestStoredCuts(t *testing.T) {
	g := ixGen{rng: rand.New(rand.NewPCG(11, 11)), o: VersionOrder}
	model := newNaiveIndex(VersionOrder)
	kv := newOrderedKV(false)
	loadCanonical(kv, nil, VersionOrder, 4, model, g, 30000)
	st := NewStored(kv, nil, VersionOrder)
	pos, es := model.sorted()
	var cuts [][]byte
	cutsAt := map[int][][]byte{} // level -> positions of entries with that many zero nibbles
	for i := range pos {
		h := es[i].Hash()
		if IsCut(h) {
			cuts = append(cuts, pos[i])
		}
		for l := 1; l <= 3 && h[(l-1)/2]>>(4*(1-(l-1)%2))&0xf == 0; l++ {
			cutsAt[l] = append(cutsAt[l], pos[i])
			if l == 2 && h[0] != 0 {
				t.Fatalf("level arithmetic")
			}
		}
	}
	// snapAt is the first position of cutsAt[l] at or after p.
	snapAt := func(l int, p []byte) []byte {
		xs := cutsAt[l]
		j, _ := slices.BinarySearchFunc(xs, p, bytes.Compare)
		if j == len(xs) {
			return nil
		}
		return xs[j]
	}
	rnd := func() []byte { return g.pos(pos) }
	sawLevel := map[int]int{}
	for range 300 {
		// SnapCuts over sorted random positions.
		var ps [][]byte
		for range 1 + g.rng.IntN(20) {
			if p := rnd(); p != nil {
				ps = append(ps, p)
			}
		}
		slices.SortFunc(ps, bytes.Compare)
		got, err := st.SnapCuts(ps)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range ps {
			if want := naiveSnap(pos, es, p); !bytes.Equal(got[i], want) || (got[i] == nil) != (want == nil) {
				t.Fatalf("SnapCuts(%x) = %x, want %x", p, got[i], want)
			}
		}

		// SnapCutsAt at levels 2 and 3.
		for l := 2; l <= 3; l++ {
			got, err := st.SnapCutsAt(l, ps)
			if err != nil {
				t.Fatal(err)
			}
			for i, p := range ps {
				if want := snapAt(l, p); !bytes.Equal(got[i], want) || (got[i] == nil) != (want == nil) {
					t.Fatalf("SnapCutsAt(%d, %x) = %x, want %x", l, p, got[i], want)
				}
			}
		}

		// CutDigests over a random range and sorted bounds inside it.
		lo, hi := rnd(), rnd()
		if lo != nil && hi != nil && bytes.Compare(lo, hi) > 0 {
			lo, hi = hi, lo
		}
		var bounds [][]byte
		for range g.rng.IntN(40) {
			b := rnd()
			if b == nil || (lo != nil && bytes.Compare(b, lo) < 0) || (hi != nil && bytes.Compare(b, hi) > 0) {
				continue
			}
			bounds = append(bounds, b)
		}
		slices.SortFunc(bounds, bytes.Compare)
		before := st.Stats().Entries
		ds, err := st.CutDigests(lo, hi, bounds)
		if err != nil {
			t.Fatal(err)
		}
		want := naiveCutDigests(pos, es, lo, hi, bounds)
		if !slices.Equal(ds, want) {
			t.Fatalf("CutDigests(%x, %x, %d bounds) = %v, want %v", lo, hi, len(bounds), ds, want)
		}
		var hint uint64
		if g.rng.IntN(2) == 0 {
			hint = want[0].Count
			for _, d := range want[1:] {
				hint += d.Count
			}
		}
		wantSnaps := g.rng.IntN(2) == 0
		ds2, snapped, err := st.CutDigestsSnapped(lo, hi, bounds, hint, wantSnaps)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ds2, want) {
			t.Fatalf("CutDigestsSnapped digests differ from CutDigests")
		}
		if wantSnaps && snapped == nil {
			t.Fatalf("CutDigestsSnapped(snaps) returned no snaps")
		}
		if snapped != nil {
			points := append(append([][]byte{lo}, bounds...), hi)
			for i, p := range points {
				var w []byte
				if p != nil {
					w = naiveSnap(pos, es, p)
				}
				if !bytes.Equal(snapped[i], w) || (snapped[i] == nil) != (w == nil) {
					t.Fatalf("CutDigestsSnapped point %d (%x) snapped to %x, want %x", i, p, snapped[i], w)
				}
			}
		}

		// SplitCuts of a range between two cut entries (of level 2, a third of the time:
		// the ends of ranges cut at level 2).
		cs := cuts
		if g.rng.IntN(3) == 0 {
			cs = cutsAt[2]
		}
		a, b := g.rng.IntN(len(cs)), g.rng.IntN(len(cs))
		if a > b {
			a, b = b, a
		}
		slo, shi := cs[a], cs[b]
		if g.rng.IntN(8) == 0 {
			slo = nil
		}
		if g.rng.IntN(8) == 0 {
			shi = nil
		}
		k := 2 + g.rng.IntN(64)
		var shint uint64
		if g.rng.IntN(2) == 0 { // the caller's count, or none
			shint = naiveCutDigests(pos, es, slo, shi, nil)[0].Count
		}
		sb, prevs, sds, err := st.SplitCuts(slo, shi, k, shint)
		if err != nil {
			t.Fatal(err)
		}
		if len(sb) > k-1 {
			t.Fatalf("SplitCuts gave %d bounds for k=%d", len(sb), k)
		}
		for i, x := range sb {
			j, ok := slices.BinarySearchFunc(cuts, x, bytes.Compare)
			if !ok {
				t.Fatalf("SplitCuts bound %x is not a cut entry", x)
			}
			if (slo != nil && bytes.Compare(x, slo) <= 0) || (shi != nil && bytes.Compare(x, shi) >= 0) || (i > 0 && bytes.Compare(sb[i-1], x) >= 0) {
				t.Fatalf("SplitCuts bounds not sorted strictly inside the range")
			}
			var want []byte
			if j > 0 {
				want = cuts[j-1]
			}
			if prevs != nil && !bytes.Equal(prevs[i], want) {
				t.Fatalf("SplitCuts prev of %x = %x, want %x", x, prevs[i], want)
			}
		}
		if (prevs == nil) != (sds == nil && (slo != nil || shi != nil)) || (prevs != nil && len(prevs) != len(sb)) {
			t.Fatalf("SplitCuts gave %d prevs and %d digests for %d bounds", len(prevs), len(sds), len(sb))
		}
		if sds != nil {
			if want := naiveCutDigests(pos, es, slo, shi, sb); !slices.Equal(sds, want) {
				t.Fatalf("SplitCuts digests = %v, want %v", sds, want)
			}
		}
		if b-a > 4*k && len(sb) < (k-1)/2 {
			t.Fatalf("SplitCuts gave %d bounds for k=%d over %d cut entries", len(sb), k, b-a)
		}
		// SplitCutsAt: the same cuts, or cuts of a higher level with their predecessors
		// at that level.
		lb, lprevs, level, lds, err := st.SplitCutsAt(slo, shi, k, shint)
		if err != nil {
			t.Fatal(err)
		}
		sawLevel[level]++
		if !slices.EqualFunc(lb, sb, bytes.Equal) {
			t.Fatalf("SplitCutsAt bounds differ from SplitCuts")
		}
		switch {
		case level == 1:
			if !slices.EqualFunc(lprevs, prevs, bytes.Equal) || !slices.Equal(lds, sds) {
				t.Fatalf("SplitCutsAt at level 1 differs from SplitCuts")
			}
		case level > 1 && level <= 3:
			if prevs != nil || len(lprevs) != len(lb) {
				t.Fatalf("SplitCutsAt level %d with %d prevs for %d bounds (SplitCuts gave prevs %v)", level, len(lprevs), len(lb), prevs != nil)
			}
			if lds != nil {
				sawLevel[-1]++
				if want := naiveCutDigests(pos, es, slo, shi, lb); !slices.Equal(lds, want) {
					t.Fatalf("SplitCutsAt level-%d digests = %v, want %v", level, lds, want)
				}
			}
			xs := cutsAt[level]
			for i, x := range lb {
				j, ok := slices.BinarySearchFunc(xs, x, bytes.Compare)
				if !ok {
					t.Fatalf("SplitCutsAt bound %x is not a level-%d entry", x, level)
				}
				var want []byte
				if j > 0 {
					want = xs[j-1]
				}
				if !bytes.Equal(lprevs[i], want) {
					t.Fatalf("SplitCutsAt level-%d prev of %x = %x, want %x", level, x, lprevs[i], want)
				}
			}
		default:
			t.Fatalf("SplitCutsAt level %d", level)
		}
		if n := st.Stats().Entries - before; n != 0 {
			t.Fatalf("cut queries read %d entries", n)
		}
	}
	if sawLevel[1] == 0 || sawLevel[2] == 0 || sawLevel[-1] == 0 {
		t.Fatalf("SplitCutsAt levels seen %v: want splits at levels 1 and 2, and digests from a higher level (-1)", sawLevel)
	}
}
