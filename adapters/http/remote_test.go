package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reconcile-dev/reconcile/adapters/badger"
	"github.com/reconcile-dev/reconcile/adapters/memory"
	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

const testNow = int64(1_700_000_000_000_000_000)

// world writes random histories.
type world struct {
	rng     *rand.Rand
	version uint64
}

func (w *world) key() []byte {
	switch w.rng.Intn(40) {
	case 0:
		return []byte{}
	case 1:
		b := make([]byte, 1+w.rng.Intn(40))
		w.rng.Read(b)
		return b
	}
	return []byte(fmt.Sprintf("k%05d", w.rng.Intn(3000)))
}

func (w *world) history(put func(reconcile.Row), del func([]byte), n int) {
	for i := 0; i < n; i++ {
		w.version++
		bulk := 1
		if w.rng.Intn(30) == 0 {
			bulk = 2 + w.rng.Intn(40)
		}
		for j := 0; j < bulk; j++ {
			if w.rng.Intn(4) == 0 {
				del(w.key())
				continue
			}
			v := make([]byte, w.rng.Intn(40))
			w.rng.Read(v)
			var exp int64
			switch w.rng.Intn(12) {
			case 0:
				exp = testNow - 1 - int64(w.rng.Intn(1000))
			case 1:
				exp = testNow + 1 + int64(w.rng.Intn(1000))
			}
			put(reconcile.Row{Key: w.key(), Version: w.version, Value: v, ExpiresAt: exp})
		}
	}
}

func clone(s *memory.Store) *memory.Store { return cloneIn(merkle.VersionOrder, s) }

func cloneIn(o merkle.Ordering, s *memory.Store) *memory.Store {
	c := memory.New(o)
	for _, r := range s.Rows() {
		c.Put(r)
	}
	return c
}

// pair builds a drifted source and target.
func pair(seed int64) (src, dst *memory.Store) { return pairIn(seed, merkle.VersionOrder) }

func pairIn(seed int64, o merkle.Ordering) (src, dst *memory.Store) {
	w := &world{rng: rand.New(rand.NewSource(seed))}
	src = memory.New(o)
	switch seed % 4 {
	case 0: // empty target
		w.history(src.Put, src.Delete, 300)
		return src, memory.New(o)
	case 1: // identical
		w.history(src.Put, src.Delete, 400)
		return src, cloneIn(o, src)
	default: // drift on both sides
		w.history(src.Put, src.Delete, 400)
		dst = cloneIn(o, src)
		w.history(src.Put, src.Delete, w.rng.Intn(40))
		w.history(dst.Put, dst.Delete, w.rng.Intn(40))
		return src, dst
	}
}

// liveRows renders a store's live rows for comparison.
func liveRows(s *memory.Store) []string {
	var out []string
	for _, r := range s.Rows() {
		if r.ExpiresAt != 0 && r.ExpiresAt <= testNow {
			continue
		}
		out = append(out, fmt.Sprintf("%x/%d/%x/%d", r.Key, r.Version, r.Value, r.ExpiresAt))
	}
	sort.Strings(out)
	return out
}

// serve starts a loopback server for ep and returns a client for it.
func serve(t *testing.T, ep reconcile.Endpoint, so ServerOptions, co ClientOptions) (*Server, *httptest.Server, *Client) {
	t.Helper()
	srv := NewServer(ep, so)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	if co.Backoff == 0 {
		co.Backoff = time.Millisecond
	}
	c, err := NewClient(hs.URL, co)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); c.CloseIdleConnections() })
	return srv, hs, c
}

func mirror() reconcile.Options {
	return reconcile.Options{Mode: reconcile.Mirror, Now: testNow, Force: true}
}

