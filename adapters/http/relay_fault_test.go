package remote

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reconcile-dev/reconcile/adapters/memory"
	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// slowEndpoint delays Open, as a scan-mode SQL table reading a large table does, and
// counts snapshots opened or closed after its owner marked it closed.
type slowEndpoint struct {
	reconcile.Endpoint
	delay            time.Duration
	closed           atomic.Bool
	lateOpen, lateGo atomic.Int32
}

func (e *slowEndpoint) Open(ctx context.Context, now int64) (reconcile.Snapshot, error) {
	time.Sleep(e.delay)
	s, err := e.Endpoint.Open(ctx, now)
	if e.closed.Load() {
		e.lateOpen.Add(1)
	}
	if err != nil {
		return nil, err
	}
	return &trackedSnapshot{Snapshot: s, ep: e}, nil
}

type trackedSnapshot struct {
	reconcile.Snapshot
	ep *slowEndpoint
}

func (s *trackedSnapshot) Close() error {
	if s.ep.closed.Load() {
		s.ep.lateGo.Add(1)
	}
	return s.Snapshot.Close()
}

// TestRelaySlowOpens: a relay is not idle while its source opens a snapshot or its
// client waits on the target, however long those take against the idle timeout.
func TestRelaySlowOpens(t *testing.T) {
	for _, slowSource := range []bool{true, false} {
		src, dst := pair(2)
		var s, d reconcile.Endpoint = src, dst
		if slowSource {
			s = &slowEndpoint{Endpoint: src, delay: 300 * time.Millisecond}
		} else {
			d = &slowEndpoint{Endpoint: dst, delay: 300 * time.Millisecond}
		}
		_, _, cs := serve(t, s, ServerOptions{IdleTimeout: 100 * time.Millisecond}, ClientOptions{})
		_, _, ct := serve(t, d, ServerOptions{IdleTimeout: 100 * time.Millisecond}, ClientOptions{})
		if _, err := cs.Relay(context.Background(), ct, reconcile.Options{Now: testNow}); err != nil {
			t.Fatalf("slow source %v: a 300 ms open against a 100 ms idle timeout: %v", slowSource, err)
		}
	}
}

// TestRelayStartRetried: a start whose answer is lost (the client times out while the
// source opens its snapshot) and is retried finds the same relay, not a second one.
func TestRelayStartRetried(t *testing.T) {
	src, dst := pair(2)
	srvS, _, cs := serve(t, &slowEndpoint{Endpoint: src, delay: 300 * time.Millisecond}, ServerOptions{}, ClientOptions{Timeout: 150 * time.Millisecond, Attempts: 6})
	_, _, ct := serve(t, dst, ServerOptions{}, ClientOptions{})
	if _, err := cs.Relay(context.Background(), ct, reconcile.Options{Now: testNow}); err != nil {
		t.Fatal(err)
	}
	srvS.mu.Lock()
	n := len(srvS.relays)
	srvS.mu.Unlock()
	if n != 0 {
		t.Fatalf("a retried start left %d relays on the server", n)
	}
}

// TestRelayCloseWaits: Server.Close returns only after the relays' sessions stopped
// using the endpoint (the caller closes it next).
func TestRelayCloseWaits(t *testing.T) {
	src, dst := pair(2)
	ep := &slowEndpoint{Endpoint: src, delay: 300 * time.Millisecond}
	srvS, _, cs := serve(t, ep, ServerOptions{}, ClientOptions{Attempts: 1})
	_, _, ct := serve(t, dst, ServerOptions{}, ClientOptions{})
	done := make(chan error, 1)
	go func() { _, err := cs.Relay(context.Background(), ct, reconcile.Options{Now: testNow}); done <- err }()
	time.Sleep(100 * time.Millisecond) // the relay's session is opening the source's snapshot
	srvS.Close()
	ep.closed.Store(true)
	<-done
	time.Sleep(400 * time.Millisecond)
	if ep.lateOpen.Load() > 0 || ep.lateGo.Load() > 0 {
		t.Fatalf("after Close returned, a relay opened %d and closed %d snapshots", ep.lateOpen.Load(), ep.lateGo.Load())
	}
}

