package remote

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reconcile-dev/reconcile/adapters/badger"
	"github.com/reconcile-dev/reconcile/adapters/memory"
	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// chaosProxy is a TCP proxy between a client and a server that spoils the server's
// answers at random while it is enabled: it delays a chunk (sometimes past the client's
// timeout), drops the connection before a chunk, or forwards half a chunk and then drops
// the connection (a truncated response). Requests pass unharmed, so the server does the
// work whose answer is then lost: the hardest case for a client that must not apply twice.
type chaosProxy struct {
	ln      net.Listener
	target  string
	enabled atomic.Bool

	mu  sync.Mutex
	rng *rand.Rand

	delayed, dropped, truncated atomic.Int32
	wg                          sync.WaitGroup
}

func newChaosProxy(t *testing.T, target string, seed int64) *chaosProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &chaosProxy{ln: ln, target: target, rng: rand.New(rand.NewSource(seed))}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *chaosProxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *chaosProxy) intn(n int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rng.Intn(n)
}

func (p *chaosProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.wg.Add(2)
		go func() { // requests: passed as they are
			defer p.wg.Done()
			io.Copy(s, c)
			s.Close()
		}()
		go func() { // answers: spoiled at random
			defer p.wg.Done()
			defer c.Close()
			defer s.Close()
			buf := make([]byte, 4096)
			for {
				n, err := s.Read(buf)
				if n > 0 && !p.forward(c, buf[:n]) {
					return
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

// forward writes one chunk of an answer to the client, perhaps spoiled; false: the
// connection was dropped.
func (p *chaosProxy) forward(c net.Conn, b []byte) bool {
	if p.enabled.Load() {
		switch r := p.intn(100); {
		case r < 10:
			p.dropped.Add(1)
			return false
		case r < 20:
			p.truncated.Add(1)
			c.Write(b[:len(b)/2])
			return false
		case r < 30:
			p.delayed.Add(1)
			time.Sleep(time.Duration(20+p.intn(200)) * time.Millisecond)
		}
	}
	_, err := c.Write(b)
	return err == nil
}

// TestChaosProxyConverges syncs a Badger replica through a proxy that delays, drops and
// truncates the server's answers during whole syncs. Runs may fail part way; whatever
// they wrote must be right (rows the source and target agreed on are never touched, and
// every row written is the source's), and once the network is healthy again one more run
// converges: the replica equals the source, row by row, and the roots match. A run that
// finishes without error under faults must already have converged.
func TestChaosProxyConverges(t *testing.T) {
	ctx := context.Background()
	// Odd seeds give the client no retries, so that faults fail whole runs.
	for seed := int64(0); seed < 4; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			src, mdst := pairIn(10+seed*4+2, merkle.VersionOrder) // drift on both sides
			w := &world{rng: rand.New(rand.NewSource(seed)), version: 1 << 20}
			w.history(src.Put, src.Delete, 200) // more drift: many apply batches
			dst, err := badger.Open(filepath.Join(t.TempDir(), "replica"), badger.Options{Create: true})
			if err != nil {
				t.Fatal(err)
			}
			defer dst.Close()
			for _, r := range mdst.Rows() {
				if err := dst.Put(r.Key, r.Value, r.Version, r.ExpiresAt); err != nil {
					t.Fatal(err)
				}
			}
			// The rows both sides agree on before any run: no run may change them.
			agreed := map[string]string{}
			srcRows := rowsByKey(src.Rows())
			for k, v := range rowsByKey(mdst.Rows()) {
				if srcRows[k] == v {
					agreed[k] = v
				}
			}

			srv := NewServer(dst, ServerOptions{})
			hs := httptest.NewServer(srv)
			defer hs.Close()
			defer srv.Close()
			proxy := newChaosProxy(t, hs.Listener.Addr().String(), seed)
			c, err := NewClient(proxy.url(), ClientOptions{Attempts: 4 - 3*int(seed%2), Timeout: 150 * time.Millisecond, Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			opts := mirror()
			opts.BatchRows, opts.MaxBatchRows = 4, 16 // many apply requests

			proxy.enabled.Store(true)
			failed := 0
			for run := 0; run < 6; run++ {
				rep, err := reconcile.RunPeer(ctx, src, c, opts)
				checkTarget(t, dst, srcRows, agreed)
				if err != nil {
					failed++
					continue
				}
				// A run that finished despite the faults left the replica equal to the source.
				if rep.Raced != 0 || rep.Quarantined != 0 {
					t.Fatalf("run %d finished with %d raced and %d quarantined rows", run, rep.Raced, rep.Quarantined)
				}
				if strings.Join(liveBadger(t, dst), ",") != strings.Join(liveRows(src), ",") {
					t.Fatalf("run %d finished without error but the replica differs from the source", run)
				}
			}
			proxy.enabled.Store(false)
			if proxy.dropped.Load() == 0 || proxy.truncated.Load() == 0 || proxy.delayed.Load() == 0 {
				t.Fatalf("faults: %d dropped, %d truncated, %d delayed: each kind should have happened",
					proxy.dropped.Load(), proxy.truncated.Load(), proxy.delayed.Load())
			}
			t.Logf("under faults: %d of 6 runs failed; %d answers dropped, %d truncated, %d delayed",
				failed, proxy.dropped.Load(), proxy.truncated.Load(), proxy.delayed.Load())

			rep, err := reconcile.RunPeer(ctx, src, c, opts)
			if err != nil {
				t.Fatalf("run on a healthy network: %v", err)
			}
			if rep.Quarantined != 0 {
				t.Fatalf("healthy run quarantined %d rows: %+v", rep.Quarantined, rep.QuarantinedRows)
			}
			got := liveBadger(t, dst)
			if strings.Join(got, ",") != strings.Join(liveRows(src), ",") {
				t.Fatalf("replica differs from the source after the healthy run: %d rows vs %d", len(got), len(liveRows(src)))
			}
			sr, _ := reconcile.Root(ctx, src, testNow)
			dr, _ := reconcile.Root(ctx, dst, testNow)
			if sr.Root != dr.Root {
				t.Fatal("roots differ after the healthy run")
			}
		})
	}
}

// rowsByKey renders rows by key.
func rowsByKey(rows []reconcile.Row) map[string]string {
	m := make(map[string]string, len(rows))
	for _, r := range rows {
		if r.ExpiresAt != 0 && r.ExpiresAt <= testNow {
			continue
		}
		m[string(r.Key)] = fmt.Sprintf("%d/%x/%d", r.Version, r.Value, r.ExpiresAt)
	}
	return m
}

// checkTarget checks what a (perhaps failed) run left: every row both sides agreed on
// before the runs is still there, unchanged.
func checkTarget(t *testing.T, dst *badger.Store, src, agreed map[string]string) {
	t.Helper()
	got := rowsByKey(snapshotRows(t, dst))
	for k, v := range agreed {
		if got[k] != v {
			t.Fatalf("row %q both sides agreed on changed from %s to %q", k, v, got[k])
		}
	}
}

// snapshotRows reads a store's rows live at testNow through a snapshot.
func snapshotRows(t *testing.T, ep reconcile.Endpoint) []reconcile.Row {
	t.Helper()
	ctx := context.Background()
	snap, err := ep.Open(ctx, testNow)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	es, err := snap.Entries(ctx, nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	keys := make([][]byte, len(es))
	for i, e := range es {
		keys[i] = e.Key
	}
	rows, err := snap.Rows(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// liveBadger renders a Badger store's rows live at testNow as liveRows does.
func liveBadger(t *testing.T, s *badger.Store) []string {
	t.Helper()
	m := memory.New(merkle.VersionOrder)
	for _, r := range snapshotRows(t, s) {
		m.Put(r)
	}
	return liveRows(m)
}
