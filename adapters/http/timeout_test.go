package remote

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
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

// serveTCP serves srv through Serve (its real http.Server and timeouts) on a loopback
// port until the test ends, and returns the address.
func serveTCP(t *testing.T, srv *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { srv.Serve(ctx, ln, "", ""); close(served) }()
	t.Cleanup(func() { cancel(); <-served })
	return ln.Addr().String()
}

// TestSlowBody: a client that sends a request's headers and then only part of its body
// (slowloris) is answered and disconnected once BodyTimeout has passed, whether the
// request would be served (408) or is refused before its body is read (401): it does
// not hold a connection for ever. The test's own bound (10 s) is far above BodyTimeout.
func TestSlowBody(t *testing.T) {
	load := func(ctx context.Context, body []byte) ([]byte, error) { return []byte(`{}`), nil }
	for _, tc := range []struct {
		name  string
		opts  ServerOptions
		want  string
		extra string
	}{
		{"served", ServerOptions{Load: load}, "HTTP/1.1 408", ""},
		{"refused", ServerOptions{Load: load, Token: "secret"}, "HTTP/1.1 401", ""},
		{"session", ServerOptions{}, "HTTP/1.1 408", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.BodyTimeout = 100 * time.Millisecond
			addr := serveTCP(t, NewServer(memory.New(merkle.VersionOrder), tc.opts))
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			path := pathLoad
			if tc.name == "session" {
				path = pathSessions
			}
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\n%s: %d\r\nContent-Length: 1000\r\n\r\n{\"key\":", path, HeaderProtocol, reconcile.ProtocolVersion)
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := io.ReadAll(bufio.NewReader(conn)) // up to the server's close
			if err != nil {
				t.Fatalf("the server neither answered nor closed the connection of a stalled body: %v (read %q)", err, resp)
			}
			if !strings.HasPrefix(string(resp), tc.want) {
				t.Fatalf("stalled body: %q, want %s", resp, tc.want)
			}
			if tc.want == "HTTP/1.1 408" && !strings.Contains(string(resp), "--body-timeout") {
				t.Fatalf("408 without saying what to change: %q", resp)
			}
		})
	}
}

// TestBodyTimeoutSpansNoSession: BodyTimeout (and WriteTimeout) bounds each request's upload, not the work
// after it nor a session's life: through Serve (its http.Server and its timeouts), a
// session whose open takes longer than BodyTimeout, and whose requests come further
// apart than it, runs to the end. It would fail if the bound were a whole-request or
// a response deadline (http.Server's ReadTimeout or WriteTimeout).
func TestBodyTimeoutSpansNoSession(t *testing.T) {
	src, dst := pair(4)
	slow := &slowEndpoint{Endpoint: dst, delay: 300 * time.Millisecond}
	addr := serveTCP(t, NewServer(slow, ServerOptions{BodyTimeout: 50 * time.Millisecond, WriteTimeout: 50 * time.Millisecond}))
	c, err := NewClient("http://"+addr, ClientOptions{Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opts := mirror()
	opts.BatchRows, opts.MaxBatchRows = 2, 2
	n := 0
	opts.Progress = func(reconcile.Progress) {
		if n++; n < 3 {
			time.Sleep(100 * time.Millisecond) // between requests, longer than BodyTimeout
		}
	}
	if _, err := reconcile.RunPeer(context.Background(), src, c, opts); err != nil {
		t.Fatal(err)
	}
	if a, b := liveRows(src), liveRows(dst); strings.Join(a, ",") != strings.Join(b, ",") {
		t.Fatal("target differs from the source after the sync")
	}
}

// dumpForever is a Dump hook that writes lines of size bytes until a write fails, then
// sends the error on done.
func dumpForever(size int, done chan<- error) func(ctx context.Context, w io.Writer) error {
	line := []byte(strings.Repeat("x", size-1) + "\n")
	return func(ctx context.Context, w io.Writer) error {
		for {
			if _, err := w.Write(line); err != nil {
				done <- err
				return err
			}
		}
	}
}

// dumpRequest sends GET /v1/dump on a new connection to addr, reads the status line and
// returns the connection, the rest of the answer unread.
func dumpRequest(t *testing.T, addr string, readBuffer int) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if readBuffer > 0 {
		conn.(*net.TCPConn).SetReadBuffer(readBuffer)
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n%s: %d\r\n\r\n", pathDump, HeaderProtocol, reconcile.ProtocolVersion)
	br := bufio.NewReader(conn)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	status, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 200") {
		t.Fatalf("dump: %q, %v", status, err)
	}
	return conn, br
}

// TestStalledReader: a client that asks for a large answer and stops reading it is cut
// off once WriteTimeout passes without progress, and the handler returns (a dump would
// otherwise hold its snapshot, a goroutine and the connection for ever). The test's own
// bound (10 s) is far above WriteTimeout.
func TestStalledReader(t *testing.T) {
	done := make(chan error, 1)
	srv := NewServer(memory.New(merkle.VersionOrder), ServerOptions{WriteTimeout: 100 * time.Millisecond, Dump: dumpForever(64<<10, done)})
	addr := serveTCP(t, srv)
	dumpRequest(t, addr, 0) // and never read further
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the stalled dump ended with %v, want a write deadline", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a dump to a client that reads nothing still blocks its handler 10 s later")
	}
}

