package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/reconcile-dev/reconcile/adapters/memory"
	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// TestRootAsOf checks RootAsOf against its definition on random stores (updates,
// deletes, expired rows, many rows at one version): the cut at v is the root of a store
// holding only the live rows whose version is at most v. A key-ordered store is refused.
func TestRootAsOf(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(5, 6))
	for round := range 20 {
		s := memory.New(merkle.VersionOrder)
		for i := range 300 {
			key := fmt.Appendf(nil, "k%03d", rng.IntN(120))
			switch rng.IntN(6) {
			case 0:
				s.Delete(key)
			default:
				r := reconcile.Row{Key: key, Version: uint64(1 + rng.IntN(50)), Value: fmt.Appendf(nil, "v%d", i)}
				if rng.IntN(8) == 0 {
					r.ExpiresAt = testNow - 1 // expired at the snapshot's now
				}
				s.Put(r)
			}
		}
		live := liveRows(s, testNow)
		for _, v := range []uint64{0, 1, 7, 25, 49, 50, 51, math.MaxUint64 - 1, math.MaxUint64} {
			cut := memory.New(merkle.VersionOrder)
			for _, r := range live {
				if r.Version <= v {
					cut.Put(r)
				}
			}
			want, err := reconcile.Root(ctx, cut, testNow)
			if err != nil {
				t.Fatal(err)
			}
			got, err := reconcile.RootAsOf(ctx, s, testNow, v)
			if err != nil {
				t.Fatal(err)
			}
			if got.Root != want.Root {
				t.Fatalf("round %d, cut at %d: %d rows, %x; the naive cut %d rows, %x", round, v, got.Root.Count, got.Root.Fingerprint(), want.Root.Count, want.Root.Fingerprint())
			}
		}
	}
	if _, err := reconcile.RootAsOf(ctx, memory.New(merkle.KeyOrder), testNow, 5); !errors.Is(err, reconcile.ErrNoVersionCut) {
		t.Fatalf("a key-ordered store's cut: %v", err)
	}
}
