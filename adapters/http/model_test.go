package remote

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/reconcile-dev/reconcile/adapters/memory"
	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// modelScenario builds a source and a target of one kind from random histories: the
// cases the session must get right whichever side is remote.
func modelScenario(kind int, seed int64, o merkle.Ordering) (src, dst *memory.Store) {
	w := &world{rng: rand.New(rand.NewSource(seed))}
	src, dst = memory.New(o), memory.New(o)
	switch kind {
	case 0: // empty target
		w.history(src.Put, src.Delete, 300)
	case 1: // empty source
		w.history(dst.Put, dst.Delete, 300)
	case 2: // totally different
		w.history(src.Put, src.Delete, 300)
		w.version = 1 << 30
		w.history(dst.Put, dst.Delete, 300)
	case 3: // identical
		w.history(src.Put, src.Delete, 400)
		dst = cloneIn(o, src)
	case 4: // the source restored from an older copy: versions go backwards
		w.history(src.Put, src.Delete, 400)
		old := cloneIn(o, src)
		w.history(src.Put, src.Delete, 40)
		src, dst = old, cloneIn(o, src)
	case 5: // count-preserving swaps
		w.history(src.Put, src.Delete, 400)
		dst = cloneIn(o, src)
		rows := dst.Rows()
		for i := 0; i < 5 && len(rows) > 0; i++ {
			r := rows[w.rng.Intn(len(rows))]
			dst.Delete(r.Key)
			r.Key = append([]byte("swapped/"), r.Key...)
			dst.Put(r)
		}
	default: // drift on both sides
		w.history(src.Put, src.Delete, 400)
		dst = cloneIn(o, src)
		w.history(src.Put, src.Delete, w.rng.Intn(40))
		w.history(dst.Put, dst.Delete, w.rng.Intn(40))
	}
	return src, dst
}

// naiveDiff compares the live rows of two stores key by key.
func naiveDiff(src, dst *memory.Store) (onlySrc, onlyDst, changed int) {
	a, b := rowsByKey(src.Rows()), rowsByKey(dst.Rows())
	for k, v := range a {
		switch w, ok := b[k]; {
		case !ok:
			onlySrc++
		case w != v:
			changed++
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			onlyDst++
		}
	}
	return
}

// TestModelRemote runs the model scenarios with one side behind a loopback server, the
// target (the source initiates) or the source (the target initiates), in both orderings
// and with small and default tunings: diff finds what a naive full comparison finds, and
// after a mirror sync the target's live rows equal the source's and the roots match.
func TestModelRemote(t *testing.T) {
	ctx := context.Background()
	tunings := []reconcile.Options{{}, {Fanout: 2, LeafMax: 2, FingerprintBytes: 1, BatchRows: 3}}
	for kind := 0; kind < 7; kind++ {
		for _, o := range []merkle.Ordering{merkle.VersionOrder, merkle.KeyOrder} {
			for _, remoteSource := range []bool{false, true} {
				for ti, tuning := range tunings {
					name := fmt.Sprintf("kind%d/%s/remote-source=%v/tuning%d", kind, o, remoteSource, ti)
					t.Run(name, func(t *testing.T) {
						src, dst := modelScenario(kind, int64(kind*10+ti), o)
						wantS, wantD, wantC := naiveDiff(src, dst)
						served := reconcile.Endpoint(dst)
						if remoteSource {
							served = src
						}
						_, _, c := serve(t, served, ServerOptions{}, ClientOptions{})
						run := func(opts reconcile.Options) (*reconcile.Report, error) {
							defer c.Close()
							if remoteSource {
								return reconcile.RunFromPeer(ctx, c, dst, opts)
							}
							return reconcile.RunPeer(ctx, src, c, opts)
						}
						opts := tuning
						opts.Now = testNow
						rep, err := run(opts)
						if err != nil {
							t.Fatalf("diff: %v", err)
						}
						if rep.OnlySource != wantS || rep.OnlyTarget != wantD || rep.Changed != wantC {
							t.Fatalf("diff found %d/%d/%d (only source/only target/changed), naive %d/%d/%d",
								rep.OnlySource, rep.OnlyTarget, rep.Changed, wantS, wantD, wantC)
						}
						opts.Mode, opts.Force = reconcile.Mirror, true
						if rep, err = run(opts); err != nil {
							t.Fatalf("sync: %v", err)
						}
						if rep.Upserted != wantS+wantC || rep.Deleted != wantD || rep.Raced != 0 || rep.Quarantined != 0 {
							t.Fatalf("sync: %d upserted %d deleted (%d raced, %d quarantined), want %d and %d",
								rep.Upserted, rep.Deleted, rep.Raced, rep.Quarantined, wantS+wantC, wantD)
						}
						if a, b := liveRows(src), liveRows(dst); strings.Join(a, ",") != strings.Join(b, ",") {
							t.Fatalf("after sync: %d live rows on the source, %d on the target", len(a), len(b))
						}
						sr, _ := reconcile.Root(ctx, src, testNow)
						dr, _ := reconcile.Root(ctx, dst, testNow)
						if sr.Root != dr.Root {
							t.Fatal("after sync: roots differ")
						}
						opts.Mode = reconcile.Diff
						if rep, err = run(opts); err != nil || rep.Differ() || rep.Rounds != 1 {
							t.Fatalf("diff after sync: %v, differ %v, %d rounds", err, rep.Differ(), rep.Rounds)
						}
					})
				}
			}
		}
	}
}
