package reconcile_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"

	"github.com/reconcile-dev/reconcile/adapters/memory"
	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// A service whose replica also takes writes keeps its own rule for conflicts: the newer
// version of a changed row wins, and rows written only on the replica are kept.
func ExampleOptions_resolve() {
	ctx := context.Background()
	primary, replica := memory.New(merkle.VersionOrder), memory.New(merkle.VersionOrder)
	primary.Put(reconcile.Row{Key: []byte("cart/1"), Version: 10, Value: []byte("2 apples")})
	replica.Put(reconcile.Row{Key: []byte("cart/1"), Version: 12, Value: []byte("3 apples")}) // newer, written on the replica
	primary.Put(reconcile.Row{Key: []byte("cart/2"), Version: 11, Value: []byte("1 pear")})
	replica.Put(reconcile.Row{Key: []byte("cart/2"), Version: 9, Value: []byte("no pears")})
	replica.Put(reconcile.Row{Key: []byte("cart/3"), Version: 13, Value: []byte("a fig")}) // only on the replica

	newerWins := func(_ context.Context, c reconcile.Conflict) (reconcile.Resolution, error) {
		switch {
		case c.Class == "only_target":
			return reconcile.ResolveTarget, nil // never delete the replica's own rows
		case c.Class == "changed" && c.Target.Version > c.Source.Version:
			return reconcile.ResolveTarget, nil
		}
		return reconcile.ResolveSource, nil
	}
	rep, err := reconcile.Run(ctx, primary, replica, reconcile.Options{Mode: reconcile.Mirror, Resolve: newerWins})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("changed %d, only on the replica %d: upserted %d, deleted %d, kept %d\n",
		rep.Changed, rep.OnlyTarget, rep.Upserted, rep.Deleted, rep.Kept)
	rows := replica.Rows()
	slices.SortFunc(rows, func(a, b reconcile.Row) int { return bytes.Compare(a.Key, b.Key) })
	for _, r := range rows {
		fmt.Printf("%s = %s\n", r.Key, r.Value)
	}
	// Output:
	// changed 2, only on the replica 1: upserted 1, deleted 0, kept 2
	// cart/1 = 3 apples
	// cart/2 = 1 pear
	// cart/3 = a fig
}

// progressLog is an Observer that prints each apply batch and the result.
type progressLog struct{}

func (progressLog) Progress(p reconcile.Progress) {
	if p.Phase == "apply" {
		fmt.Printf("apply: %d written, %d pending\n", p.Applied, p.Pending)
	}
}

func (progressLog) Finished(rep *reconcile.Report, err error) {
	fmt.Printf("finished: %d upserted, error %v\n", rep.Upserted, err)
}

// An Observer follows a session as it goes, and a Logger of the service's own receives its
// records (here only warnings and worse, as JSON without timestamps).
func ExampleObserver() {
	ctx := context.Background()
	primary, replica := memory.New(merkle.VersionOrder), memory.New(merkle.VersionOrder)
	for i := 0; i < 300; i++ {
		primary.Put(reconcile.Row{Key: []byte(fmt.Sprintf("k%03d", i)), Version: uint64(i + 1), Value: []byte("v")})
	}
	replica.MaxRowBytes = 100
	primary.Put(reconcile.Row{Key: []byte("huge"), Version: 400, Value: make([]byte, 200)})

	log := slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{
		Level: slog.LevelWarn,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == "error" {
				return slog.Attr{}
			}
			return a
		},
	}))
	_, err := reconcile.Run(ctx, primary, replica, reconcile.Options{
		Mode: reconcile.Mirror, BatchRows: 100, Attempts: 1,
		Observer: progressLog{}, Logger: log.With("job", "carts"),
	})
	fmt.Println("error:", err)
	// Output:
	// {"level":"WARN","msg":"apply: row quarantined","job":"carts","key":"huge","attempts":1}
	// apply: 1 written, 299 pending
	// apply: 101 written, 199 pending
	// apply: 300 written, 0 pending
	// finished: 300 upserted, error <nil>
	// error: <nil>
}
