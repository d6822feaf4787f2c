package reconcile_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"testing"

	"github.com/reconcile-dev/reconcile/adapters/memory"
	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// prefetching is an endpoint whose snapshots implement Prefetcher and record how many of
// their listings (EachHashed) fall inside a range named by the Prefetch before them.
type prefetching struct {
	reconcile.Endpoint
	prefetches, listings, covered int
}

func (p *prefetching) Open(ctx context.Context, now int64) (reconcile.Snapshot, error) {
	s, err := p.Endpoint.Open(ctx, now)
	if err != nil {
		return nil, err
	}
	return &prefetchSnap{Snapshot: s, ep: p}, nil
}

type prefetchSnap struct {
	reconcile.Snapshot
	ep    *prefetching
	named []reconcile.Range
}

func (s *prefetchSnap) Prefetch(ctx context.Context, ranges []reconcile.Range) error {
	for i := 1; i < len(ranges); i++ {
		if a, b := ranges[i-1].Lo, ranges[i].Lo; a != nil && (b == nil || bytes.Compare(a, b) > 0) {
			return fmt.Errorf("Prefetch: ranges not sorted by Lo")
		}
	}
	s.ep.prefetches++
	s.named = ranges
	return nil
}

func (s *prefetchSnap) EachHashed(ctx context.Context, lo, hi []byte, fn func(merkle.Entry, merkle.Hash) bool) error {
	s.ep.listings++
	for _, r := range s.named {
		if (r.Lo == nil || (lo != nil && bytes.Compare(r.Lo, lo) <= 0)) && (r.Hi == nil || (hi != nil && bytes.Compare(hi, r.Hi) <= 0)) {
			s.ep.covered++
			break
		}
	}
	es, err := s.Entries(ctx, lo, hi, 0)
	if err != nil {
		return err
	}
	for _, e := range es {
		if !fn(e, e.Hash()) {
			break
		}
	}
	return nil
}

// TestPrefetchNamesListings: in a session with many scattered differences, both sides name
// to their Prefetcher the ranges they then list, and the session's result does not change.
func TestPrefetchNamesListings(t *testing.T) {
	for _, o := range []merkle.Ordering{merkle.VersionOrder, merkle.KeyOrder} {
		t.Run(o.String(), func(t *testing.T) {
			rng := rand.New(rand.NewSource(3))
			src, dst := memory.New(o), memory.New(o)
			for i := range 20000 {
				r := reconcile.Row{Key: []byte(fmt.Sprintf("key%06d", i)), Version: uint64(1 + i), Value: []byte("v")}
				src.Put(r)
				switch rng.Intn(200) {
				case 0:
					continue // only on the source
				case 1:
					r.Value = []byte("changed")
				}
				dst.Put(r)
			}
			wantS, wantD, wantC := naiveDiff(src, dst, testNow)
			ps, pd := &prefetching{Endpoint: src}, &prefetching{Endpoint: dst}
			rep, err := reconcile.Run(context.Background(), ps, pd, reconcile.Options{Now: testNow})
			if err != nil {
				t.Fatal(err)
			}
			if rep.OnlySource != wantS || rep.OnlyTarget != wantD || rep.Changed != wantC {
				t.Fatalf("found %d/%d/%d, naive comparison %d/%d/%d", rep.OnlySource, rep.OnlyTarget, rep.Changed, wantS, wantD, wantC)
			}
			for name, p := range map[string]*prefetching{"source": ps, "target": pd} {
				t.Logf("%s: %d prefetches, %d of %d listings named before", name, p.prefetches, p.covered, p.listings)
				if p.prefetches == 0 || p.listings < 50 || p.covered < p.listings*9/10 {
					t.Errorf("%s: %d prefetches, %d of %d listings named before", name, p.prefetches, p.covered, p.listings)
				}
			}
		})
	}
}
