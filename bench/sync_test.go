package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/reconcile-dev/reconcile/adapters/badger"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// BenchmarkSync syncs the target of BenchmarkSession's fixtures (0.1% and 1% of keys
// differing) from its source in mirror mode, in one process: the session of
// BenchmarkSession plus the target's writes, in the session's adaptive apply batches.
// Each iteration syncs a fresh copy of the target (the copy is not timed). Reports the
// time a session takes and per row written.
//
//	RECONCILE_BENCH_BULK=1 go test ./bench -run XXX -bench BenchmarkSync -benchtime 3x
func BenchmarkSync(b *testing.B) {
	rows := benchRows(b)
	for _, frac := range []float64{0.001, 0.01} {
		b.Run(fmt.Sprintf("rows=%d/drift=%g", rows, frac), func(b *testing.B) {
			fx := sessionFixture(b, rows, frac)
			src := openReadOnly(b, fx.Source)
			var written int
			var took time.Duration
			for b.Loop() {
				b.StopTimer()
				dir := filepath.Join(b.TempDir(), "target")
				if err := CopyDir(fx.Target, dir); err != nil {
					b.Fatal(err)
				}
				dst, err := badger.Open(dir, badger.Options{})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				t0 := time.Now()
				rep, err := reconcile.Run(context.Background(), src, dst, reconcile.Options{Mode: reconcile.Mirror, Now: benchNow})
				took += time.Since(t0)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				if rep.RootTargetAfter != rep.RootSource || rep.Partial() {
					b.Fatalf("sync left the target at %s, the source at %s, %d quarantined, %d raced", rep.RootTargetAfter, rep.RootSource, rep.Quarantined, rep.Raced)
				}
				written = rep.Upserted + rep.Deleted
				if err := dst.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(written), "written")
			b.ReportMetric(float64(took.Microseconds())/1000/float64(b.N), "ms/sync")
			b.ReportMetric(float64(took.Nanoseconds())/float64(b.N*max(written, 1))/1000, "us/written")
		})
	}
}
