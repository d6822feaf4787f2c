package remote

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/reconcile-dev/reconcile/adapters/memory"
	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

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
			srv := NewServer(memory.New(merkle.VersionOrder), tc.opts)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan struct{})
			go func() { srv.Serve(ctx, ln, "", ""); close(served) }()
			t.Cleanup(func() { cancel(); <-served })

			conn, err := net.Dial("tcp", ln.Addr().String())
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

// TestBodyTimeoutSpansNoSession: BodyTimeout bounds each request's upload, not the work
// after it nor a session's life: through Serve (its http.Server and its timeouts), a
// session whose open takes longer than BodyTimeout, and whose requests come further
// apart than it, runs to the end. It would fail if the bound were a whole-request or
// a response deadline (http.Server's ReadTimeout or WriteTimeout).
func TestBodyTimeoutSpansNoSession(t *testing.T) {
	src, dst := pair(4)
	slow := &slowEndpoint{Endpoint: dst, delay: 300 * time.Millisecond}
	srv := NewServer(slow, ServerOptions{BodyTimeout: 50 * time.Millisecond})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { srv.Serve(ctx, ln, "", ""); close(served) }()
	defer func() { cancel(); <-served }()
	c, err := NewClient("http://"+ln.Addr().String(), ClientOptions{Attempts: 1})
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
