package reconcile

import (
	"context"

	"github.com/reconcile-dev/reconcile/merkle"
)

const entryPage = 65536

// eachEntry calls fn for every entry of snap in [lo, hi), reading it in pages so that a
// large range never sits in memory at once.
func eachEntry(ctx context.Context, snap Snapshot, lo, hi []byte, fn func(merkle.Entry)) error {
	o := snap.Info().Ordering
	for {
		es, err := snap.Entries(ctx, lo, hi, entryPage)
		if err != nil {
			return err
		}
		for _, e := range es {
			fn(e)
		}
		if len(es) < entryPage {
			return nil
		}
		lo = append(es[len(es)-1].Position(o), 0)
	}
}
