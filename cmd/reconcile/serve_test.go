package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader in two goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var servedAt = regexp.MustCompile(`at (https?://\S+)`)

// startServe runs `reconcile serve args...` in this process and returns the URL it
// serves and a function that stops it and returns its exit status.
func startServe(t *testing.T, args ...string) (string, func() int) {
	t.Helper()
	return startServeErr(t, new(syncBuffer), args...)
}

// startServeErr is startServe writing the server's standard error to errb.
func startServeErr(t *testing.T, errb *syncBuffer, args ...string) (string, func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"reconcile", "serve"}, args...), stdio{in: strings.NewReader(""), out: &out, err: errb})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := servedAt.FindStringSubmatch(out.String()); m != nil {
			stopped := false
			stop := func() int {
				if stopped {
					return 0
				}
				stopped = true
				cancel()
				return <-done
			}
			t.Cleanup(func() { stop() })
			return m[1], stop
		}
		select {
		case code := <-done:
			cancel()
			t.Fatalf("serve exited %d before serving: %s", code, errb.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	t.Fatalf("serve did not start: %s %s", out.String(), errb.String())
	return "", nil
}

func TestServeDiffSync(t *testing.T) {
	src, dst := store(t, "src"), store(t, "dst")
	mustCLI(t, 0, rowsJSONL(60, 100), "load", src)
	mustCLI(t, 0, rowsJSONL(50, 100)+`{"key": "ka", "version": 100, "value": "changed"}`+"\n", "load", dst)
	url, stop := startServe(t, dst, "--listen", "127.0.0.1:0")

	mustCLI(t, 1, "", "diff", src, url)
	out := mustCLI(t, 0, "", "sync", src, url, "--json")
	var rep map[string]any
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if rep["upserted"].(float64) != 11 || rep["root_target_after"] != rep["root_source"] || rep["bytes_sent"].(float64) <= 0 {
		t.Fatalf("sync report: %s", out)
	}
	mustCLI(t, 0, "", "diff", src, url)
	if a, b := mustCLI(t, 0, "", "root", url), mustCLI(t, 0, "", "root", src); a != b {
		t.Fatalf("roots differ after sync: %s vs %s", a, b)
	}

	if a, b := mustCLI(t, 0, "", "dump", url), mustCLI(t, 0, "", "dump", src); a != b || a == "" {
		t.Fatalf("dump over HTTP differs from the source's:\n%s\n%s", a, b)
	}

	// The server as a source: a local replica pulls from it.
	pulled := store(t, "pulled")
	mustCLI(t, 0, rowsJSONL(30, 100)+`{"key": "extra", "version": 7, "value": "x"}`+"\n", "load", pulled)
	mustCLI(t, 1, "", "diff", url, pulled)
	out = mustCLI(t, 0, "", "sync", url, pulled, "--json", "--force")
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if rep["only_source"].(float64) != 30 || rep["only_target"].(float64) != 1 || rep["root_target_after"] != rep["root_source"] {
		t.Fatalf("pull report: %s", out)
	}
	if a, b := mustCLI(t, 0, "", "dump", pulled), mustCLI(t, 0, "", "dump", src); a != b {
		t.Fatal("the pulled replica does not equal the source")
	}

	// load into the server: checked first, then written as load on its machine would.
	code, _, errOut := runCLI(t, `{"key": "new", "version": 1, "value": "n"}`+"\n"+`{"key": 5}`+"\n", "load", url)
	if code != exitError || !strings.Contains(errOut, "load: input line 2") || strings.Contains(errOut, "load: load") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("malformed load over HTTP: exit %d, %q", code, errOut)
	}
	mustCLI(t, 0, "", "diff", src, url) // nothing of it was written
	out = mustCLI(t, 0, `{"key": "new", "version": 1, "value": "n"}`+"\n"+`{"key": "ka", "deleted": true}`+"\n", "load", url, "--json")
	var lr loadResult
	if err := json.Unmarshal([]byte(out), &lr); err != nil || lr != (loadResult{Upserted: 1, Deleted: 1}) {
		t.Fatalf("load over HTTP: %s (%v)", out, err)
	}
	mustCLI(t, 1, "", "diff", src, url)

	// Two servers: the source's runs the session, the CLI carries its requests.
	code, _, errOut = runCLI(t, "", "diff", url, url)
	if code != exitError || !strings.Contains(errOut, "same store") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("diff of a server with itself: exit %d, %q", code, errOut)
	}
	srcURL, _ := startServe(t, src, "--listen", "127.0.0.1:0", "--read-only")
	mustCLI(t, 1, "", "diff", srcURL, url)
	out = mustCLI(t, 0, "", "sync", srcURL, url, "--json", "--force")
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if rep["upserted"].(float64) != 1 || rep["deleted"].(float64) != 1 || rep["root_target_after"] != rep["root_source"] {
		t.Fatalf("relayed sync report: %s", out)
	}
	mustCLI(t, 0, "", "diff", srcURL, url)
	if code := stop(); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	if a, b := mustCLI(t, 0, "", "dump", dst), mustCLI(t, 0, "", "dump", src); a != b {
		t.Fatal("the served store does not equal the source after sync")
	}
}

