package bench

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkMethods runs this tool and the three baselines on the mixed scenario (the
// stores of BenchmarkSession: RECONCILE_BENCH_ROWS live rows, default 1M) at 0.1% and 1%
// drift, through the same harness as `reconcile bench`, and reports what each read and
// sent and whether its plan was right. ns/op is the method's time.
func BenchmarkMethods(b *testing.B) {
	rows := benchRows(b)
	base := History{DeleteRatio: 1, UpdateRatio: 0.5, TTLFraction: 0.02, ValueSize: 64, Seed: 1, Now: benchNow}
	ctx := context.Background()
	for _, d := range []float64{0.001, 0.01} {
		sc, err := NewScenario("mixed", base, rows, d)
		if err != nil {
			b.Fatal(err)
		}
		for _, m := range []string{MethodReconcile, MethodManifest, MethodChunked, MethodHighWater} {
			b.Run(fmt.Sprintf("rows=%d/drift=%g/%s", rows, d, m), func(b *testing.B) {
				fx, err := Fixture{Dir: benchDir(), History: sc.History, Drift: sc.Drift}.Build()
				if err != nil {
					b.Fatal(err)
				}
				for _, p := range []string{fx.Source, fx.Target} {
					if err := Purge(p, benchNow); err != nil {
						b.Fatal(err)
					}
				}
				truth, err := ReadTruth(fx.Truth)
				if err != nil {
					b.Fatal(err)
				}
				src := openReadOnly(b, fx.Source)
				dst := openReadOnly(b, fx.Target)
				job := Job{Scenario: sc, Drift: d, Fixture: fx, Method: m, Reps: 1}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := runMethod(ctx, job, src, dst, benchNow); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				r, err := Measure(ctx, job, src, dst, truth)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(r.Differing), "diffs")
				b.ReportMetric(float64(r.Reads), "reads")
				b.ReportMetric(float64(r.Bytes), "proto_B")
				b.ReportMetric(float64(r.Rounds), "rounds")
				b.ReportMetric(b2f(r.Correct), "correct")
				b.ReportMetric(float64(r.Missed), "missed")
				b.ReportMetric(float64(r.Lost), "lost")
			})
		}
	}
}
