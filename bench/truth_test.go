package bench

import (
	"path/filepath"
	"testing"
)

// The truth ApplyDriftTruth returns is exactly the difference a naive comparison finds,
// for every kind of drift, and survives a round trip through its file.
func TestDriftTruth(t *testing.T) {
	h := testHistory()
	for _, d := range []Drift{
		{Updates: 0.01, Deletes: 0.005, Inserts: 0.004, Swaps: 5, Seed: 3},
		{RollbackRows: 0.02, Seed: 1},
		{RollbackVersions: 0.01, Seed: 1},
		{BulkDelete: 0.03, Seed: 4},
		{BulkDelete: 0.01, Updates: 0.01, RollbackRows: 0.01, Swaps: 3, Seed: 5},
	} {
		src := newMem()
		if _, err := h.Generate(src); err != nil {
			t.Fatal(err)
		}
		dst := src.clone()
		ds, truth, err := h.ApplyDriftTruth(dst, d)
		if err != nil {
			t.Fatal(err)
		}
		vis := func(r row, ok bool) bool { return ok && (r.expiresAt == 0 || r.expiresAt > h.Now) }
		want := Truth{}
		for k := range src.rows {
			want[k] = 0
		}
		for k := range dst.rows {
			want[k] = 0
		}
		for k := range want {
			a, aok := src.rows[k]
			b, bok := dst.rows[k]
			av, bv := vis(a, aok), vis(b, bok)
			switch {
			case av && bv && a != b:
				want[k] = Changed
			case av && !bv:
				want[k] = OnlySource
			case bv && !av:
				want[k] = OnlyTarget
			default:
				delete(want, k)
			}
		}
		if len(truth) != len(want) || len(truth) != ds.Differing() || len(truth) == 0 {
			t.Fatalf("%+v: truth has %d keys, a full comparison %d, stats %d", d, len(truth), len(want), ds.Differing())
		}
		for k, c := range want {
			if truth[k] != c {
				t.Fatalf("%+v: key %q is %v, truth says %v", d, k, c, truth[k])
			}
		}
		if d.BulkDelete > 0 && ds.BulkDeleted != int(d.BulkDelete*float64(h.Rows)+0.5) {
			t.Errorf("bulk deleted %d", ds.BulkDeleted)
		}
		if d.RollbackRows > 0 && (ds.RolledBack+ds.Removed < int(d.RollbackRows*float64(h.Rows))/2) {
			t.Errorf("rollback of %g rows touched %d keys", d.RollbackRows, ds.RolledBack+ds.Removed)
		}
		path := filepath.Join(t.TempDir(), "truth.bin")
		if err := WriteTruth(path, truth); err != nil {
			t.Fatal(err)
		}
		back, err := ReadTruth(path)
		if err != nil || len(back) != len(truth) {
			t.Fatalf("read back: %v", err)
		}
		for k, c := range truth {
			if back[k] != c {
				t.Fatalf("read back %q: %v, want %v", k, back[k], c)
			}
		}
		os, ot, ch := truth.Reversed().Counts()
		if os != ds.OnlyTarget || ot != ds.OnlySource || ch != ds.Changed {
			t.Errorf("reversed counts %d/%d/%d, stats %+v", os, ot, ch, ds)
		}
	}
}

// A skewed history puts most live rows near the top of the version range.
func TestSkew(t *testing.T) {
	h := testHistory()
	h.UpdateRatio, h.Skew = 2, 20
	m := newMem()
	st, err := h.Generate(m)
	if err != nil {
		t.Fatal(err)
	}
	top := 0
	for _, r := range m.rows {
		if r.version > st.MaxVersion*8/10 {
			top++
		}
	}
	if top < h.Rows/2 {
		t.Fatalf("%d of %d live rows in the top fifth of the versions", top, h.Rows)
	}
}
