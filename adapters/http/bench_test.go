package remote

import (
	"context"
	"fmt"
	"math/rand"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"

	"github.com/reconcile-dev/reconcile/adapters/memory"
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
