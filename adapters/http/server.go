package remote

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/reconcile-dev/reconcile/reconcile"
)

// ServerOptions configure a Server.
type ServerOptions struct {
	// Token is the bearer token every request must carry. Empty: no token is asked, and
	// Serve refuses a listener that is not on a loopback address unless InsecureListen.
	Token string
	// InsecureListen lets Serve listen on any address without a token.
	InsecureListen bool
	// ReadOnly refuses every apply with 403.
	ReadOnly bool
	// MaxBody caps a request body in bytes (413 past it). Default 64 MiB.
	MaxBody int64
	// IdleTimeout closes a session (and its snapshot) this long after its last request.
	// Default 2 minutes.
	IdleTimeout time.Duration
	// BodyTimeout bounds how long a request's body may take to arrive, from the time its
	// handler starts (right after the headers): a client that sends headers and then
	// trickles its body, or never sends it, is answered 408 and its connection closed,
	// instead of holding a connection and a goroutine for ever. It bounds one request's
	// upload only, not the work the server does on it nor a session's life (a session is
	// many requests). Default 2 minutes, the client's default time for a whole attempt.
	BodyTimeout time.Duration
	// WriteTimeout bounds how long an answer may go without progress: each piece of at
	// most writeChunk bytes must be taken by the client within it, or the connection is
	// closed and the handler returns (a dump stops and releases its snapshot). A client
	// that sends a request and never reads a large answer would otherwise hold a
	// connection, a goroutine and the answer (a dump: its snapshot) for ever. It bounds
	// progress, not a whole answer: a long dump over a slow but moving link is not cut.
	// Default 2 minutes.
	WriteTimeout time.Duration
	// MaxSessions bounds the sessions and relays open at once (503 past it). Default 64.
	MaxSessions int
	// RequestTimeout bounds the work of one request on the endpoint. Default 10 minutes.
	// The work does not stop when the client gives up on a request: a retry waits for it
	// and gets its answer.
	RequestTimeout time.Duration
	// Dump, when set, serves GET /v1/dump: it writes the endpoint's live rows (the CLI
	// writes the JSON lines of `reconcile dump`). Nil: 501.
	Dump func(ctx context.Context, w io.Writer) error
	// Load, when set, serves POST /v1/load: it writes the rows the body describes,
	// unconditionally (the CLI takes the JSON lines of `reconcile load`, all checked
	// before any is written), and returns the answer body. Errors wrapping ErrBadInput
	// are answered 400, others 500. Nil: 501. Refused with 403 on read-only servers.
	Load func(ctx context.Context, body []byte) ([]byte, error)
	// Logger, when set, receives the server's records: each session opened and closed
	// (Info), each request answered with an error (Warn for 5xx, Info for the others,
	// with the answer's message), and every request (Debug). Nil: none.
	Logger *slog.Logger
	// OnRequest, when set, is called after each request is answered, with its route (the
	// pattern that served it, such as "POST /v1/sessions/{id}/round", or "" for a request
	// refused before routing: a wrong token, another protocol), status, time taken and
	// body bytes written. It must be quick and safe for concurrent use (the CLI counts
	// requests for Prometheus).
	OnRequest func(route string, status int, took time.Duration, bytes int64)
	// KeyFormat, when set, describes the endpoint's keys for clients' reports (sent in the
	// Reconcile-Key-Format header; see ClientOptions.KeyFormatter). The CLI sets a SQL
	// table's sql.(*Table).KeyFormat, so a client names rows by their key columns.
	KeyFormat string
	// VersionFormat, when set, says how the endpoint's versions read (sent in the
	// Reconcile-Version-Format header): reconcile.VersionUnixNano where they are times, as
	// sql.(*Table).VersionFormat says of a timestamp version column.
	VersionFormat string
}

// ErrBadInput is wrapped by a Load hook's errors about the request itself (a malformed
// line): the server answers 400 rather than 500.
var ErrBadInput = errors.New("bad input")