// TestServeCreatedStoreOrdering: serve creates a missing store in version order before any
// sync says which order it needs, and says so, with what a key-ordered source needs; a
// sync from one is refused, naming ?ordering=key, and a store served with it takes it.
func TestServeCreatedStoreOrdering(t *testing.T) {
	src := store(t, "src") + "?ordering=key"
	mustCLI(t, 0, rowsJSONL(20, 0), "load", src)
	var errb syncBuffer
	url, _ := startServeErr(t, &errb, store(t, "new"), "--listen", "127.0.0.1:0")
	if !strings.Contains(errb.String(), "created") || !strings.Contains(errb.String(), "?ordering=key") {
		t.Fatalf("serve creating a store said %q", errb.String())
	}
	code, _, errOut := runCLI(t, "", "sync", src, url)
	if code != exitError || !strings.Contains(errOut, "?ordering=key") {
		t.Fatalf("a key-ordered source into a version-ordered served store: exit %d, %q", code, errOut)
	}
	var quiet syncBuffer
	url, _ = startServeErr(t, &quiet, store(t, "keyed")+"?ordering=key", "--listen", "127.0.0.1:0")
	if quiet.String() != "" {
		t.Fatalf("serve creating a store in the order its URL names said %q", quiet.String())
	}
	mustCLI(t, 0, "", "sync", src, url)
}

func TestServeTokenReadOnly(t *testing.T) {
	src, dst := store(t, "src"), store(t, "dst")
	mustCLI(t, 0, rowsJSONL(20, 100), "load", src)
	mustCLI(t, 0, rowsJSONL(10, 100), "load", dst)
	tokFile := tempFile(t, "token", "  tok-123\n")
	url, _ := startServe(t, dst, "--listen", "127.0.0.1:0", "--token-file", tokFile, "--read-only")

	t.Setenv(tokenEnv, "")
	code, _, errOut := runCLI(t, "", "diff", src, url)
	if code != exitError || !strings.Contains(errOut, "none was given: set RECONCILE_TOKEN or add ?token_file=FILE") {
		t.Fatalf("no token: exit %d %q", code, errOut)
	}
	wrong := tempFile(t, "wrong", "tok-124\n")
	code, _, errOut = runCLI(t, "", "diff", src, url+"?token_file="+wrong)
	if code != exitError || !strings.Contains(errOut, "the one given (from ?token_file="+wrong+") is not the server's") || strings.Contains(errOut, "tok-12") {
		t.Fatalf("wrong token: exit %d %q", code, errOut)
	}
	// root, dump and load say what failed once, as "root: the server at URL ...".
	for _, args := range [][]string{{"root", url + "?token_file=" + wrong}, {"dump", url + "?token_file=" + wrong}} {
		code, _, errOut = runCLI(t, "", args...)
		if code != exitError || !strings.HasPrefix(errOut, "reconcile: "+args[0]+": the server at") {
			t.Errorf("%s with a wrong token: exit %d %q", args[0], code, errOut)
		}
	}
	mustCLI(t, 1, "", "diff", src, url+"?token_file="+tokFile)
	t.Setenv(tokenEnv, "tok-123\n") // trimmed, as a token file is
	mustCLI(t, 1, "", "diff", src, url)
	t.Setenv(tokenEnv, "tok-123")
	mustCLI(t, 1, "", "diff", src, url)
	// The server says it is read-only on every answer: the sync stops after opening,
	// before its descent, and a dry run still compares.
	code, out, errOut := runCLI(t, "", "sync", src, url, "--json")
	if code != exitError || !strings.Contains(errOut, "the target refuses writes") || !strings.Contains(out, `"rounds": 1,`) {
		t.Fatalf("sync to a read-only server: exit %d %q\n%s", code, errOut, out)
	}
	mustCLI(t, 0, "", "sync", src, url, "--dry-run")
	mustCLI(t, 1, "", "diff", src, url) // nothing was written
}

