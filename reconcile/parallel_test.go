package reconcile

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/reconcile-dev/reconcile/merkle"
)

// forkable is a Snapshot (nil: never read here) that forks into copies of itself and
// counts its open forks.
type forkable struct {
	Snapshot
	open *atomic.Int64
}

func (f forkable) Fork() (Snapshot, error)     { f.open.Add(1); return f, nil }
func (f forkable) Close() error                { f.open.Add(-1); return nil }
func (f forkable) ReadStats() merkle.ReadStats { return merkle.ReadStats{} }

func TestForEach(t *testing.T) {
	defer SetParallelMin(2)()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4)) // the parallel path on any machine
	var open atomic.Int64
	snap := forkable{open: &open}
	ctx := context.Background()

	// Every index once, each written only by its own call.
	const n = 1000
	seen := make([]int32, n)
	if err := forEach(ctx, snap, n, func(_ Snapshot, i int) error { seen[i]++; return nil }); err != nil {
		t.Fatal(err)
	}
	for i, c := range seen {
		if c != 1 {
			t.Fatalf("index %d ran %d times", i, c)
		}
	}
	if open.Load() != 0 {
		t.Fatalf("%d forks left open", open.Load())
	}

	// The first error comes back, and so does a panic, as an error; forks are closed.
	boom := errors.New("boom")
	err := forEach(ctx, snap, n, func(_ Snapshot, i int) error {
		if i == 500 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("error = %v, want boom", err)
	}
	err = forEach(ctx, snap, n, func(_ Snapshot, i int) error {
		if i == 700 {
			panic("a bad read")
		}
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "panic: a bad read") {
		t.Fatalf("error = %v, want the panic", err)
	}
	if open.Load() != 0 {
		t.Fatalf("%d forks left open", open.Load())
	}

	// A cancelled context stops it.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := forEach(cctx, snap, n, func(Snapshot, int) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want context.Canceled", err)
	}
}