// Defaults fills the zero fields.
func (o ServerOptions) Defaults() ServerOptions {
	if o.MaxBody <= 0 {
		o.MaxBody = 64 << 20
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 2 * time.Minute
	}
	if o.BodyTimeout <= 0 {
		o.BodyTimeout = 2 * time.Minute
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 2 * time.Minute
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = 64
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 10 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Server serves one reconcile.Endpoint over HTTP: it is an http.Handler. Each session
// holds one read snapshot, opened by the session's open request and closed by its close
// request, or after IdleTimeout without requests.
type Server struct {
	ep   reconcile.Endpoint
	opts ServerOptions
	mux  *http.ServeMux
	// protocol is the version this server claims; tests set it to simulate another one.
	protocol uint32

	mu       sync.Mutex
	sessions map[string]*session
	byKey    map[string]*session // by open key
	relays   map[string]*relay
	// relayKeys finds a relay by its start's open key; relaysRunning counts the relays'
	// session goroutines, which Close waits for.
	relayKeys     map[string]*relay
	relaysRunning sync.WaitGroup
	closed        bool
}

type session struct {
	id      string
	openKey string
	mu      sync.Mutex // serializes the session's requests
	snap    reconcile.Snapshot
	resp    *reconcile.Responder
	// cancelSnap ends the context snap was opened with, after it is closed: a snapshot
	// may hold on to it for its life (a SQL snapshot's read transaction does).
	cancelSnap context.CancelFunc
	open       *reconcile.OpenRequest
	timer      *time.Timer
	used       time.Time
	closed     bool
	// opened and remote are for the server's log.
	opened time.Time
	remote string

	openHash  [32]byte
	openFrame []byte

	// The last round or apply answered, for a retry of it.
	lastSeq  uint64
	lastHash [32]byte
	last     answer
}

// answer is a response as sent, kept for replay.
type answer struct {
	status int
	body   []byte
	msg    string // status != 200
	// refused, on a 422 to an apply or a rows request, is HeaderRefusedRow's value.
	refused string
}

// NewServer returns a Server for ep. The caller keeps ep open while the server runs and
// closes it after Server.Close.
func NewServer(ep reconcile.Endpoint, o ServerOptions) *Server {
	s := &Server{ep: ep, opts: o.Defaults(), protocol: reconcile.ProtocolVersion,
		sessions: map[string]*session{}, byKey: map[string]*session{}, relays: map[string]*relay{},
		relayKeys: map[string]*relay{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+pathRoot, s.handleRoot)
	mux.HandleFunc("POST "+pathSessions, s.handleOpen)
	mux.HandleFunc("POST "+pathSessions+"/{id}/round", s.handleRound)
	mux.HandleFunc("POST "+pathSessions+"/{id}/apply", s.handleApply)
	mux.HandleFunc("POST "+pathSessions+"/{id}/rows", s.handleRows)
	mux.HandleFunc("DELETE "+pathSessions+"/{id}", s.handleClose)
	mux.HandleFunc("GET "+pathDump, s.handleDump)
	mux.HandleFunc("POST "+pathLoad, s.handleLoad)
	mux.HandleFunc("POST "+pathRelays, s.handleRelayStart)
	mux.HandleFunc("POST "+pathRelays+"/{id}", s.handleRelayAnswer)
	mux.HandleFunc("DELETE "+pathRelays+"/{id}", s.handleRelayClose)
	s.mux = mux
	return s
}

// ServeHTTP checks the token and the protocol version, then routes the request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	dw := newDeadlineWriter(w, s.opts.WriteTimeout)
	w = dw
	start := time.Now()
	defer func() { s.logRequest(r, dw, time.Since(start)) }()
	if r.URL.Path == pathHealth && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		s.handleHealth(w)
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		// Set before anything else: a refused request's body is still read (net/http
		// drains a small one to reuse the connection), and must arrive in time too.
		// readBody lifts the deadline once it has the body, so that the work after it,
		// however long, is not cut. (Not supported by test recorders: then no deadline.)
		http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.opts.BodyTimeout))
	}
	w.Header().Set(HeaderProtocol, strconv.FormatUint(uint64(s.protocol), 10))
	if s.opts.KeyFormat != "" {
		w.Header().Set(HeaderKeyFormat, s.opts.KeyFormat)
	}
	if s.opts.VersionFormat != "" {
		w.Header().Set(HeaderVersionFormat, s.opts.VersionFormat)
	}
	if s.opts.ReadOnly {
		w.Header().Set(HeaderReadOnly, "1")
	}
	if s.opts.Token != "" {
		tok, ok := bearer(r.Header.Get("Authorization"))
		if !ok || !tokenMatches(tok, s.opts.Token) {
			// The same answer for a missing and a wrong token.
			w.Header().Set("WWW-Authenticate", `Bearer realm="reconcile"`)
			httpError(w, http.StatusUnauthorized, "unauthorized: this server needs a valid bearer token (RECONCILE_TOKEN or ?token_file= on the client)")
			return
		}
	}
	p, err := parseProtocol(r.Header.Get(HeaderProtocol))
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if p != s.protocol {
		httpError(w, http.StatusConflict, "this server speaks reconcile protocol %d and the client %d: run the same reconcile version on both sides", s.protocol, p)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// pathHealth answers load balancers and orchestrators without a token or protocol
// header: 200 "ok" while the server takes sessions, 503 once it is shutting down. It says
// nothing about the endpoint's data.
const pathHealth = "/healthz"

func (s *Server) handleHealth(w http.ResponseWriter) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if closed {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "shutting down\n")
		return
	}
	io.WriteString(w, "ok\n")
}