// TestSlowReaderNotCut: WriteTimeout bounds a stall, not a whole answer: a client that
// reads a dump slowly but steadily, taking many times WriteTimeout in all, gets it to
// the end it asked for (here 8 MiB, through a small receive buffer), even when each
// write of the answer is larger than the client takes in one WriteTimeout (here 4 MiB,
// as one frame can be).
func TestSlowReaderNotCut(t *testing.T) {
	done := make(chan error, 1)
	srv := NewServer(memory.New(merkle.VersionOrder), ServerOptions{WriteTimeout: 200 * time.Millisecond, Dump: dumpForever(4<<20, done)})
	addr := serveTCP(t, srv)
	// The receive buffer is small, but above loopback's MSS (64 KiB): below it, the
	// receiver's window updates wait for the sender's persist timer, which stalls
	// for 200 ms and more.
	_, br := dumpRequest(t, addr, 256<<10)
	start := time.Now()
	buf := make([]byte, 32<<10)
	for got := 0; got < 8<<20; {
		n, err := br.Read(buf)
		if err != nil {
			t.Fatalf("a slow but steady reader was cut after %d bytes in %s: %v (the server's write: %v)", got, time.Since(start), err, <-done)
		}
		got += n
		time.Sleep(2 * time.Millisecond)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Logf("the dump arrived in %s, within two WriteTimeouts: this run did not test a long answer", d)
	}
}

