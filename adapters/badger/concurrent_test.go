package badger

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	remote "github.com/reconcile-dev/reconcile/adapters/http"

	"github.com/reconcile-dev/reconcile/reconcile"
)

// gatedEndpoint opens its snapshots with the target's writer paused, and notes how many
// writes the writer had made then: exactly those are in the snapshot.
type gatedEndpoint struct {
	*Store
	w      *liveWriter
	opened []int // for each Open, the writes made before it
}

func (g *gatedEndpoint) Open(ctx context.Context, now int64) (reconcile.Snapshot, error) {
	g.w.gate.Lock()
	defer g.w.gate.Unlock()
	g.opened = append(g.opened, len(g.w.log))
	return g.Store.Open(ctx, now)
}

// liveWriter puts and deletes random keys of a store, with versions that only grow, and
// logs each write. Each write holds gate, as does reading the log.
type liveWriter struct {
	s       *Store
	base    uint64 // versions are base+1, base+2, ...
	gate    sync.Mutex
	log     []liveWrite
	rng     *rand.Rand
	stopped chan struct{}
}

type liveWrite struct {
	key     string
	version uint64 // 0: a delete
}

func (w *liveWriter) step(t *testing.T) {
	w.gate.Lock()
	defer w.gate.Unlock()
	key := fmt.Sprintf("k%04d", w.rng.IntN(600))
	if w.rng.IntN(5) == 0 {
		if err := w.s.Delete([]byte(key)); err != nil {
			t.Error(err)
		}
		w.log = append(w.log, liveWrite{key, 0})
		return
	}
	v := w.base + uint64(len(w.log)) + 1
	if err := w.s.Put([]byte(key), fmt.Appendf(nil, "%s@%d", key, v), v, 0); err != nil {
		t.Error(err)
	}
	w.log = append(w.log, liveWrite{key, v})
}

func (w *liveWriter) run(t *testing.T, stop <-chan struct{}) {
	defer close(w.stopped)
	for {
		select {
		case <-stop:
			return
		default:
			w.step(t)
			if len(w.log)%8 == 0 {
				time.Sleep(100 * time.Microsecond) // leave the syncs some CPU
			}
		}
	}
}

// TestMirrorUnderConcurrentWriters: mirror syncs between two Badger stores run one after
// another while writers change both. After each sync, with the target's writer paused,
// every key the target's writer wrote after the sync opened its snapshot holds that
// writer's last write: the mirror never overwrote nor deleted a write it had not seen
// (it is raced instead), except that a key the writer deleted may hold the source's row
// if the snapshot had none either (the condition "no live row" cannot tell a put and
// delete in between). Once the writers stop, one sync makes the stores equal and both
// indexes match their rows.
//
// It runs in process, and with the target behind a loopback reconcile server (whose
// applies come from another process in production).
func TestMirrorUnderConcurrentWriters(t *testing.T) {
	t.Run("local", func(t *testing.T) { mirrorUnderConcurrentWriters(t, false) })
	t.Run("served", func(t *testing.T) { mirrorUnderConcurrentWriters(t, true) })
}

func mirrorUnderConcurrentWriters(t *testing.T, served bool) {
	ctx := context.Background()
	src := openT(t, t.TempDir(), Options{})
	dst := openT(t, t.TempDir(), Options{})
	for i := range 600 {
		key := fmt.Appendf(nil, "k%04d", i)
		must(t, src.Put(key, []byte("initial"), uint64(i+1), 0))
		if i%7 != 0 {
			must(t, dst.Put(key, []byte("initial"), uint64(i+1), 0))
		}
	}
	ws := &liveWriter{s: src, base: 2 << 40, rng: rand.New(rand.NewPCG(1, 2)), stopped: make(chan struct{})}
	wt := &liveWriter{s: dst, base: 1 << 40, rng: rand.New(rand.NewPCG(3, 4)), stopped: make(chan struct{})}
	target := &gatedEndpoint{Store: dst, w: wt}
	runSync := func(opts reconcile.Options) (*reconcile.Report, error) { return reconcile.Run(ctx, src, target, opts) }
	if served {
		srv := remote.NewServer(target, remote.ServerOptions{})
		hs := httptest.NewServer(srv)
		defer hs.Close()
		defer srv.Close()
		c, err := remote.NewClient(hs.URL, remote.ClientOptions{})
		must(t, err)
		defer c.Close()
		runSync = func(opts reconcile.Options) (*reconcile.Report, error) { return reconcile.RunPeer(ctx, src, c, opts) }
	}
	stop := make(chan struct{})
	go ws.run(t, stop)
	go wt.run(t, stop)

	raced := 0
	for round := range 12 {
		opts := reconcile.Options{Mode: reconcile.Mirror, Force: true, LeafMax: 8, BatchRows: 4, MaxBatchRows: 16}
		target.opened = nil
		rep, err := runSync(opts)
		if err != nil {
			close(stop)
			<-ws.stopped
			<-wt.stopped
			t.Fatalf("sync %d: %v", round, err)
		}
		raced += rep.Raced
		wt.gate.Lock()
		// The session's snapshot is its first; it may open others to report the root.
		last := map[string]uint64{}
		for _, w := range wt.log[target.opened[0]:] {
			last[w.key] = w.version
		}
		for key, v := range last {
			row, ok, err := dst.Get([]byte(key))
			must(t, err)
			switch {
			case v == 0 && ok && row.Version >= wt.base && row.Version < ws.base:
				t.Errorf("sync %d: %s, deleted on the target after the snapshot, holds version %d, an older write of the target's own", round, key, row.Version)
			case v != 0 && (!ok || row.Version != v || !bytes.Equal(row.Value, fmt.Appendf(nil, "%s@%d", key, v))):
				t.Errorf("sync %d: %s, written on the target at version %d after the snapshot, was overwritten: now %v %d %q", round, key, v, ok, row.Version, row.Value)
			}
		}
		wt.gate.Unlock()
	}
	close(stop)
	<-ws.stopped
	<-wt.stopped
	t.Logf("%d source writes, %d target writes, %d rows raced in 12 syncs", len(ws.log), len(wt.log), raced)

	rep, err := reconcile.Run(ctx, src, dst, reconcile.Options{Mode: reconcile.Mirror, Force: true})
	must(t, err)
	if rep.Partial() {
		t.Fatalf("the sync after the writers stopped is partial: %+v", rep)
	}
	var a, b []reconcile.Row
	must(t, src.Scan(nil, func(r reconcile.Row) bool { a = append(a, r); return true }))
	must(t, dst.Scan(nil, func(r reconcile.Row) bool { b = append(b, r); return true }))
	if len(a) != len(b) {
		t.Fatalf("after the last sync: %d source rows, %d target rows", len(a), len(b))
	}
	for i := range a {
		if !bytes.Equal(a[i].Key, b[i].Key) || a[i].Version != b[i].Version || !bytes.Equal(a[i].Value, b[i].Value) {
			t.Fatalf("after the last sync, row %d: source %q@%d, target %q@%d", i, a[i].Key, a[i].Version, b[i].Key, b[i].Version)
		}
	}
	for _, s := range []*Store{src, dst} {
		if _, err := s.VerifyIndex(ctx); err != nil {
			t.Fatalf("index after the writers and syncs: %v", err)
		}
	}
}