// Close closes every open session's snapshot; requests after it get 503.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	list := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		list = append(list, ss)
	}
	relays := make([]*relay, 0, len(s.relays))
	for _, rl := range s.relays {
		relays = append(relays, rl)
	}
	s.mu.Unlock()
	for _, rl := range relays {
		s.dropRelay(rl)
	}
	s.relaysRunning.Wait() // their sessions use the endpoint, which the caller closes next
	var first error
	for _, ss := range list {
		if err := s.drop(ss, false, "the server is closing"); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Sessions reports how many sessions are open.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// CheckListener refuses a listener that is not on a loopback address when no token is
// configured, unless InsecureListen is set.
func (s *Server) CheckListener(ln net.Listener) error {
	if s.opts.Token != "" || s.opts.InsecureListen {
		return nil
	}
	where := ln.Addr().String()
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		if a.IP.IsLoopback() {
			return nil
		}
		if a.IP.IsUnspecified() { // Go reports 0.0.0.0 as [::]: name it plainly
			where = fmt.Sprintf("all interfaces (port %d)", a.Port)
		}
	}
	return fmt.Errorf("refusing to listen on %s without a token: give --token-file, listen on a loopback address (127.0.0.1), or pass --insecure-listen", where)
}

// ShutdownGrace is how long Serve lets requests in flight finish after ctx ends.
const ShutdownGrace = 30 * time.Second

// Serve serves on ln until ctx ends, with TLS when certFile and keyFile are given. It
// checks ln with CheckListener first, and closes every session when it returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener, certFile, keyFile string) error {
	if err := s.CheckListener(ln); err != nil {
		ln.Close()
		return err
	}
	if (certFile == "") != (keyFile == "") {
		ln.Close()
		return errors.New("TLS needs both a certificate and a key file")
	}
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	done := make(chan struct{})
	shutdown := make(chan struct{}) // closed when requests in flight have finished
	go func() {
		defer close(shutdown)
		select {
		case <-ctx.Done():
			// Stop accepting, and let requests in flight (a load, an apply) finish.
			sctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
			hs.Shutdown(sctx)
			cancel()
		case <-done:
		}
	}()
	var err error
	if certFile != "" {
		err = hs.ServeTLS(ln, certFile, keyFile)
	} else {
		err = hs.Serve(ln)
	}
	close(done)
	<-shutdown // Serve returns as soon as Shutdown starts; the requests may still run
	s.Close()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// logRequest reports one answered request to OnRequest, and logs it: an error answer with
// its message, and every request at Debug.
func (s *Server) logRequest(r *http.Request, dw *deadlineWriter, took time.Duration) {
	status := dw.status
	if status == 0 {
		status = http.StatusOK
	}
	if s.opts.OnRequest != nil {
		route := r.Pattern
		if r.URL.Path == pathHealth {
			route = "GET " + pathHealth
		}
		s.opts.OnRequest(route, status, took, dw.written)
	}
	log := s.opts.Logger
	level := slog.LevelDebug
	switch {
	case status >= 500:
		level = slog.LevelWarn
	case status >= 400:
		level = slog.LevelInfo
	}
	if !log.Enabled(r.Context(), level) {
		return
	}
	attrs := []any{"method", r.Method, "path", r.URL.Path, "status", status, "remote", r.RemoteAddr,
		"ms", took.Milliseconds(), "bytes", dw.written}
	if status >= 400 {
		attrs = append(attrs, "error", strings.TrimSpace(string(dw.errBody)))
	}
	log.Log(r.Context(), level, "request", attrs...)
}

// writeChunk is the most an answer write sends under one write deadline.
const writeChunk = 64 << 10

// deadlineWriter renews the connection's write deadline before each piece of an answer it
// writes, so that an answer stalls for at most WriteTimeout (ServerOptions.WriteTimeout).
// It also clears, when made, a deadline left on a kept-alive connection by its previous
// request, which net/http does not reset (its own WriteTimeout is not used: it would bound
// a whole request, the work before the answer included).
type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	// status, written and errBody (the start of an error answer's body) are kept for
	// the server's log.
	status  int
	written int64
	errBody []byte
}