// TestSyncMatchesInProcess runs the same random diffs and syncs in process and through a
// loopback server: the same differences, the same frame bytes and rounds, equal targets.
func TestSyncMatchesInProcess(t *testing.T) {
	ctx := context.Background()
	// One nonce for every session: which entries share a short prefix, and so what a
	// session fetches, depends on it, and the sessions compared here must send the same.
	defer reconcile.FixNonce()()
	for seed := int64(0); seed < 12; seed++ {
		srcA, dstA := pair(seed)
		srcB, dstB := clone(srcA), clone(dstA)
		_, _, c := serve(t, dstB, ServerOptions{}, ClientOptions{})

		for _, opts := range []reconcile.Options{{Mode: reconcile.Diff, Now: testNow}, mirror()} {
			local, err := reconcile.Run(ctx, srcA, dstA, opts)
			if err != nil {
				t.Fatalf("seed %d %s in process: %v", seed, opts.Mode, err)
			}
			before := c.FrameTraffic()
			remote, err := reconcile.RunPeer(ctx, srcB, c, opts)
			if err != nil {
				t.Fatalf("seed %d %s over HTTP: %v", seed, opts.Mode, err)
			}
			if local.OnlySource != remote.OnlySource || local.OnlyTarget != remote.OnlyTarget || local.Changed != remote.Changed ||
				local.Upserted != remote.Upserted || local.Deleted != remote.Deleted || remote.Raced != 0 || remote.Quarantined != 0 {
				t.Fatalf("seed %d %s: in process %+v, over HTTP %+v", seed, opts.Mode, local, remote)
			}
			if local.RootSource != remote.RootSource || local.RootTarget != remote.RootTarget || local.Rounds != remote.Rounds {
				t.Fatalf("seed %d %s: roots or rounds differ: %s %s %d vs %s %s %d", seed, opts.Mode,
					local.RootSource, local.RootTarget, local.Rounds, remote.RootSource, remote.RootTarget, remote.Rounds)
			}
			ft := c.FrameTraffic()
			if sent, recv := ft.Sent-before.Sent, ft.Received-before.Received; sent != local.BytesSent || recv != local.BytesReceived {
				t.Errorf("seed %d %s: frame bytes %d/%d over HTTP, %d/%d in process", seed, opts.Mode, sent, recv, local.BytesSent, local.BytesReceived)
			}
			if remote.BytesSent < local.BytesSent || remote.BytesReceived < local.BytesReceived {
				t.Errorf("seed %d: wire bytes %d/%d below frame bytes %d/%d", seed, remote.BytesSent, remote.BytesReceived, local.BytesSent, local.BytesReceived)
			}
		}
		if a, b := liveRows(dstA), liveRows(dstB); strings.Join(a, ",") != strings.Join(b, ",") {
			t.Fatalf("seed %d: targets differ after sync: %d vs %d live rows", seed, len(a), len(b))
		}
		info, err := c.Root(ctx, testNow)
		if err != nil {
			t.Fatal(err)
		}
		srcRoot, _ := reconcile.Root(ctx, srcB, testNow)
		if info.Root != srcRoot.Root {
			t.Fatalf("seed %d: remote root %x after sync, source %x", seed, info.Root.Fingerprint(), srcRoot.Root.Fingerprint())
		}
	}
}

// TestSyncOddTuning syncs through a server with tunings that force many rounds, tiny
// apply batches and 1-byte fingerprints; in key order too. The differences and the targets after
// sync must be those of the same sync in process.
func TestSyncOddTuning(t *testing.T) {
	ctx := context.Background()
	configs := []reconcile.Options{
		{FingerprintBytes: 1},
		{LeafMax: 2, Fanout: 2, BatchRows: 3},
	}
	var opens, runs atomic.Int32
	for seed := int64(0); seed < 8; seed++ {
		for ci, cfg := range configs {
			o := merkle.VersionOrder
			if seed%2 == 1 {
				o = merkle.KeyOrder
			}
			srcA, dstA := pairIn(seed, o)
			srcB, dstB := cloneIn(o, srcA), cloneIn(o, dstA)
			srv := NewServer(dstB, ServerOptions{})
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == "POST" && r.URL.Path == pathSessions {
					opens.Add(1)
				}
				srv.ServeHTTP(w, r)
			}))
			defer hs.Close()
			c, _ := NewClient(hs.URL, ClientOptions{})
			defer c.Close()
			runs.Add(1)
			cfg.Mode, cfg.Now, cfg.Force = reconcile.Mirror, testNow, true
			local, err := reconcile.Run(ctx, srcA, dstA, cfg)
			if err != nil {
				t.Fatalf("seed %d config %d in process: %v", seed, ci, err)
			}
			remote, err := reconcile.RunPeer(ctx, srcB, c, cfg)
			if err != nil {
				t.Fatalf("seed %d config %d over HTTP: %v", seed, ci, err)
			}
			if local.OnlySource != remote.OnlySource || local.OnlyTarget != remote.OnlyTarget || local.Changed != remote.Changed ||
				local.Upserted != remote.Upserted || local.Deleted != remote.Deleted || remote.Raced != 0 || remote.Quarantined != 0 {
				t.Fatalf("seed %d config %d: in process %+v, over HTTP %+v", seed, ci, local, remote)
			}
			if a, b := liveRows(dstA), liveRows(dstB); strings.Join(a, ",") != strings.Join(b, ",") {
				t.Fatalf("seed %d config %d: targets differ after sync", seed, ci)
			}
		}
	}
	if opens.Load() < runs.Load() {
		t.Errorf("%d opens in %d sessions", opens.Load(), runs.Load())
	}
}