// TestRelayHooks: Resolve cannot run on the source's server, so a relay refuses it; a
// closed Stop ends the relayed session between calls with ErrStopped.
func TestRelayHooks(t *testing.T) {
	src, dst := pair(0) // empty target: many apply batches
	_, _, cs := serve(t, src, ServerOptions{}, ClientOptions{})
	_, _, ct := serve(t, dst, ServerOptions{}, ClientOptions{})
	keep := func(context.Context, reconcile.Conflict) (reconcile.Resolution, error) {
		return reconcile.ResolveTarget, nil
	}
	if _, err := cs.Relay(context.Background(), ct, reconcile.Options{Mode: reconcile.Mirror, Now: testNow, Resolve: keep}); err == nil || !strings.Contains(err.Error(), "Resolve") {
		t.Fatalf("relay with a Resolve hook: %v", err)
	}
	if n := len(liveRows(dst)); n != 0 {
		t.Fatalf("a refused relay wrote %d rows", n)
	}
	stop := make(chan struct{})
	close(stop)
	_, err := cs.Relay(context.Background(), ct, reconcile.Options{Mode: reconcile.Mirror, Now: testNow, Force: true, BatchRows: 1, MaxBatchRows: 1, Stop: stop})
	if !errors.Is(err, reconcile.ErrStopped) {
		t.Fatalf("relay with Stop closed: %v", err)
	}
	if n := len(liveRows(dst)); n == len(liveRows(src)) {
		t.Fatal("a stopped relay wrote everything")
	}
}

