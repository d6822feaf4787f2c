package bench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reconcile-dev/reconcile/adapters/badger"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// TestBulkFixtureMatchesReplay: a fixture whose source is built from the history's final
// rows holds the same rows and the same index as one that replayed every write: equal
// roots, and a session between each pair finds the same differences reading the same
// number of entries and nodes.
func TestBulkFixtureMatchesReplay(t *testing.T) {
	h := History{Rows: 4000, DeleteRatio: 1, UpdateRatio: 0.5, TTLFraction: 0.1, ValueSize: 24, Seed: 9, Now: testNow}
	d := Drift{Updates: 0.01, Deletes: 0.01, Inserts: 0.01, Seed: 3}
	dir := t.TempDir()
	// One nonce for both sessions: which entries share a short prefix, and so what a
	// session fetches, depends on it.
	defer reconcile.FixNonce()()
	var reps []*reconcile.Report
	var roots [][2]reconcile.Info
	for _, bulk := range []bool{false, true} {
		fx, err := Fixture{Dir: dir, History: h, Drift: d, Bulk: bulk}.Build()
		if err != nil {
			t.Fatal(err)
		}
		if bulk && fx.History.Deletes == 0 {
			t.Fatal("the bulk fixture's history stats lost the deletes")
		}
		src, err := badger.Open(fx.Source, badger.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		dst, err := badger.Open(fx.Target, badger.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		rs, err := reconcile.Root(ctx, src, testNow)
		if err != nil {
			t.Fatal(err)
		}
		rt, err := reconcile.Root(ctx, dst, testNow)
		if err != nil {
			t.Fatal(err)
		}
		roots = append(roots, [2]reconcile.Info{rs, rt})
		rep, err := reconcile.Run(ctx, src, dst, reconcile.Options{Now: testNow})
		if err != nil {
			t.Fatal(err)
		}
		reps = append(reps, rep)
		src.Close()
		dst.Close()
	}
	if roots[0][0].Root != roots[1][0].Root || roots[0][1].Root != roots[1][1].Root {
		t.Fatalf("bulk and replayed fixtures differ: roots %v and %v", roots[0], roots[1])
	}
	a, b := reps[0], reps[1]
	if a.OnlySource != b.OnlySource || a.OnlyTarget != b.OnlyTarget || a.Changed != b.Changed || a.Rounds != b.Rounds ||
		a.BytesSent != b.BytesSent || a.BytesReceived != b.BytesReceived ||
		a.EntriesReadSource != b.EntriesReadSource || a.EntriesReadTarget != b.EntriesReadTarget ||
		a.NodesReadSource != b.NodesReadSource || a.NodesReadTarget != b.NodesReadTarget {
		t.Fatalf("sessions differ:\nreplayed %+v\nbulk     %+v", a, b)
	}
	if a.OnlySource+a.OnlyTarget+a.Changed == 0 {
		t.Fatal("no differences: the test would prove nothing")
	}
}

// TestFixtureCacheMoved: a fixture cache moved to another directory is still a cache
// there: Build finds it and names the stores where they are now.
func TestFixtureCacheMoved(t *testing.T) {
	h := History{Rows: 500, DeleteRatio: 1, ValueSize: 8, Seed: 4, Now: testNow}
	d := Drift{Updates: 0.02, Seed: 5}
	dir := filepath.Join(t.TempDir(), "a")
	if _, err := (Fixture{Dir: dir, History: h, Drift: d}).Build(); err != nil {
		t.Fatal(err)
	}
	moved := filepath.Join(filepath.Dir(dir), "b")
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	fx, err := Fixture{Dir: moved, History: h, Drift: d}.Build()
	if err != nil {
		t.Fatal(err)
	}
	if !fx.Cached {
		t.Fatal("the moved fixture was built again")
	}
	for _, p := range []string{fx.Source, fx.Target, fx.Truth} {
		if !strings.HasPrefix(p, moved+string(filepath.Separator)) {
			t.Fatalf("fixture path %s is not under the cache's new place %s", p, moved)
		}
	}
}