// TestReopen: a second Open on one client (what a session does after a fingerprint
// collision) closes the first session on the server.
func TestReopen(t *testing.T) {
	_, dst := pair(2)
	srv, _, c := serve(t, dst, ServerOptions{}, ClientOptions{})
	req := &reconcile.OpenRequest{Protocol: reconcile.ProtocolVersion, Ordering: merkle.VersionOrder, Schema: reconcile.SchemaKV, Now: testNow}
	for i := 0; i < 3; i++ {
		if _, err := c.Open(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Round(context.Background(), &reconcile.RoundRequest{FPBits: 32, PrefixBits: 32, FetchBits: 32, Ops: []reconcile.Op{{Kind: reconcile.OpList, Limit: 5}}}); err != nil {
			t.Fatal(err)
		}
		if n := srv.Sessions(); n != 1 {
			t.Fatalf("open %d: %d sessions on the server", i, n)
		}
	}
}

// TestBadgerOverHTTP syncs a Badger replica through a server and checks its root.
func TestBadgerOverHTTP(t *testing.T) {
	ctx := context.Background()
	src, mdst := pair(6)
	dst, err := badger.Open(filepath.Join(t.TempDir(), "dst"), badger.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := reconcile.Run(ctx, mdst, dst, mirror()); err != nil { // seed the replica
		t.Fatal(err)
	}
	srv, _, c := serve(t, dst, ServerOptions{}, ClientOptions{})
	rep, err := reconcile.RunPeer(ctx, src, c, mirror())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Differ() || rep.Upserted+rep.Deleted == 0 {
		t.Fatalf("expected a difference: %+v", rep)
	}
	rep, err = reconcile.RunPeer(ctx, src, c, reconcile.Options{Mode: reconcile.Diff, Now: testNow})
	if err != nil || rep.Differ() || rep.RootSource != rep.RootTarget {
		t.Fatalf("after sync: %+v %v", rep, err)
	}
	c.Close()
	if n := srv.Sessions(); n != 0 {
		t.Fatalf("%d sessions open after close", n)
	}
}

func rawRequest(t *testing.T, method, url string, body io.Reader, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(HeaderProtocol, fmt.Sprint(reconcile.ProtocolVersion))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestToken(t *testing.T) {
	src, dst := pair(2)
	_, hs, _ := serve(t, dst, ServerOptions{Token: "s3cret-token"}, ClientOptions{})
	var bodies []string
	for _, auth := range []string{"", "Bearer wrong", "Bearer s3cret-tokeX", "Bearer s3cret-token-longer", "Basic s3cret-token"} {
		h := map[string]string{}
		if auth != "" {
			h["Authorization"] = auth
		}
		code, hdr, body := rawRequest(t, "GET", hs.URL+pathRoot, nil, h)
		if code != http.StatusUnauthorized || hdr.Get("WWW-Authenticate") == "" {
			t.Fatalf("auth %q: %d %q", auth, code, body)
		}
		bodies = append(bodies, body)
	}
	for _, b := range bodies[1:] {
		if b != bodies[0] {
			t.Fatalf("401 answers differ (%q vs %q): they must not say which part was wrong", b, bodies[0])
		}
	}
	if code, _, body := rawRequest(t, "GET", hs.URL+pathRoot, nil, map[string]string{"Authorization": "Bearer s3cret-token"}); code != 200 {
		t.Fatalf("right token: %d %s", code, body)
	}
	bad, _ := NewClient(hs.URL, ClientOptions{Token: "nope"})
	_, err := reconcile.RunPeer(context.Background(), src, bad, mirror())
	if err == nil || !strings.Contains(err.Error(), "is not the server's") || !errors.Is(err, reconcile.ErrSessionLost) {
		t.Fatalf("wrong token: %v", err)
	}
	good, _ := NewClient(hs.URL, ClientOptions{Token: "s3cret-token"})
	defer good.Close()
	if _, err := reconcile.RunPeer(context.Background(), src, good, mirror()); err != nil {
		t.Fatal(err)
	}
}

func TestReadOnly(t *testing.T) {
	src, dst := pair(3)
	before := liveRows(dst)
	_, _, c := serve(t, dst, ServerOptions{ReadOnly: true}, ClientOptions{})
	rep, err := reconcile.RunPeer(context.Background(), src, c, reconcile.Options{Mode: reconcile.Diff, Now: testNow})
	if err != nil || !rep.Differ() {
		t.Fatalf("diff against a read-only server: %v %+v", err, rep)
	}
	_, err = reconcile.RunPeer(context.Background(), src, c, mirror())
	if err == nil || !errors.Is(err, reconcile.ErrReadOnly) || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("sync to a read-only server: %v", err)
	}
	if strings.Join(before, ",") != strings.Join(liveRows(dst), ",") {
		t.Fatal("a read-only server wrote")
	}
}

func TestOversizedBody(t *testing.T) {
	_, dst := pair(1)
	_, hs, _ := serve(t, dst, ServerOptions{MaxBody: 1024}, ClientOptions{})
	big := bytes.Repeat([]byte{'O'}, 4096)
	code, _, body := rawRequest(t, "POST", hs.URL+pathSessions, bytes.NewReader(big), nil)
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(body, "limit") {
		t.Fatalf("with a length: %d %q", code, body)
	}
	// Without a Content-Length (chunked), the cap applies while reading.
	code, _, body = rawRequest(t, "POST", hs.URL+pathSessions, io.MultiReader(bytes.NewReader(big)), nil)
	if code != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked: %d %q", code, body)
	}
}

func TestProtocolMismatch(t *testing.T) {
	src, dst := pair(2)
	srv, _, c := serve(t, dst, ServerOptions{}, ClientOptions{})
	srv.protocol = reconcile.ProtocolVersion + 7
	_, err := c.Root(context.Background(), 0)
	want := fmt.Sprintf("speaks reconcile protocol %d and this client %d", reconcile.ProtocolVersion+7, reconcile.ProtocolVersion)
	if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, errProtocol) {
		t.Fatalf("root: %v", err)
	}
	_, err = reconcile.RunPeer(context.Background(), src, c, mirror())
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("session: %v", err)
	}
}