// TestRetryAfter: the client waits as a 429 or 503 answer's Retry-After says (seconds or
// an HTTP date), at most MaxBackoff, and retries a 429 as it does a 503. The waits are
// recorded, not slept.
func TestRetryAfter(t *testing.T) {
	srv := NewServer(memory.New(merkle.VersionOrder), ServerOptions{})
	var answers atomic.Int32
	retryDate := time.Now().Add(20 * time.Second)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch answers.Add(1) {
		case 1:
			w.Header().Set("Retry-After", "3")
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case 2:
			w.Header().Set("Retry-After", retryDate.UTC().Format(http.TimeFormat))
			http.Error(w, "slow down", http.StatusTooManyRequests)
		case 3:
			w.Header().Set("Retry-After", "3600")
			http.Error(w, "busy", http.StatusServiceUnavailable)
		default:
			srv.ServeHTTP(w, r)
		}
	}))
	defer hs.Close()
	c, err := NewClient(hs.URL, ClientOptions{Backoff: time.Millisecond, MaxBackoff: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var waits []time.Duration
	c.wait = func(ctx context.Context, d time.Duration) error { waits = append(waits, d); return nil }
	if _, err := c.Root(context.Background(), testNow); err != nil {
		t.Fatal(err)
	}
	if len(waits) != 3 {
		t.Fatalf("waited %v, want 3 waits", waits)
	}
	if waits[0] != 3*time.Second {
		t.Errorf("Retry-After: 3 waited %s", waits[0])
	}
	if waits[1] < 15*time.Second || waits[1] > 20*time.Second {
		t.Errorf("Retry-After: (a date 20 s ahead) waited %s", waits[1])
	}
	if waits[2] != 30*time.Second {
		t.Errorf("Retry-After: 3600 waited %s, want MaxBackoff (30s)", waits[2])
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0}, {"0", 0}, {"-5", 0}, {"7", 7 * time.Second}, {"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"99999999999999999", (1 << 20) * time.Second},
	} {
		if got := parseRetryAfter(tc.v, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", tc.v, got, tc.want)
		}
	}
}

// TestTimeoutMessages: a request that fails because each attempt ran out of the client's
// Timeout says so, with its value and how to raise it; one stopped by the caller's own
// deadline says that instead (and wraps context.DeadlineExceeded). Neither is only
// "context deadline exceeded".
func TestTimeoutMessages(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn // read nothing, answer nothing
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	url := "http://" + ln.Addr().String()

	c, err := NewClient(url, ClientOptions{Timeout: 50 * time.Millisecond, Attempts: 2, Backoff: time.Millisecond, TimeoutHelp: "raise ?timeout="})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Root(context.Background(), testNow)
	if err == nil || !strings.Contains(err.Error(), "no answer within 50ms") || !strings.Contains(err.Error(), "raise ?timeout=") || !errors.Is(err, reconcile.ErrUnreachable) {
		t.Fatalf("attempts that ran out of the client's timeout: %v", err)
	}

	c, err = NewClient(url, ClientOptions{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = c.Root(ctx, testNow)
	if err == nil || !strings.Contains(err.Error(), "the caller's deadline") || strings.Contains(err.Error(), "no answer within") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a request past the caller's deadline: %v", err)
	}
}

// TestDumpStall: a dump whose server stops sending mid-stream fails once the client's
// Timeout passes without a byte, saying so and how to raise it, while one whose server
// sends slowly but steadily, taking many Timeouts in all, completes. The test's own bound
// (10 s) is far above Timeout.
func TestDumpStall(t *testing.T) {
	hold := make(chan struct{})
	var requests atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stall := requests.Add(1) == 2 // the second dump stops after 4 lines
		w.Header().Set(HeaderProtocol, strconv.Itoa(reconcile.ProtocolVersion))
		rc := http.NewResponseController(w)
		for i := range 20 {
			fmt.Fprintf(w, "{\"key\": \"k%d\"}\n", i)
			rc.Flush()
			if stall && i == 3 {
				<-hold
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}))
	defer hs.Close()
	defer close(hold) // before hs.Close, which waits for the held handler

	c, err := NewClient(hs.URL, ClientOptions{Timeout: 100 * time.Millisecond, TimeoutHelp: "raise ?timeout="})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := c.Dump(context.Background(), &out); err != nil || strings.Count(out.String(), "\n") != 20 {
		t.Fatalf("a steady dump of 400 ms with a 100 ms timeout: %v, %d lines", err, strings.Count(out.String(), "\n"))
	}

	done := make(chan error, 1)
	go func() { done <- c.Dump(context.Background(), io.Discard) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "sent nothing for 100ms") || !strings.Contains(err.Error(), "raise ?timeout=") {
			t.Fatalf("a stalled dump: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a dump whose server stopped sending still waits 10 s later")
	}
}

// stallingEndpoint's snapshots wait, once stall is set, for their context to end on every
// read of the index: the work of a request that the server's RequestTimeout must cut.
type stallingEndpoint struct {
	reconcile.Endpoint
	stall atomic.Bool
}

func (e *stallingEndpoint) Open(ctx context.Context, now int64) (reconcile.Snapshot, error) {
	s, err := e.Endpoint.Open(ctx, now)
	if err != nil {
		return nil, err
	}
	return &stallingSnapshot{Snapshot: s, ep: e}, nil
}

type stallingSnapshot struct {
	reconcile.Snapshot
	ep *stallingEndpoint
}

func (s *stallingSnapshot) wait(ctx context.Context) error {
	if !s.ep.stall.Load() {
		return nil
	}
	<-ctx.Done()
	return ctx.Err()
}

func (s *stallingSnapshot) Digests(ctx context.Context, lo, hi []byte, bounds [][]byte) ([]merkle.Digest, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return s.Snapshot.Digests(ctx, lo, hi, bounds)
}

func (s *stallingSnapshot) Split(ctx context.Context, lo, hi []byte, k int) ([][]byte, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return s.Snapshot.Split(ctx, lo, hi, k)
}

func (s *stallingSnapshot) Entries(ctx context.Context, lo, hi []byte, limit int) ([]merkle.Entry, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return s.Snapshot.Entries(ctx, lo, hi, limit)
}

// TestRequestTimeoutMessage: work on one request that passes the server's
// RequestTimeout (an open whose first round is slow, a later round) fails saying so and
// naming the flag that raises it, not with a bare "context deadline exceeded".
func TestRequestTimeoutMessage(t *testing.T) {
	for _, during := range []string{"open", "round"} {
		src, dst := pair(2)
		ep := &stallingEndpoint{Endpoint: dst}
		ep.stall.Store(during == "open")
		_, _, c := serve(t, ep, ServerOptions{RequestTimeout: 100 * time.Millisecond}, ClientOptions{})
		opts := mirror()
		opts.Fanout, opts.LeafMax = 2, 1 // many rounds
		opts.Progress = func(reconcile.Progress) { ep.stall.Store(true) }
		_, err := reconcile.RunPeer(context.Background(), src, c, opts)
		if err == nil || !strings.Contains(err.Error(), "--request-timeout") || !strings.Contains(err.Error(), "(100ms)") {
			t.Fatalf("%s cut by the server's request timeout: %v", during, err)
		}
	}
}

// TestHealth: /healthz answers without a token or protocol header, 200 while the server
// takes sessions and 503 once it is closed; every other path still wants the token.
func TestHealth(t *testing.T) {
	srv := NewServer(memory.New(merkle.VersionOrder), ServerOptions{Token: "secret"})
	hs := httptest.NewServer(srv)
	defer hs.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("healthz: %d %q", code, body)
	}
	if code, _ := get(pathRoot); code != http.StatusUnauthorized {
		t.Fatalf("root without a token: %d", code)
	}
	srv.Close()
	if code, body := get("/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "shutting down") {
		t.Fatalf("healthz after Close: %d %q", code, body)
	}
}

// TestServerLog: a server with a Logger records each session opened and closed (and
// why), and a request answered with an error with its message; requests answered well
// only at Debug.
func TestServerLog(t *testing.T) {
	var buf syncBuf
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	src, dst := pair(2)
	_, _, c := serve(t, dst, ServerOptions{Logger: log}, ClientOptions{})
	if _, err := reconcile.RunPeer(context.Background(), src, c, mirror()); err != nil {
		t.Fatal(err)
	}
	c.Close()
	_, hs, _ := serve(t, dst, ServerOptions{Logger: log, Token: "secret"}, ClientOptions{})
	resp, err := http.Get(hs.URL + pathRoot)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	out := buf.String()
	for _, want := range []string{`"msg":"session opened"`, `"msg":"session closed"`, `"why":"closed by the client"`, `"status":401`, `"error":"unauthorized`} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, `"status":200`) {
		t.Errorf("requests answered well logged at Info:\n%s", out)
	}
}

// syncBuf is a bytes.Buffer safe for concurrent writers.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