func (d *deadlineWriter) WriteHeader(status int) {
	if d.status == 0 {
		d.status = status
	}
	d.ResponseWriter.WriteHeader(status)
}

func newDeadlineWriter(w http.ResponseWriter, timeout time.Duration) *deadlineWriter {
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Time{}) // not supported by test recorders: then no deadline
	return &deadlineWriter{ResponseWriter: w, rc: rc, timeout: timeout}
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	if d.status >= 400 && len(d.errBody) < 512 {
		d.errBody = append(d.errBody, p[:min(len(p), 512-len(d.errBody))]...)
	}
	if d.status == 0 {
		d.status = http.StatusOK
	}
	n := 0
	for len(p) > 0 {
		c := min(len(p), writeChunk)
		d.rc.SetWriteDeadline(time.Now().Add(d.timeout))
		m, err := d.ResponseWriter.Write(p[:c])
		n += m
		d.written += int64(m)
		if err != nil {
			return n, err
		}
		p = p[c:]
	}
	return n, nil
}

// Unwrap lets http.NewResponseController reach the connection's writer.
func (d *deadlineWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }

func httpError(w http.ResponseWriter, status int, format string, args ...any) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintf(w, format+"\n", args...)
}

func writeFrame(w http.ResponseWriter, frame []byte) {
	w.Header().Set("Content-Type", frameType)
	w.Header().Set("Content-Length", strconv.Itoa(len(frame)))
	w.WriteHeader(http.StatusOK)
	w.Write(frame)
}

func (a answer) write(w http.ResponseWriter) {
	if a.refused != "" {
		w.Header().Set(HeaderRefusedRow, a.refused)
	}
	if a.status != http.StatusOK {
		httpError(w, a.status, "%s", a.msg)
		return
	}
	writeFrame(w, a.body)
}

// maxBodyHint ends the message of a 413.
const maxBodyHint = "(reconcile serve --max-body: clients halve a batch until it fits, so one row refused with this is larger than the limit by itself; raise --max-body above it)"

// readBody reads a request body of at most MaxBody bytes, within BodyTimeout (set by
// ServeHTTP); on failure it has answered. It lifts the read deadline once it has the body.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.ContentLength > s.opts.MaxBody {
		httpError(w, http.StatusRequestEntityTooLarge, "request body of %d bytes is over this server's limit of %d %s", r.ContentLength, s.opts.MaxBody, maxBodyHint)
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBody))
	var mb *http.MaxBytesError
	switch {
	case errors.As(err, &mb):
		httpError(w, http.StatusRequestEntityTooLarge, "request body is over this server's limit of %d bytes %s", s.opts.MaxBody, maxBodyHint)
		return nil, false
	case errors.Is(err, os.ErrDeadlineExceeded):
		w.Header().Set("Connection", "close")
		httpError(w, http.StatusRequestTimeout, "the request body did not arrive within %s (reconcile serve --body-timeout): on a slow link, raise --body-timeout on the server and ?timeout= on the client", s.opts.BodyTimeout)
		return nil, false
	case err != nil:
		httpError(w, http.StatusBadRequest, "reading the request body: %v", err)
		return nil, false
	}
	// The work that follows may take long (an open over a large table), and net/http
	// reads the connection meanwhile to notice a client that went away: that read must
	// not time out.
	http.NewResponseController(w).SetReadDeadline(time.Time{})
	return body, true
}

// work is the context of the endpoint work for one request: not cancelled when the client
// goes away (a retry waits for the answer), bounded by RequestTimeout.
func (s *Server) work(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(context.WithoutCancel(r.Context()), s.opts.RequestTimeout, s.tooLong())
}

// prefixOnce is err's message starting "kind: " once, whether or not the error says it
// already ("" for no error).
func prefixOnce(kind string, err error) string {
	if err == nil {
		return ""
	}
	return kind + ": " + strings.TrimPrefix(err.Error(), kind+": ")
}

// refusedAnswer is the 422 that names, in HeaderRefusedRow, the one of a request's n rows
// that err (a *reconcile.RowRefusedError) refuses, with message msg; ok is false for
// any other error.
func refusedAnswer(err error, n int, msg string) (a answer, ok bool) {
	var refused *reconcile.RowRefusedError
	if !errors.As(err, &refused) || refused.Index < 0 || refused.Index >= n {
		return answer{}, false
	}
	a = fail(http.StatusUnprocessableEntity, "%s", msg)
	a.refused = strconv.Itoa(refused.Index)
	return a, true
}