func TestSessionExpired(t *testing.T) {
	src, dst := pair(2)
	srv, _, c := serve(t, dst, ServerOptions{IdleTimeout: 50 * time.Millisecond}, ClientOptions{})
	req := &reconcile.OpenRequest{Protocol: reconcile.ProtocolVersion, Ordering: merkle.VersionOrder, Schema: reconcile.SchemaKV,
		Now: testNow}
	if _, err := c.Open(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if srv.Sessions() != 1 {
		t.Fatalf("%d sessions", srv.Sessions())
	}
	deadline := time.Now().Add(5 * time.Second)
	for srv.Sessions() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if srv.Sessions() != 0 {
		t.Fatal("the idle session was not closed")
	}
	_, err := c.Round(context.Background(), &reconcile.RoundRequest{FPBits: 32, PrefixBits: 32, FetchBits: 32})
	if err == nil || !strings.Contains(err.Error(), "expired") || !errors.Is(err, reconcile.ErrSessionLost) {
		t.Fatalf("round on an expired session: %v", err)
	}
	_, err = c.Apply(context.Background(), &reconcile.ApplyRequest{Now: testNow, Changes: []reconcile.Change{{Key: []byte("k")}}})
	if err == nil || !strings.Contains(err.Error(), "a batch of 1 change may or may not have been written") {
		t.Fatalf("apply on an expired session: %v", err)
	}
	// A session that keeps working does not expire.
	if _, err := reconcile.RunPeer(context.Background(), src, c, mirror()); err != nil {
		t.Fatal(err)
	}
}

// faultFirst is a handler that lets the server do the work of the first request whose
// path ends in suffix but spoils its answer, as a network fault after the server
// committed would: "drop" cuts the connection, "truncate" sends half the body, "delay"
// answers after the client's timeout.
type faultFirst struct {
	h       http.Handler
	suffix  string
	fault   string
	faulted atomic.Int32
}

func (d *faultFirst) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(r.URL.Path, d.suffix) || d.faulted.Add(1) != 1 {
		d.h.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	switch d.fault {
	case "delay":
		time.Sleep(300 * time.Millisecond)
		d.h.ServeHTTP(w, r)
		return
	case "truncate":
		d.h.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes()[:rec.Body.Len()/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	default:
		d.h.ServeHTTP(rec, r) // the work is done, the answer is lost
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}
}

// TestRetryNeverAppliesTwice spoils the answer to the first open, round and apply: the
// client retries and gets the stored answers, and nothing counts as raced.
func TestRetryNeverAppliesTwice(t *testing.T) {
	for _, fault := range []string{"drop", "truncate", "delay"} {
		for _, suffix := range []string{"/sessions", "/round", "/apply"} {
			t.Run(fault+suffix, func(t *testing.T) {
				srcA, dstA := pair(3)
				src, dst := clone(srcA), clone(dstA)
				want, err := reconcile.Run(context.Background(), srcA, dstA, mirror())
				if err != nil {
					t.Fatal(err)
				}
				srv := NewServer(dst, ServerOptions{})
				d := &faultFirst{h: srv, suffix: suffix, fault: fault}
				hs := httptest.NewServer(d)
				defer hs.Close()
				c, _ := NewClient(hs.URL, ClientOptions{Backoff: time.Millisecond, Timeout: 150 * time.Millisecond})
				defer c.Close()
				rep, err := reconcile.RunPeer(context.Background(), src, c, mirror())
				if err != nil {
					t.Fatal(err)
				}
				if d.faulted.Load() < 1 {
					t.Fatal("no answer was spoiled")
				}
				if rep.Raced != 0 || rep.Upserted != want.Upserted || rep.Deleted != want.Deleted || rep.Quarantined != 0 {
					t.Fatalf("after a spoiled answer: %+v, want %+v", rep, want)
				}
				if strings.Join(liveRows(dst), ",") != strings.Join(liveRows(dstA), ",") {
					t.Fatal("targets differ")
				}
				c.Close()
				if n := srv.Sessions(); n != 0 && fault != "delay" {
					t.Fatalf("a retried open left %d sessions", n)
				}
			})
		}
	}
}

func TestMalformedBodies(t *testing.T) {
	_, dst := pair(2)
	_, hs, c := serve(t, dst, ServerOptions{}, ClientOptions{})
	code, _, body := rawRequest(t, "POST", hs.URL+pathSessions, strings.NewReader("garbage"), nil)
	if code != 400 || !strings.Contains(body, "malformed") {
		t.Fatalf("open: %d %q", code, body)
	}
	req := &reconcile.OpenRequest{Protocol: reconcile.ProtocolVersion, Ordering: merkle.VersionOrder, Schema: reconcile.SchemaKV, Now: testNow}
	if _, err := c.Open(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct{ path, seq, body string }{
		{"/round", "1", "R\xff\xff\xff\xff\x0f"},
		{"/apply", "2", "A\x00\xff\xff\xff\xff\x0f"},
		{"/round", "x", "R\x00"},
		{"/round", "1", "R\x00"},
	} {
		code, _, body := rawRequest(t, "POST", hs.URL+pathSessions+"/"+c.id+tc.path, strings.NewReader(tc.body), map[string]string{HeaderSeq: tc.seq})
		want := 400
		if i == 3 { // a number below the last one answered
			want = 409
		}
		if code != want || body == "" {
			t.Fatalf("case %d: %d %q", i, code, body)
		}
	}
	code, _, body = rawRequest(t, "POST", hs.URL+pathSessions+"/nothex/round", strings.NewReader("R\x00"), map[string]string{HeaderSeq: "1"})
	if code != 400 {
		t.Fatalf("bad id: %d %q", code, body)
	}
	code, _, body = rawRequest(t, "GET", hs.URL+pathRoot+"?now=soon", nil, nil)
	if code != 400 {
		t.Fatalf("bad now: %d %q", code, body)
	}
	req2, _ := http.NewRequest("GET", hs.URL+pathRoot, nil) // no protocol header
	resp, err := http.DefaultClient.Do(req2)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("no protocol header: %d", resp.StatusCode)
	}
}

type fakeListener struct {
	net.Listener
	addr net.Addr
}

func (f fakeListener) Addr() net.Addr { return f.addr }

func TestListenWithoutToken(t *testing.T) {
	public := fakeListener{addr: &net.TCPAddr{IP: net.IPv4zero, Port: 9000}}
	loop := fakeListener{addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9000}}
	ep := memory.New(merkle.VersionOrder)
	if err := NewServer(ep, ServerOptions{}).CheckListener(public); err == nil || !strings.Contains(err.Error(), "--insecure-listen") {
		t.Fatalf("no token on 0.0.0.0: %v", err)
	}
	for _, o := range []ServerOptions{{Token: "t"}, {InsecureListen: true}} {
		if err := NewServer(ep, o).CheckListener(public); err != nil {
			t.Fatal(err)
		}
	}
	if err := NewServer(ep, ServerOptions{}).CheckListener(loop); err != nil {
		t.Fatal(err)
	}
}

func TestTLS(t *testing.T) {
	src, dst := pair(2)
	srv := NewServer(dst, ServerOptions{Token: "tok"})
	hs := httptest.NewTLSServer(srv)
	defer hs.Close()
	tr := hs.Client().Transport.(*http.Transport)
	c, err := NewClient(hs.URL, ClientOptions{Token: "tok", TLS: tr.TLSClientConfig})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rep, err := reconcile.RunPeer(context.Background(), src, c, mirror())
	if err != nil || !rep.Differ() {
		t.Fatalf("%+v %v", rep, err)
	}
	// Without the test CA the handshake fails, and says so.
	c2, _ := NewClient(hs.URL, ClientOptions{Token: "tok", Attempts: 1})
	if _, err := c2.Root(context.Background(), 0); err == nil || !strings.Contains(err.Error(), "certificate") || !strings.Contains(err.Error(), "SSL_CERT_FILE") {
		t.Fatalf("untrusted certificate: %v", err)
	}
	// Plain HTTP to the HTTPS server: the error says to write https://.
	c3, _ := NewClient(strings.Replace(hs.URL, "https://", "http://", 1), ClientOptions{Token: "tok", Attempts: 1})
	if _, err := c3.Root(context.Background(), 0); err == nil || !strings.Contains(err.Error(), "write the URL with https://") {
		t.Fatalf("http to an https server: %v", err)
	}
}

func TestNewClientURL(t *testing.T) {
	for _, u := range []string{"ftp://h:1", "http://", "http://h:1/path", "http://u@h:1", "http://h:1?x=1", "http://h:1#f"} {
		if _, err := NewClient(u, ClientOptions{}); err == nil {
			t.Errorf("%s: accepted", u)
		}
	}
	for _, u := range []string{"http://h:1", "https://h", "http://[::1]:8080/"} {
		if _, err := NewClient(u, ClientOptions{}); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}

// TestOversizedRowQuarantined: a row whose apply body passes the server's limit is refused
// with 413 alone, quarantined with that message, and everything else is applied.
func TestOversizedRowQuarantined(t *testing.T) {
	src, dst := memory.New(merkle.VersionOrder), memory.New(merkle.VersionOrder)
	for i := range 100 {
		src.Put(reconcile.Row{Key: []byte(fmt.Sprintf("k%03d", i)), Version: uint64(i + 1), Value: []byte("small")})
	}
	src.Put(reconcile.Row{Key: []byte("huge"), Version: 500, Value: bytes.Repeat([]byte{'x'}, 64<<10)})
	_, _, c := serve(t, dst, ServerOptions{MaxBody: 32 << 10}, ClientOptions{})
	rep, err := reconcile.RunPeer(context.Background(), src, c, mirror())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Upserted != 100 || rep.Quarantined != 1 || rep.QuarantinedRows[0].Key != "huge" || !strings.Contains(rep.QuarantinedRows[0].Error, "limit") {
		t.Fatalf("%+v", rep)
	}
	// The refused attempts put at most part of the row on the wire: the values reported
	// are those of the batches the server accepted, a part of the bytes sent.
	if rep.ValueBytes != 100*int64(len("small")) || rep.ValueBytes > rep.BytesSent {
		t.Fatalf("value bytes %d, bytes sent %d: want the 100 applied values' 500", rep.ValueBytes, rep.BytesSent)
	}
}

// refusalCounting counts the Apply calls whose batch held key.
type refusalCounting struct {
	*memory.Store
	key  string
	sent atomic.Int32
}

func (c *refusalCounting) Apply(ctx context.Context, now int64, cs []reconcile.Change) ([]reconcile.Outcome, error) {
	for _, ch := range cs {
		if string(ch.Key) == c.key {
			c.sent.Add(1)
		}
	}
	return c.Store.Apply(ctx, now, cs)
}

// TestRefusedRowOverHTTP: a row the served endpoint refuses for what it is
// (reconcile.RowRefusedError) travels back as a 422 naming its index in the batch, and
// crosses a relay as such (answer flag 8): the client, or the source's server of a
// relayed session, quarantines it with the endpoint's message after one send, and the
// rest of the batch is written.
func TestRefusedRowOverHTTP(t *testing.T) {
	for _, relayed := range []bool{false, true} {
		src, mem := memory.New(merkle.VersionOrder), memory.New(merkle.VersionOrder)
		mem.MaxRowBytes = 1000
		for i := range 100 {
			src.Put(reconcile.Row{Key: []byte(fmt.Sprintf("k%03d", i)), Version: uint64(i + 1), Value: []byte("small")})
		}
		src.Put(reconcile.Row{Key: []byte("k050x"), Version: 500, Value: bytes.Repeat([]byte{'x'}, 4000)})
		dst := &refusalCounting{Store: mem, key: "k050x"}
		_, _, c := serve(t, dst, ServerOptions{}, ClientOptions{})
		var rep *reconcile.Report
		var err error
		if relayed {
			_, _, cs := serve(t, src, ServerOptions{ReadOnly: true}, ClientOptions{})
			rep, err = cs.Relay(context.Background(), c, mirror())
		} else {
			rep, err = reconcile.RunPeer(context.Background(), src, c, mirror())
		}
		if err != nil {
			t.Fatal(err)
		}
		if rep.Upserted != 100 || rep.Quarantined != 1 || rep.QuarantinedRows[0].Key != "k050x" || !strings.Contains(rep.QuarantinedRows[0].Error, "over the limit of 1000") || strings.Contains(rep.QuarantinedRows[0].Error, "apply: apply:") {
			t.Fatalf("relayed %v: %+v", relayed, rep)
		}
		if n := dst.sent.Load(); n != 1 {
			t.Fatalf("relayed %v: the refused row was sent %d times, want once", relayed, n)
		}
	}
}

func TestDump(t *testing.T) {
	ep := memory.New(merkle.VersionOrder)
	_, _, none := serve(t, ep, ServerOptions{}, ClientOptions{})
	var out bytes.Buffer
	if err := none.Dump(context.Background(), &out); err == nil || !strings.Contains(err.Error(), "does not offer") {
		t.Fatalf("no dump hook: %v", err)
	}
	lines := strings.Repeat("{\"key\": \"a\"}\n", 50000)
	_, _, ok := serve(t, ep, ServerOptions{Dump: func(ctx context.Context, w io.Writer) error {
		_, err := io.WriteString(w, lines)
		return err
	}}, ClientOptions{})
	if err := ok.Dump(context.Background(), &out); err != nil || out.String() != lines {
		t.Fatalf("dump: %v, %d bytes of %d", err, out.Len(), len(lines))
	}
	_, _, broken := serve(t, ep, ServerOptions{Dump: func(ctx context.Context, w io.Writer) error {
		io.WriteString(w, lines)
		return errors.New("disk on fire")
	}}, ClientOptions{})
	out.Reset()
	if err := broken.Dump(context.Background(), &out); err == nil || !strings.Contains(err.Error(), "stream broke") {
		t.Fatalf("broken dump: %v", err)
	}
	_, _, early := serve(t, ep, ServerOptions{Dump: func(ctx context.Context, w io.Writer) error {
		return errors.New("disk on fire")
	}}, ClientOptions{})
	if err := early.Dump(context.Background(), &out); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("failed dump: %v", err)
	}
}

// TestSyncFromRemoteSource pulls from a read-only server: the local target initiates
// (reconcile.RunFromPeer) and reads the rows it lacks from the server. The differences,
// the rows written and the target after sync are those of the same sync in process.
func TestSyncFromRemoteSource(t *testing.T) {
	ctx := context.Background()
	for seed := int64(0); seed < 12; seed++ {
		o := merkle.VersionOrder
		if seed%3 == 2 {
			o = merkle.KeyOrder
		}
		srcA, dstA := pairIn(seed, o)
		srcB, dstB := cloneIn(o, srcA), cloneIn(o, dstA)
		_, _, c := serve(t, srcB, ServerOptions{ReadOnly: true}, ClientOptions{})
		for _, opts := range []reconcile.Options{{Mode: reconcile.Diff, Now: testNow}, mirror()} {
			opts.BatchRows = 8
			local, err := reconcile.Run(ctx, srcA, dstA, opts)
			if err != nil {
				t.Fatalf("seed %d %s in process: %v", seed, opts.Mode, err)
			}
			pulled, err := reconcile.RunFromPeer(ctx, c, dstB, opts)
			if err != nil {
				t.Fatalf("seed %d %s from the server: %v", seed, opts.Mode, err)
			}
			if local.OnlySource != pulled.OnlySource || local.OnlyTarget != pulled.OnlyTarget || local.Changed != pulled.Changed ||
				local.Upserted != pulled.Upserted || local.Deleted != pulled.Deleted || pulled.Raced != 0 || pulled.Quarantined != 0 {
				t.Fatalf("seed %d %s: in process %+v, from the server %+v", seed, opts.Mode, local, pulled)
			}
			if local.RootSource != pulled.RootSource || local.RootTarget != pulled.RootTarget || local.CountSource != pulled.CountSource {
				t.Fatalf("seed %d %s: roots differ: %s %s vs %s %s", seed, opts.Mode, local.RootSource, local.RootTarget, pulled.RootSource, pulled.RootTarget)
			}
			if opts.Mode == reconcile.Mirror && local.Upserted > 0 && (pulled.ValueBytes == 0 || pulled.RootTargetAfter != pulled.RootSource) {
				t.Fatalf("seed %d: pulled %d value bytes, root after %s, source %s", seed, pulled.ValueBytes, pulled.RootTargetAfter, pulled.RootSource)
			}
		}
		if a, b := liveRows(dstA), liveRows(dstB); strings.Join(a, ",") != strings.Join(b, ",") {
			t.Fatalf("seed %d: targets differ after sync: %d vs %d live rows", seed, len(a), len(b))
		}
		c.Close()
	}
}

// TestPullDeleteGuard: a sync from an empty remote source would delete every target row:
// refused, nothing written.
func TestPullDeleteGuard(t *testing.T) {
	src, dst := pair(1) // identical
	empty := memory.New(merkle.VersionOrder)
	_, _, c := serve(t, empty, ServerOptions{}, ClientOptions{})
	before := liveRows(dst)
	_, err := reconcile.RunFromPeer(context.Background(), c, dst, reconcile.Options{Mode: reconcile.Mirror, Now: testNow})
	var guard *reconcile.DeleteGuardError
	if !errors.As(err, &guard) || guard.TargetCount != uint64(len(before)) {
		t.Fatalf("sync from an empty source: %v", err)
	}
	if strings.Join(liveRows(dst), ",") != strings.Join(before, ",") || len(before) == 0 || len(liveRows(src)) != len(before) {
		t.Fatal("a refused sync changed the target")
	}
}

// upperKeys is a KeyFormatter for TestKeyFormatHeader.
type upperKeys struct{}

func (upperKeys) FormatKey(k []byte) string { return "K=" + strings.ToUpper(string(k)) }

// TestKeyFormatHeader: a server's KeyFormat reaches the client, whose KeyFormatter turns it
// into the formatter of its FormatKey, so a session against the server names keys with it;
// a format the client does not know, or no format, leaves FormatKey empty.
func TestKeyFormatHeader(t *testing.T) {
	src, dst := pair(3)
	known := func(format string) reconcile.KeyFormatter {
		if format == "upper/1" {
			return upperKeys{}
		}
		return nil
	}
	for _, tc := range []struct {
		server string
		want   string
	}{{"upper/1", "K="}, {"lower/9", ""}, {"", ""}} {
		_, _, c := serve(t, dst, ServerOptions{KeyFormat: tc.server}, ClientOptions{KeyFormatter: known})
		rep, err := reconcile.RunPeer(context.Background(), src, c, reconcile.Options{Mode: reconcile.Diff, Now: testNow})
		if err != nil || len(rep.Differences) == 0 {
			t.Fatalf("%q: %v, %+v", tc.server, err, rep)
		}
		if got := c.FormatKey([]byte("ab")); (tc.want == "" && got != "") || (tc.want != "" && got != "K=AB") {
			t.Errorf("%q: FormatKey = %q", tc.server, got)
		}
		if k := rep.Differences[0].Key; strings.HasPrefix(k, "K=") != (tc.want != "") {
			t.Errorf("%q: report key %q", tc.server, k)
		}
	}
}

// TestVersionFormatHeader: a server's VersionFormat reaches the client, whose
// FormatVersion then shows versions as the server's endpoint would (times for
// reconcile.VersionUnixNano), so the report of a session against it carries them; an
// unknown format, or none, leaves the versions as numbers.
func TestVersionFormatHeader(t *testing.T) {
	src, dst := pair(3)
	for _, tc := range []struct {
		server string
		times  bool
	}{{reconcile.VersionUnixNano, true}, {"ticks/9", false}, {"", false}} {
		_, _, c := serve(t, dst, ServerOptions{VersionFormat: tc.server}, ClientOptions{})
		rep, err := reconcile.RunPeer(context.Background(), src, c, reconcile.Options{Mode: reconcile.Diff, Now: testNow})
		if err != nil || len(rep.Differences) == 0 {
			t.Fatalf("%q: %v, %+v", tc.server, err, rep)
		}
		d := rep.Differences[0]
		v, text := d.TargetVersion, d.TargetVersionText
		if d.Class == "only_source" {
			v, text = d.SourceVersion, d.SourceVersionText
		}
		want := ""
		if tc.times {
			want = time.Unix(0, int64(v)).UTC().Format(time.RFC3339Nano)
		}
		if text != want || c.FormatVersion(v) != want {
			t.Errorf("%q: %+v, want the version as %q", tc.server, d, want)
		}
	}
}

// Nothing listening at the server's address: the client retries, then says so and asks
// whether the server runs there.
func TestConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := NewClient("http://"+addr, ClientOptions{Attempts: 2, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Root(context.Background(), 0)
	if err == nil || !strings.Contains(err.Error(), "gave up after 2 attempts; is `reconcile serve` running there?") || !errors.Is(err, reconcile.ErrUnreachable) {
		t.Fatalf("%v", err)
	}
}

// TestOpenStatuses pins the open's statuses against docs/http.md: a reused open key with
// any other body, malformed or not, is 409 (the key is looked up before the body is
// decoded); the same body gets the same session; endpoints in different orderings are
// 422, their first round included.
func TestOpenStatuses(t *testing.T) {
	src, dst := pair(5)
	_, hs, _ := serve(t, dst, ServerOptions{}, ClientOptions{})
	key := strings.Repeat("5a", 16)
	open := func(body []byte, key string) (int, string, string) {
		hdr := map[string]string{}
		if key != "" {
			hdr[HeaderOpenKey] = key
		}
		code, h, msg := rawRequest(t, "POST", hs.URL+pathSessions, bytes.NewReader(body), hdr)
		return code, h.Get(HeaderSession), msg
	}
	req := &reconcile.OpenRequest{Protocol: reconcile.ProtocolVersion, Ordering: merkle.VersionOrder, Schema: reconcile.SchemaKV, Now: testNow}
	frame := reconcile.EncodeOpenRequest(req)
	code, id, msg := open(frame, key)
	if code != 200 || id == "" {
		t.Fatalf("open: %d %q", code, msg)
	}
	if code, id2, msg := open(frame, key); code != 200 || id2 != id {
		t.Fatalf("retried open: %d %q, session %s, want %s", code, msg, id2, id)
	}
	other := *req
	other.Now++
	for name, body := range map[string][]byte{"malformed": []byte("garbage"), "different": reconcile.EncodeOpenRequest(&other)} {
		if code, _, msg := open(body, key); code != 409 || !strings.Contains(msg, HeaderOpenKey) {
			t.Fatalf("open key reused with a %s body: %d %q, want 409", name, code, msg)
		}
	}
	if code, _, msg := open([]byte("garbage"), ""); code != 400 {
		t.Fatalf("malformed open without a key: %d %q", code, msg)
	}

	// A session from an endpoint in key order, with its first round, to one in version order.
	keySrc := cloneIn(merkle.KeyOrder, src)
	c, err := NewClient(hs.URL, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var se *StatusError
	if _, err := reconcile.RunPeer(context.Background(), keySrc, c, reconcile.Options{Now: testNow}); !errors.As(err, &se) || se.Status != 422 || !strings.Contains(se.Msg, "ordering") {
		t.Fatalf("open across orderings: %v, want 422", err)
	}
}

// TestRelayKeyReuse: a relay start's open key, reused with other options (even ones that
// are not JSON), is 409, as an open's is.
func TestRelayKeyReuse(t *testing.T) {
	src, _ := pair(5)
	_, hs, _ := serve(t, src, ServerOptions{}, ClientOptions{})
	key := strings.Repeat("6b", 16)
	body := fmt.Sprintf(`{"mode": "diff", "now": %d}`, testNow)
	code, h, msg := rawRequest(t, "POST", hs.URL+pathRelays, strings.NewReader(body), map[string]string{HeaderOpenKey: key})
	if code != 200 || h.Get(HeaderRelay) == "" {
		t.Fatalf("relay start: %d %q", code, msg)
	}
	defer rawRequest(t, "DELETE", hs.URL+pathRelays+"/"+h.Get(HeaderRelay), nil, nil)
	if code, _, msg := rawRequest(t, "POST", hs.URL+pathRelays, strings.NewReader("garbage"), map[string]string{HeaderOpenKey: key}); code != 409 {
		t.Fatalf("relay key reused with a malformed body: %d %q, want 409", code, msg)
	}
}
