package remote

import (
	"context"
	"fmt"
	"math/rand"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/reconcile-dev/reconcile/adapters/badger"
	"github.com/reconcile-dev/reconcile/adapters/memory"
	"github.com/reconcile-dev/reconcile/bench"
	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// BenchmarkDiff compares one diff session in process with the same session through a
// loopback server: memory stores of RECONCILE_BENCH_ROWS rows (default 200,000) with 0.1%
// of keys differing. Metrics: rounds, frame bytes, wire bytes (HTTP headers included).
//
//	go test ./adapters/http -run '^$' -bench BenchmarkDiff -benchtime 5x
func BenchmarkDiff(b *testing.B) {
	n := 200_000
	if v, err := strconv.Atoi(os.Getenv("RECONCILE_BENCH_ROWS")); err == nil && v > 0 {
		n = v
	}
	rng := rand.New(rand.NewSource(1))
	src, dst := memory.New(merkle.VersionOrder), memory.New(merkle.VersionOrder)
	for i := range n {
		r := reconcile.Row{Key: []byte(fmt.Sprintf("key/%08d", i)), Version: uint64(i/7 + 1), Value: make([]byte, 64)}
		rng.Read(r.Value)
		src.Put(r)
		dst.Put(r)
	}
	for i := 0; i < n/1000; i++ {
		k := []byte(fmt.Sprintf("key/%08d", rng.Intn(n)))
		switch i % 3 {
		case 0:
			dst.Delete(k)
		case 1:
			dst.Put(reconcile.Row{Key: k, Version: uint64(n + i), Value: []byte("changed")})
		default:
			dst.Put(reconcile.Row{Key: append(k, 'x'), Version: uint64(n + i), Value: []byte("new")})
		}
	}
	opts := reconcile.Options{Mode: reconcile.Diff, Now: testNow}
	b.Run("in-process", func(b *testing.B) {
		var rep *reconcile.Report
		for b.Loop() {
			var err error
			if rep, err = reconcile.Run(context.Background(), src, dst, opts); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(rep.Rounds), "rounds")
		b.ReportMetric(float64(rep.BytesSent+rep.BytesReceived), "frame-bytes")
	})
	b.Run("http", func(b *testing.B) {
		srv := NewServer(dst, ServerOptions{})
		hs := httptest.NewServer(srv)
		defer hs.Close()
		c, err := NewClient(hs.URL, ClientOptions{})
		if err != nil {
			b.Fatal(err)
		}
		var rep *reconcile.Report
		var frames, wire reconcile.Traffic
		for b.Loop() {
			f0, w0 := c.FrameTraffic(), c.Traffic()
			if rep, err = reconcile.RunPeer(context.Background(), src, c, opts); err != nil {
				b.Fatal(err)
			}
			c.Close()
			f1, w1 := c.FrameTraffic(), c.Traffic()
			frames = reconcile.Traffic{Sent: f1.Sent - f0.Sent, Received: f1.Received - f0.Received}
			wire = reconcile.Traffic{Sent: w1.Sent - w0.Sent, Received: w1.Received - w0.Received}
		}
		b.ReportMetric(float64(rep.Rounds), "rounds")
		b.ReportMetric(float64(frames.Sent+frames.Received), "frame-bytes")
		b.ReportMetric(float64(wire.Sent+wire.Received), "wire-bytes")
	})
}

// BenchmarkBadgerOverHTTP is issue 4's benchmark: two Badger stores with a delete-heavy
// history (bench.Fixture, as BenchmarkSession builds them; RECONCILE_BENCH_ROWS live rows,
// default 1,000,000, 0.1% of keys differing), diffed in process, through a loopback server
// holding the target (the source initiates), and through one holding the source (the
// target initiates and pulls). Each reports rounds, frame bytes, wire bytes and process
// CPU time; compare the sub-benchmarks' ns/op.
//
//	go test ./adapters/http -run '^$' -bench BenchmarkBadgerOverHTTP -benchtime 5x
func BenchmarkBadgerOverHTTP(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("RECONCILE_BENCH_ROWS")); err == nil && v > 0 {
		n = v
	}
	dir := os.Getenv("RECONCILE_BENCH_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "reconcile-bench")
	}
	const now = int64(1_750_000_000_000_000_000)
	h := bench.History{Rows: n, DeleteRatio: 1, UpdateRatio: 0.5, TTLFraction: 0.02, ValueSize: 64, Seed: 1, Now: now}
	d := bench.Drift{Updates: 0.0004, Deletes: 0.0003, Inserts: 0.0003, Seed: 2}
	fx, err := bench.Fixture{Dir: dir, History: h, Drift: d}.Build()
	if err != nil {
		b.Fatal(err)
	}
	// A live store purges rows as they expire; the fixture's history left some unpurged,
	// which every snapshot would read and subtract (as BenchmarkSession does).
	for _, p := range []string{fx.Source, fx.Target} {
		if err := bench.Purge(p, now); err != nil {
			b.Fatal(err)
		}
	}
	src, err := badger.Open(fx.Source, badger.Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	dst, err := badger.Open(fx.Target, badger.Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer dst.Close()
	ctx := context.Background()
	opts := reconcile.Options{Mode: reconcile.Diff, Now: now}
	report := func(b *testing.B, rep *reconcile.Report, frames, wire reconcile.Traffic, cpu time.Duration) {
		if got, want := rep.OnlySource+rep.OnlyTarget+rep.Changed, fx.Drift.Differing(); got != want {
			b.Fatalf("found %d differing keys, the drift made %d", got, want)
		}
		b.ReportMetric(float64(rep.Rounds), "rounds")
		b.ReportMetric(float64(frames.Sent+frames.Received), "frame-bytes")
		if wire.Sent+wire.Received > 0 {
			b.ReportMetric(float64(wire.Sent+wire.Received), "wire-bytes")
		}
		b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
	}
	b.Run("in-process", func(b *testing.B) {
		var rep *reconcile.Report
		c0 := bench.CPUTime()
		for b.Loop() {
			var err error
			if rep, err = reconcile.Run(ctx, src, dst, opts); err != nil {
				b.Fatal(err)
			}
		}
		report(b, rep, reconcile.Traffic{Sent: rep.BytesSent, Received: rep.BytesReceived}, reconcile.Traffic{}, bench.CPUTime()-c0)
	})
	for _, pull := range []bool{false, true} {
		name, served := "http-target", reconcile.Endpoint(dst)
		if pull {
			name, served = "http-source", src
		}
		b.Run(name, func(b *testing.B) {
			srv := NewServer(served, ServerOptions{})
			hs := httptest.NewServer(srv)
			defer hs.Close()
			defer srv.Close()
			c, err := NewClient(hs.URL, ClientOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer c.CloseIdleConnections()
			var rep *reconcile.Report
			f0, w0, c0 := c.FrameTraffic(), c.Traffic(), bench.CPUTime()
			for b.Loop() {
				if pull {
					rep, err = reconcile.RunFromPeer(ctx, c, dst, opts)
				} else {
					rep, err = reconcile.RunPeer(ctx, src, c, opts)
				}
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
			f1, w1 := c.FrameTraffic(), c.Traffic()
			per := func(a, z int64) int64 { return (z - a) / int64(b.N) }
			report(b, rep, reconcile.Traffic{Sent: per(f0.Sent, f1.Sent), Received: per(f0.Received, f1.Received)},
				reconcile.Traffic{Sent: per(w0.Sent, w1.Sent), Received: per(w0.Received, w1.Received)}, bench.CPUTime()-c0)
		})
	}
}