// workTooLong is the cause of a request's work cut by RequestTimeout.
type workTooLong struct{ d time.Duration }

func (e *workTooLong) Error() string {
	return fmt.Sprintf("the server's work on one request passed its request timeout (%s): raise reconcile serve --request-timeout (and the client's ?timeout=) for a table this large", e.d)
}

func (s *Server) tooLong() error { return &workTooLong{d: s.opts.RequestTimeout} }

// workErr is err of work done under ctx (from work), saying so when RequestTimeout cut it.
func workErr(ctx context.Context, err error) error {
	var tl *workTooLong
	if cause := context.Cause(ctx); err != nil && errors.As(cause, &tl) {
		return fmt.Errorf("%w (%v)", err, tl)
	}
	return err
}

func (s *Server) handleRoot(w http.ResponseWriter, r *http.Request) {
	now := time.Now().UnixNano()
	if v := r.URL.Query().Get("now"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			httpError(w, http.StatusBadRequest, "now=%q is not unix nanoseconds", clip(v))
			return
		}
		now = n
	}
	var asOf *uint64
	if v := r.URL.Query().Get("as_of"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			httpError(w, http.StatusBadRequest, "as_of=%q is not a version (an unsigned integer)", clip(v))
			return
		}
		asOf = &n
	}
	ctx, cancel := s.work(r)
	defer cancel()
	var info reconcile.Info
	var err error
	if asOf != nil {
		info, err = reconcile.RootAsOf(ctx, s.ep, now, *asOf)
	} else {
		info, err = reconcile.Root(ctx, s.ep, now)
	}
	if errors.Is(err, reconcile.ErrNoVersionCut) {
		httpError(w, http.StatusUnprocessableEntity, "root: %v", err)
		return
	}
	if err != nil {
		httpError(w, http.StatusInternalServerError, "root: %v", workErr(ctx, err))
		return
	}
	// The root travels as an open response without a first round.
	frame := reconcile.EncodeOpenResponse(&reconcile.OpenRequest{}, &reconcile.OpenResponse{
		Protocol: s.protocol, Ordering: info.Ordering, Schema: info.Schema, Root: info.Root})
	writeFrame(w, frame)
}