func TestServeRefusesPublicWithoutToken(t *testing.T) {
	dst := store(t, "dst")
	mustCLI(t, 0, rowsJSONL(3, 1), "load", dst)
	code, _, errOut := runCLI(t, "", "serve", dst, "--listen", "0.0.0.0:0")
	if code != exitError || !strings.Contains(errOut, "--insecure-listen") || !strings.Contains(errOut, "refusing to listen on all interfaces (port ") {
		t.Fatalf("exit %d %q", code, errOut)
	}
	for _, bad := range []string{"http://h:1/path", "http://u:p@h:1", "http://h:1?token=x", "https://"} {
		code, _, errOut := runCLI(t, "", "root", bad)
		if code != exitError || errOut == "" {
			t.Errorf("%s: exit %d %q", bad, code, errOut)
		}
	}
	for in, want := range map[string]int64{"64MiB": 64 << 20, "1MB": 1e6, "2 gb": 2e9, "512kib": 512 << 10, "100B": 100, "7": 7} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-1", "1TiB", "x", "MB", "1.5MB", "2000GB"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("size %q accepted", bad)
		}
	}
}

// TestServeAllInterfaces: a server listening on every interface (0.0.0.0 or an empty
// host) names the address as it was asked, with the port bound, not as Go reports it
// ([::]:port, which reads as IPv6 only), and says it is all interfaces.
func TestServeAllInterfaces(t *testing.T) {
	dst := store(t, "dst")
	mustCLI(t, 0, rowsJSONL(3, 1), "load", dst)
	tokFile := tempFile(t, "token", "tok\n")
	t.Setenv(tokenEnv, "tok")
	for _, listen := range []string{"0.0.0.0:0", ":0"} {
		url, stop := startServe(t, dst, "--listen", listen, "--token-file", tokFile)
		if !strings.HasPrefix(url, "http://0.0.0.0:") {
			t.Fatalf("--listen %s: serving at %s", listen, url)
		}
		mustCLI(t, 0, "", "root", strings.Replace(url, "0.0.0.0", "127.0.0.1", 1))
		stop()
	}
	for _, tc := range []struct{ listen, bound, want string }{
		{"0.0.0.0:0", "[::]:8080", "0.0.0.0:8080 (all interfaces)"},
		{":8080", "[::]:8080", "0.0.0.0:8080 (all interfaces)"},
		{"[::]:8080", "[::]:8080", "[::]:8080 (all interfaces)"},
		{"127.0.0.1:0", "127.0.0.1:4000", "127.0.0.1:4000"},
		{"localhost:8080", "127.0.0.1:8080", "127.0.0.1:8080"},
	} {
		a, err := net.ResolveTCPAddr("tcp", tc.bound)
		if err != nil {
			t.Fatal(err)
		}
		if got := servedAddr(tc.listen, a); got != tc.want {
			t.Errorf("servedAddr(%q, %s) = %q, want %q", tc.listen, tc.bound, got, tc.want)
		}
	}
}

