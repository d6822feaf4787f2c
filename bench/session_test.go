package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/reconcile-dev/reconcile/adapters/badger"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// benchRows is the size of the benchmark stores: RECONCILE_BENCH_ROWS, default 1,000,000.
// The figures are at 10,000,000 (see the README for the command).
// RECONCILE_BENCH_BULK=1 builds the sources from their histories' final rows (Fixture.Bulk).
func benchRows(b *testing.B) int {
	if s := os.Getenv("RECONCILE_BENCH_ROWS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("RECONCILE_BENCH_ROWS=%q: %v", s, err)
		}
		return n
	}
	return 1_000_000
}

func benchDir() string {
	if d := os.Getenv("RECONCILE_BENCH_DIR"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "reconcile-bench")
}

const benchNow = int64(1_750_000_000_000_000_000)

// sessionFixture builds (or finds in the cache) the stores BenchmarkSession and
// BenchmarkSync run on: a delete-heavy history of rows live rows, and a copy with frac of
// its keys drifted (40% updated, 30% deleted, 30% inserted), with the expired rows the
// history left purged, as a live store purges them (every snapshot would otherwise read
// and subtract them at open).
func sessionFixture(b *testing.B, rows int, frac float64) FixtureInfo {
	h := History{Rows: rows, DeleteRatio: 1, UpdateRatio: 0.5, TTLFraction: 0.02, ValueSize: 64, Seed: 1, Now: benchNow}
	d := Drift{Updates: frac * 0.4, Deletes: frac * 0.3, Inserts: frac * 0.3, Seed: 2}
	fx, err := Fixture{Dir: benchDir(), History: h, Drift: d, Bulk: os.Getenv("RECONCILE_BENCH_BULK") == "1"}.Build()
	if err == nil {
		err = Purge(fx.Source, benchNow)
	}
	if err == nil {
		err = Purge(fx.Target, benchNow)
	}
	if err != nil {
		b.Fatal(err)
	}
	return fx
}

// openReadOnly opens the Badger store at path read-only until the test or benchmark run
// ends.
func openReadOnly(tb testing.TB, path string) *badger.Store {
	s, err := badger.Open(path, badger.Options{ReadOnly: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkSession diffs two Badger stores with a delete-heavy history (as many rows
// deleted as are live) in one process, identical and with 0.1% and 1% of keys differing,
// and reports the protocol's cost per differing key next to the time a full read of both
// stores takes.
func BenchmarkSession(b *testing.B) {
	rows := benchRows(b)
	for _, frac := range []float64{0, 0.001, 0.01} {
		b.Run(fmt.Sprintf("rows=%d/drift=%g", rows, frac), func(b *testing.B) {
			fx := sessionFixture(b, rows, frac)
			src := openReadOnly(b, fx.Source)
			dst := openReadOnly(b, fx.Target)
			ctx := context.Background()

			t0, c0 := time.Now(), cpuTime()
			if _, err := ScanAll(ctx, src, benchNow); err != nil {
				b.Fatal(err)
			}
			if _, err := ScanAll(ctx, dst, benchNow); err != nil {
				b.Fatal(err)
			}
			scan, scanCPU := time.Since(t0), cpuTime()-c0

			var rep *reconcile.Report
			var err error
			b.ResetTimer()
			c0 = cpuTime()
			for i := 0; i < b.N; i++ {
				rep, err = reconcile.Run(ctx, src, dst, reconcile.Options{Now: benchNow})
				if err != nil {
					b.Fatal(err)
				}
			}
			cpu := (cpuTime() - c0) / time.Duration(b.N)
			b.StopTimer()
			diffs := rep.OnlySource + rep.OnlyTarget + rep.Changed
			if want := fx.Drift.Differing(); diffs != want {
				b.Fatalf("found %d differing keys, the drift made %d", diffs, want)
			}
			per := func(v int64) float64 { return float64(v) / float64(max(diffs, 1)) }
			b.ReportMetric(float64(rep.Rounds), "rounds")
			b.ReportMetric(float64(diffs), "diffs")
			b.ReportMetric(float64(rep.BytesSent+rep.BytesReceived), "proto_B")
			b.ReportMetric(per(rep.BytesSent+rep.BytesReceived), "proto_B/diff")
			b.ReportMetric(per(rep.EntriesReadSource), "src_entries/diff")
			b.ReportMetric(per(rep.EntriesReadTarget), "tgt_entries/diff")
			b.ReportMetric(per(rep.NodesReadSource), "src_nodes/diff")
			b.ReportMetric(per(rep.NodesReadTarget), "tgt_nodes/diff")
			b.ReportMetric(float64(scan.Milliseconds()), "scan_both_ms")
			b.ReportMetric(scan.Seconds()/(b.Elapsed().Seconds()/float64(b.N)), "x_faster_than_scan")
			// The same in process CPU time (Badger's background work included), which a
			// busy machine disturbs less than wall time.
			b.ReportMetric(float64(cpu.Microseconds())/1000, "cpu_ms/op")
			b.ReportMetric(float64(scanCPU.Milliseconds()), "scan_both_cpu_ms")
			b.ReportMetric(scanCPU.Seconds()/max(cpu.Seconds(), 1e-9), "x_faster_cpu")
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