// handleDump streams the Dump hook's output. A failure after the first byte cuts the
// connection, so that the client sees a broken stream rather than a short one.
func (s *Server) handleDump(w http.ResponseWriter, r *http.Request) {
	if s.opts.Dump == nil {
		httpError(w, http.StatusNotImplemented, "dump: this server does not offer its rows")
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	cw := &countWriter{w: w}
	if err := s.opts.Dump(r.Context(), cw); err != nil {
		if cw.n == 0 {
			httpError(w, http.StatusInternalServerError, "dump: %v", err)
			return
		}
		panic(http.ErrAbortHandler)
	}
}

// handleLoad hands the body to the Load hook. A load is idempotent (rows with exact
// versions, deletes), so a client may retry one whose answer it lost.
func (s *Server) handleLoad(w http.ResponseWriter, r *http.Request) {
	if s.opts.ReadOnly {
		httpError(w, http.StatusForbidden, "load: this server is read-only (reconcile serve --read-only): it refuses writes")
		return
	}
	if s.opts.Load == nil {
		httpError(w, http.StatusNotImplemented, "load: this server does not take raw writes")
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	ctx, cancel := s.work(r)
	defer cancel()
	out, err := s.opts.Load(ctx, body)
	err = workErr(ctx, err)
	msg := prefixOnce("load", err)
	switch {
	case errors.Is(err, ErrBadInput):
		httpError(w, http.StatusBadRequest, "%s", msg)
	case errors.Is(err, reconcile.ErrReadOnly):
		httpError(w, http.StatusForbidden, "%s", msg)
	case err != nil:
		httpError(w, http.StatusInternalServerError, "%s", msg)
	default:
		w.Header().Set("Content-Type", "application/json")
		w.Write(out)
	}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (s *Server) handleOpen(w http.ResponseWriter, r *http.Request) {
	key, err := parseOpenKey(r.Header.Get(HeaderOpenKey))
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	hash := sha256.Sum256(body)
	// A known open key is answered before the body is decoded (docs/http.md): its
	// session's answer to the same body, else 409 for any other body, malformed or not.
	if key != "" {
		s.mu.Lock()
		ss := s.byKey[key]
		s.mu.Unlock()
		if ss != nil {
			s.replayOpen(w, ss, hash)
			return
		}
	}
	req, err := reconcile.DecodeOpenRequest(body)
	if err != nil {
		httpError(w, http.StatusBadRequest, "open: %v", err)
		return
	}
	if req.Protocol != s.protocol {
		httpError(w, http.StatusConflict, "open: the client's open request is protocol %d, this server speaks %d: run the same reconcile version on both sides", req.Protocol, s.protocol)
		return
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		httpError(w, http.StatusServiceUnavailable, "server is shutting down")
		return
	}
	if key != "" {
		if ss := s.byKey[key]; ss != nil { // a retry that came in meanwhile
			s.mu.Unlock()
			s.replayOpen(w, ss, hash)
			return
		}
	}
	if len(s.sessions)+len(s.relays) >= s.opts.MaxSessions {
		s.mu.Unlock()
		w.Header().Set("Retry-After", "5")
		httpError(w, http.StatusServiceUnavailable, "too many open sessions (%d, reconcile serve --max-sessions): try again later", s.opts.MaxSessions)
		return
	}
	// Reserve the key so that a concurrent retry waits for this open.
	ss := &session{id: newID(), openKey: key, openHash: hash, open: req}
	ss.mu.Lock()
	s.sessions[ss.id] = ss
	if key != "" {
		s.byKey[key] = ss
	}
	s.mu.Unlock()

	// The snapshot lives as long as the session, and so must the context it is opened
	// with (a SQL snapshot's transaction ends with it): not the request's. Opening is
	// still bounded by RequestTimeout.
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(r.Context()))
	opening := time.AfterFunc(s.opts.RequestTimeout, func() { cancel(s.tooLong()) })
	abort := func(status int, format string, args ...any) {
		opening.Stop()
		cancel(nil)
		ss.closed = true
		ss.mu.Unlock()
		s.forget(ss)
		httpError(w, status, format, args...)
	}
	snap, err := s.ep.Open(ctx, req.Now)
	if err != nil {
		abort(http.StatusInternalServerError, "open: open snapshot: %v", workErr(ctx, err))
		return
	}
	resp, openResp, err := reconcile.NewResponder(ctx, snap, req)
	if err != nil {
		snap.Close()
		status := http.StatusUnprocessableEntity
		if context.Cause(ctx) != nil {
			status = http.StatusInternalServerError // cut by the timeout, not refused
		}
		abort(status, "%v", workErr(ctx, err))
		return
	}
	if !opening.Stop() {
		snap.Close()
		abort(http.StatusInternalServerError, "open: %v", s.tooLong())
		return
	}
	ss.snap, ss.resp, ss.cancelSnap = snap, resp, func() { cancel(nil) }
	ss.opened, ss.remote = time.Now(), r.RemoteAddr
	s.opts.Logger.Info("session opened", "session", ss.id, "remote", ss.remote, "rows", snap.Info().Root.Count)
	ss.openFrame = reconcile.EncodeOpenResponse(req, openResp)
	ss.used = time.Now()
	ss.timer = time.AfterFunc(s.opts.IdleTimeout, func() { s.expire(ss) })
	w.Header().Set(HeaderSession, ss.id)
	s.statHeaders(w, ss)
	frame := ss.openFrame
	ss.mu.Unlock()
	writeFrame(w, frame)
}

func (s *Server) replayOpen(w http.ResponseWriter, ss *session, hash [32]byte) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	switch {
	case ss.closed:
		httpError(w, http.StatusNotFound, "open: the session opened with this %s is closed or failed: open a new one", HeaderOpenKey)
	case ss.openHash != hash:
		httpError(w, http.StatusConflict, "open: %s reused for a different open request", HeaderOpenKey)
	default:
		ss.used = time.Now()
		w.Header().Set(HeaderSession, ss.id)
		s.statHeaders(w, ss)
		writeFrame(w, ss.openFrame)
	}
}

func (s *Server) statHeaders(w http.ResponseWriter, ss *session) {
	if ss.snap == nil {
		return
	}
	st := ss.snap.ReadStats()
	w.Header().Set(HeaderEntriesRead, strconv.FormatInt(st.Entries, 10))
	w.Header().Set(HeaderNodesRead, strconv.FormatInt(st.Nodes, 10))
}

// sessionCall runs one round or apply of a session: it checks the id and sequence number,
// reads the body, replays the stored answer to a retry, and otherwise calls do with the
// session locked and stores its answer.
func (s *Server) sessionCall(w http.ResponseWriter, r *http.Request, kind string, do func(ctx context.Context, ss *session, body []byte) answer) {
	id, err := parseSessionID(r.PathValue("id"))
	if err != nil {
		httpError(w, http.StatusBadRequest, "%s: %v", kind, err)
		return
	}
	seq, err := parseSeq(r.Header.Get(HeaderSeq))
	if err != nil {
		httpError(w, http.StatusBadRequest, "%s: %v", kind, err)
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	ss := s.lookup(w, id, kind)
	if ss == nil {
		return
	}
	a, ok := s.locked(w, ss, kind, seq, body, do, r)
	if ok {
		a.write(w) // after the session is unlocked: a slow reader holds nothing
	}
}

// locked runs one call with the session locked, filling w's headers; ok false means it
// has answered already.
func (s *Server) locked(w http.ResponseWriter, ss *session, kind string, seq uint64, body []byte, do func(ctx context.Context, ss *session, body []byte) answer, r *http.Request) (answer, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		s.gone(w, ss.id, kind)
		return answer{}, false
	}
	if ss.timer != nil {
		ss.timer.Stop()
	}
	defer func() {
		ss.used = time.Now()
		if ss.timer != nil && !ss.closed {
			ss.timer.Reset(s.opts.IdleTimeout)
		}
	}()
	h := sha256.New()
	h.Write([]byte(kind))
	h.Write(body)
	var hash [32]byte
	h.Sum(hash[:0])
	switch {
	case seq == ss.lastSeq && hash == ss.lastHash:
		s.statHeaders(w, ss)
		return ss.last, true // a retry: the stored answer, nothing done twice
	case seq == ss.lastSeq:
		httpError(w, http.StatusConflict, "%s: request %d repeated with a different body", kind, seq)
		return answer{}, false
	case seq < ss.lastSeq:
		// Numbers only grow; gaps are requests refused before they reached the session
		// (a body over the limit, say).
		httpError(w, http.StatusConflict, "%s: request %d out of order (the last one answered was %d)", kind, seq, ss.lastSeq)
		return answer{}, false
	}
	ctx, cancel := s.work(r)
	defer cancel()
	a := do(ctx, ss, body)
	var tl *workTooLong
	if a.status != http.StatusOK && errors.As(context.Cause(ctx), &tl) {
		a.msg += " (" + tl.Error() + ")"
	}
	ss.lastSeq, ss.lastHash, ss.last = seq, hash, a
	s.statHeaders(w, ss)
	return a, true
}

func fail(status int, format string, args ...any) answer {
	return answer{status: status, msg: fmt.Sprintf(format, args...)}
}

func (s *Server) handleRound(w http.ResponseWriter, r *http.Request) {
	s.sessionCall(w, r, "round", func(ctx context.Context, ss *session, body []byte) answer {
		req, err := reconcile.DecodeRoundRequest(ss.open, body)
		if err != nil {
			return fail(http.StatusBadRequest, "round: %v", err)
		}
		resp, err := ss.resp.Round(ctx, req)
		if err != nil {
			return fail(http.StatusInternalServerError, "round: %v", err)
		}
		return answer{status: http.StatusOK, body: reconcile.EncodeRoundResponse(ss.open, req, resp)}
	})
}

func (s *Server) handleApply(w http.ResponseWriter, r *http.Request) {
	if s.opts.ReadOnly {
		httpError(w, http.StatusForbidden, "apply: this server is read-only (reconcile serve --read-only): it refuses writes; use it as a diff target or a sync source")
		return
	}
	s.sessionCall(w, r, "apply", func(ctx context.Context, ss *session, body []byte) answer {
		req, err := reconcile.DecodeApplyRequest(body)
		if err != nil {
			return fail(http.StatusBadRequest, "apply: %v", err)
		}
		outcomes, err := s.ep.Apply(ctx, req.Now, req.Changes)
		msg := prefixOnce("apply", err) // a Badger store's errors say "apply: " already
		if errors.Is(err, reconcile.ErrReadOnly) {
			return fail(http.StatusForbidden, "%s", msg)
		}
		if a, ok := refusedAnswer(err, len(req.Changes), msg); ok {
			return a
		}
		if err != nil {
			return fail(http.StatusInternalServerError, "%s", msg)
		}
		if len(outcomes) != len(req.Changes) {
			return fail(http.StatusInternalServerError, "apply: the endpoint answered %s for %s", count(len(outcomes), "outcome"), count(len(req.Changes), "change"))
		}
		return answer{status: http.StatusOK, body: reconcile.EncodeApplyResponse(&reconcile.ApplyResponse{Outcomes: outcomes})}
	})
}

// handleRows answers a session's rows request from its snapshot: a read, allowed on
// read-only servers (a sync whose source this server is reads the rows to write this way).
func (s *Server) handleRows(w http.ResponseWriter, r *http.Request) {
	s.sessionCall(w, r, "rows", func(ctx context.Context, ss *session, body []byte) answer {
		req, err := reconcile.DecodeRowsRequest(body)
		if err != nil {
			return fail(http.StatusBadRequest, "rows: %v", err)
		}
		rows, err := ss.snap.Rows(ctx, req.Keys)
		// A row the endpoint cannot read: the session quarantines it and asks again for
		// the rows before it.
		if a, ok := refusedAnswer(err, len(req.Keys), prefixOnce("rows", err)); ok {
			return a
		}
		if err != nil {
			return fail(http.StatusInternalServerError, "rows: %v", err)
		}
		if len(rows) != len(req.Keys) {
			return fail(http.StatusInternalServerError, "rows: the endpoint answered %s for %s", count(len(rows), "row"), count(len(req.Keys), "key"))
		}
		// The answer is bounded by the client's budget and by this server's body limit,
		// whatever the client asked: at least one row, then rows while they fit.
		limit := req.MaxBytes
		if limit <= 0 || limit > s.opts.MaxBody {
			limit = s.opts.MaxBody
		}
		frame, _ := reconcile.EncodeRowsResponse(req, &reconcile.RowsResponse{Rows: reconcile.LimitRows(rows, limit)})
		return answer{status: http.StatusOK, body: frame}
	})
}

func (s *Server) handleClose(w http.ResponseWriter, r *http.Request) {
	id, err := parseSessionID(r.PathValue("id"))
	if err != nil {
		httpError(w, http.StatusBadRequest, "close: %v", err)
		return
	}
	ss := s.lookup(w, id, "close")
	if ss == nil {
		return
	}
	if err := s.drop(ss, false, "closed by the client"); err != nil {
		httpError(w, http.StatusInternalServerError, "close: %v", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// lookup finds an open session; on failure it has answered 404.
func (s *Server) lookup(w http.ResponseWriter, id, kind string) *session {
	s.mu.Lock()
	ss := s.sessions[id]
	s.mu.Unlock()
	if ss == nil {
		s.gone(w, id, kind)
	}
	return ss
}

func (s *Server) gone(w http.ResponseWriter, id, kind string) {
	httpError(w, http.StatusNotFound, "%s: session %s is not open on this server: it expired after %s without requests (reconcile serve --idle-timeout), was closed, or the server restarted; run the command again", kind, id, s.opts.IdleTimeout)
}

// expire closes a session that has been idle for IdleTimeout.
func (s *Server) expire(ss *session) {
	ss.mu.Lock()
	idle := time.Since(ss.used) >= s.opts.IdleTimeout
	ss.mu.Unlock()
	if idle {
		s.drop(ss, true, "idle for --idle-timeout")
	}
}

// drop closes a session's snapshot and forgets it, logging why. With ifIdle it does
// nothing when the session was used since the idle check.
func (s *Server) drop(ss *session, ifIdle bool, why string) error {
	ss.mu.Lock()
	if ss.closed || (ifIdle && time.Since(ss.used) < s.opts.IdleTimeout) {
		ss.mu.Unlock()
		return nil
	}
	ss.closed = true
	if ss.timer != nil {
		ss.timer.Stop()
	}
	var err error
	if ss.snap != nil {
		err = ss.snap.Close()
		ss.cancelSnap()
		ss.snap, ss.resp, ss.cancelSnap = nil, nil, nil
	}
	ss.last = answer{}
	opened := !ss.opened.IsZero()
	ss.mu.Unlock()
	s.forget(ss)
	if opened {
		attrs := []any{"session", ss.id, "remote", ss.remote, "why", why, "open_s", time.Since(ss.opened).Round(time.Millisecond).Seconds()}
		if err != nil {
			attrs = append(attrs, "error", err)
		}
		s.opts.Logger.Info("session closed", attrs...)
	}
	return err
}

func (s *Server) forget(ss *session) {
	s.mu.Lock()
	if s.sessions[ss.id] == ss {
		delete(s.sessions, ss.id)
	}
	if ss.openKey != "" && s.byKey[ss.openKey] == ss {
		delete(s.byKey, ss.openKey)
	}
	s.mu.Unlock()
}

func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b[:])
}