// TestServeFailsBeforeServing: a certificate that does not load, or an address that
// cannot be listened on, fails before the "serving" line and leaves no store behind.
func TestServeFailsBeforeServing(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--listen", "127.0.0.1:0", "--tls-cert", bad, "--tls-key", bad},
		{"--listen", "127.0.0.1:99999"},
		{"--listen", "0.0.0.0:0"}, // no token: refused after the store is opened
	} {
		dst := store(t, "new")
		code, out, errOut := runCLI(t, "", append([]string{"serve", dst}, args...)...)
		if code != exitError || out != "" || errOut == "" {
			t.Errorf("serve %v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
		if _, err := os.Stat(strings.TrimPrefix(dst, "badger://")); !os.IsNotExist(err) {
			t.Errorf("serve %v left a store behind: %v", args, err)
		}
	}
}

// TestLoadOverMaxBody: a load larger than the server's --max-body is refused with what
// to do (it is one request, all or nothing), and nothing of it is written.
func TestLoadOverMaxBody(t *testing.T) {
	dst := store(t, "dst")
	url, _ := startServe(t, dst, "--listen", "127.0.0.1:0", "--max-body", "4KiB")
	code, _, errOut := runCLI(t, rowsJSONL(100, 1), "load", url)
	if code != exitError || !strings.Contains(errOut, "raise reconcile serve's --max-body") || !strings.Contains(errOut, "nothing was written") {
		t.Fatalf("load over --max-body: exit %d, %q", code, errOut)
	}
	if out := mustCLI(t, 0, "", "dump", url); out != "" {
		t.Fatalf("a refused load wrote rows: %q", out)
	}
}

// TestHTTPTimeout: ?timeout= bounds each attempt of a request, so a server that accepts
// connections and never answers (stopped, or hung) fails the command in seconds, not
// after the default 2 minutes an attempt, with a message naming that timeout.
func TestHTTPTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn
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
			held = append(held, c) // read nothing, answer nothing
		}
	}()
	start := time.Now()
	code, _, errOut := runCLI(t, "", "root", "http://"+ln.Addr().String()+"?timeout=100ms")
	if code != exitError || !strings.Contains(errOut, "gave up after") {
		t.Fatalf("root of a hung server: exit %d, %q", code, errOut)
	}
	// It says which timeout ran out, and how to raise it.
	if !strings.Contains(errOut, "no answer within 100ms") || !strings.Contains(errOut, "raise ?timeout= in the server's URL (now 100ms)") {
		t.Fatalf("root of a hung server does not say which timeout ran out: %q", errOut)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("root of a hung server took %v with timeout=100ms", took)
	}
}

// TestServeMetrics: with --metrics-addr, serve publishes Prometheus counters of the
// requests it answered, by route and status (a request refused before routing as
// "refused"), and the sessions open.
func TestServeMetrics(t *testing.T) {
	src, dst := store(t, "src"), store(t, "dst")
	mustCLI(t, 0, rowsJSONL(40, 100), "load", src)
	var errb syncBuffer
	url, _ := startServeErr(t, &errb, dst, "--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--token-file", tempFile(t, "token", "tok\n"))
	m := regexp.MustCompile(`msg="serving /metrics" addr=(\S+)`).FindStringSubmatch(errb.String())
	if m == nil {
		t.Fatalf("serve --metrics-addr did not say where: %q", errb.String())
	}
	t.Setenv("RECONCILE_TOKEN", "tok")
	mustCLI(t, 0, "", "sync", src, url)
	t.Setenv("RECONCILE_TOKEN", "wrong")
	runCLI(t, "", "root", url)
	resp, err := http.Get("http://" + m[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`reconcile_serve_requests_total{route="POST /v1/sessions",status="200"} 1`,
		`reconcile_serve_requests_total{route="POST /v1/sessions/{id}/apply",status="200"}`,
		`reconcile_serve_requests_total{route="refused",status="401"}`,
		"reconcile_serve_sessions 0",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s:\n%s", want, body)
		}
	}
}