// TestServeFinishesRequests: on shutdown, Serve lets a request in flight finish before
// it returns (and before its caller closes the endpoint).
func TestServeFinishesRequests(t *testing.T) {
	var finished atomic.Bool
	srv := NewServer(memory.New(merkle.VersionOrder), ServerOptions{Load: func(ctx context.Context, body []byte) ([]byte, error) {
		time.Sleep(500 * time.Millisecond)
		finished.Store(true)
		return []byte(`{}`), nil
	}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { srv.Serve(ctx, ln, "", ""); close(served) }()
	answered := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("POST", "http://"+ln.Addr().String()+pathLoad, strings.NewReader("{}"))
		req.Header.Set(HeaderProtocol, strconv.Itoa(reconcile.ProtocolVersion))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	time.Sleep(100 * time.Millisecond)
	cancel()
	<-served
	if !finished.Load() {
		t.Fatal("Serve returned while a load was still being written")
	}
	if code := <-answered; code != http.StatusOK {
		t.Fatalf("the load in flight at shutdown got %d", code)
	}
}

// TestRelayTargetGone: the target's server goes away during a relayed sync's apply. Every
// attempt of the next apply fails to connect; the carrying client tells the source's
// server the session is lost, so the session stops at once, quarantining nothing (it used
// to halve batches and quarantine rows one a second for up to an hour).
func TestRelayTargetGone(t *testing.T) {
	src, dst := pair(0) // empty target: many apply batches
	_, _, cs := serve(t, src, ServerOptions{}, ClientOptions{})
	srvT := NewServer(dst, ServerOptions{})
	t.Cleanup(func() { srvT.Close() })
	var applies atomic.Int32
	var hs *httptest.Server
	hs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/apply") && applies.Add(1) == 2 {
			hs.Listener.Close() // no attempt connects again
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		srvT.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	ct, err := NewClient(hs.URL, ClientOptions{Attempts: 2, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rep, err := cs.Relay(context.Background(), ct, reconcile.Options{Mode: reconcile.Mirror, Now: testNow, Force: true, BatchRows: 1, MaxBatchRows: 1})
	if err == nil || !strings.Contains(err.Error(), "gave up after 2 attempts") {
		t.Fatalf("relay whose target went away: %v", err)
	}
	if rep != nil && rep.Quarantined > 0 {
		t.Fatalf("relay whose target went away quarantined %d rows (the first: %+v)", rep.Quarantined, rep.QuarantinedRows[0])
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("relay whose target went away took %s to stop", d)
	}
}

// TestHTTPSToPlainServer: an https:// URL for a plain-HTTP server fails at once (no
// retries) with a message that says to write http://.
func TestHTTPSToPlainServer(t *testing.T) {
	_, hs, _ := serve(t, memory.New(merkle.VersionOrder), ServerOptions{}, ClientOptions{})
	c, err := NewClient("https://"+strings.TrimPrefix(hs.URL, "http://"), ClientOptions{Backoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.Root(context.Background(), testNow)
	if err == nil || !strings.Contains(err.Error(), "write the URL with http://") || time.Since(start) > 900*time.Millisecond {
		t.Fatalf("https:// to a plain server: %v after %s", err, time.Since(start))
	}
}

// firstByte keeps the first byte of a response body: the kind of a relay's next call.
type firstByte struct {
	http.ResponseWriter
	b byte
}

func (f *firstByte) Write(p []byte) (int, error) {
	if f.b == 0 && len(p) > 0 {
		f.b = p[0]
	}
	return f.ResponseWriter.Write(p)
}

// TestRelaySourceGone: the source's server goes away during a relayed sync, after the
// target wrote two apply batches and as the client brings the second's answer back. The
// relay fails, saying the source stopped answering, and its report counts the rows the
// target wrote, exactly (it used to return no report at all).
func TestRelaySourceGone(t *testing.T) {
	src, dst := pair(0)
	before := rowsByKey(dst.Rows())
	srvS := NewServer(src, ServerOptions{})
	t.Cleanup(func() { srvS.Close() })
	var (
		mu      sync.Mutex
		last    byte // the last call handed out
		applies int
		hs      *httptest.Server
	)
	hs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, pathRelays) {
			srvS.ServeHTTP(w, r)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if last == callApply {
			if applies++; applies == 2 {
				hs.Listener.Close() // no attempt connects again
				if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
					conn.Close()
				}
				return
			}
		}
		fw := &firstByte{ResponseWriter: w}
		srvS.ServeHTTP(fw, r)
		last = fw.b
	}))
	t.Cleanup(hs.Close)
	cs, err := NewClient(hs.URL, ClientOptions{Attempts: 2, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, _, ct := serve(t, dst, ServerOptions{}, ClientOptions{})
	rep, err := cs.Relay(context.Background(), ct, reconcile.Options{Mode: reconcile.Mirror, Now: testNow, Force: true, BatchRows: 3, MaxBatchRows: 3})
	if err == nil || !strings.Contains(err.Error(), "the source's server stopped answering") {
		t.Fatalf("relay whose source went away: %v", err)
	}
	after := rowsByKey(dst.Rows())
	changed := 0
	for k, v := range after {
		if before[k] != v {
			changed++
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			changed++
		}
	}
	if changed == 0 {
		t.Fatal("the target wrote nothing before the source went away: the test tests nothing")
	}
	if rep == nil || rep.Upserted+rep.Deleted != changed || rep.Mode != reconcile.Mirror {
		t.Fatalf("relay whose source went away after %d rows were written reports %+v", changed, rep)
	}
	if !errors.Is(err, reconcile.ErrUnreachable) {
		t.Fatalf("relay whose source went away: %v does not wrap ErrUnreachable", err)
	}
}

// TestRelayApplyInDoubt: when the target commits an apply batch but its answer is lost
// (the client interrupted as it waited), and the source's server then cannot be told,
// the relay's error says the batch may have been written (reconcile.InDoubtError), as a
// session run in process says, beside the rows it knows were.
func TestRelayApplyInDoubt(t *testing.T) {
	src, dst := pair(0)
	_, _, cs := serve(t, src, ServerOptions{}, ClientOptions{})
	srvT := NewServer(dst, ServerOptions{})
	t.Cleanup(func() { srvT.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	applies := 0
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/apply") {
			srvT.ServeHTTP(w, r)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if applies++; applies < 2 {
			srvT.ServeHTTP(w, r)
			return
		}
		srvT.ServeHTTP(httptest.NewRecorder(), r) // committed; the answer goes nowhere
		cancel()
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(hs.Close)
	ct, err := NewClient(hs.URL, ClientOptions{Attempts: 1, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := cs.Relay(ctx, ct, reconcile.Options{Mode: reconcile.Mirror, Now: testNow, Force: true, BatchRows: 3, MaxBatchRows: 3})
	var d *reconcile.InDoubtError
	if !errors.As(err, &d) || d.Rows != 3 || !errors.Is(err, context.Canceled) {
		t.Fatalf("relay whose apply answer was lost: %v", err)
	}
	if rep == nil || rep.Upserted+rep.Deleted != 3 {
		t.Fatalf("relay reports %+v, want the first batch's 3 rows", rep)
	}
}
