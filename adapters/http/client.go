package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// ClientOptions configure a Client.
type ClientOptions struct {
	// Token is sent as "Authorization: Bearer Token" when set.
	Token string
	// Timeout bounds one attempt of one request. Default 2 minutes.
	Timeout time.Duration
	// Attempts is how many times a request is tried when the network fails or the server
	// answers 429, 502, 503 or 504. Default 4; 1 disables retries.
	Attempts int
	// Backoff is the wait before the first retry; it doubles each retry up to MaxBackoff
	// (default 5 s), and each wait is drawn at random from its upper half (jitter).
	// Default 200 ms. A 429 or 503 answer's Retry-After (seconds, or an HTTP date) makes
	// the wait at least that long, but never longer than MaxBackoff.
	Backoff, MaxBackoff time.Duration
	// TLS configures https (nil: the system's roots).
	TLS *tls.Config
	// MaxResponse caps a response body in bytes. Default 1 GiB.
	MaxResponse int64
	// KeyFormatter, when set, turns the server's key format (its Reconcile-Key-Format
	// header) into the formatter the client's FormatKey uses; it returns nil for a format it
	// does not know. The CLI passes sql.KeyFormatterFor.
	KeyFormatter func(format string) reconcile.KeyFormatter
	// TokenSource says where Token came from ("RECONCILE_TOKEN", "?token_file=/etc/t"),
	// and TokenHelp how to give a token, for the message of a refused one (both optional).
	TokenSource, TokenHelp string
	// TimeoutHelp says how to raise Timeout, for the message of a request whose attempts
	// ran out of it (the CLI: "raise ?timeout= in the server's URL"). Optional.
	TimeoutHelp string
}

func (o ClientOptions) defaults() ClientOptions {
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	if o.Attempts <= 0 {
		o.Attempts = 4
	}
	if o.Backoff <= 0 {
		o.Backoff = 200 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.MaxResponse <= 0 {
		o.MaxResponse = 1 << 30
	}
	return o
}

// Client talks to one Server. It is a reconcile.Peer for one session at a time (Open
// starts a new session and closes the previous one), so
// reconcile.RunPeer(ctx, source, client, opts) runs a session against the server's
// endpoint; call Close afterwards to release the server's snapshot at once (RunPeer does
// not close its peer; the server's idle timeout would). It is not safe for concurrent use.
type Client struct {
	base string // scheme://host:port
	opts ClientOptions
	hc   *http.Client

	// Bytes on the connections, TLS and HTTP headers included.
	wireSent, wireRecv atomic.Int64
	// Bytes of the protocol's frames alone (bodies), for comparison with Local.
	frames     reconcile.Traffic
	valueBytes int64

	open  *reconcile.OpenRequest
	id    string
	seq   uint64
	stats merkle.ReadStats

	// wait sleeps between attempts (nil: a timer); tests replace it to see the waits.
	wait func(ctx context.Context, d time.Duration) error

	keyFormat atomic.Pointer[keyFormat] // the server's, once an answer carried it
	// versionFormat is the server's Reconcile-Version-Format, once an answer carried it.
	versionFormat atomic.Pointer[string]
	readOnly      atomic.Bool
}

// keyFormat is a server's key format and the formatter made of it (nil if unknown).
type keyFormat struct {
	format string
	f      reconcile.KeyFormatter
}

// FormatKey renders a key as the server's endpoint would (a SQL table's key columns),
// when the server describes its keys and ClientOptions.KeyFormatter knows the
// description; "" otherwise. It makes the client a reconcile.KeyFormatter, so sessions
// against it name rows in reports.
func (c *Client) FormatKey(k []byte) string {
	if kf := c.keyFormat.Load(); kf != nil && kf.f != nil {
		return kf.f.FormatKey(k)
	}
	return ""
}

// FormatVersion renders a version as the server's version format says
// (reconcile.FormatVersionAs): a timestamp version column's as its time. It makes the
// client a reconcile.VersionFormatter.
func (c *Client) FormatVersion(v uint64) string {
	if f := c.versionFormat.Load(); f != nil {
		return reconcile.FormatVersionAs(*f, v)
	}
	return ""
}

// ReadOnly reports whether the server said it refuses writes (HeaderReadOnly), on any
// answer so far. It makes the client a reconcile.ReadOnlyPeer.
func (c *Client) ReadOnly() bool { return c.readOnly.Load() }

// learnKeyFormat keeps the key and version formats an answer carries, and whether the
// server is read-only.
func (c *Client) learnKeyFormat(resp *http.Response) {
	c.readOnly.Store(resp.Header.Get(HeaderReadOnly) == "1")
	if vf := resp.Header.Get(HeaderVersionFormat); vf != "" {
		if old := c.versionFormat.Load(); old == nil || *old != vf {
			c.versionFormat.Store(&vf)
		}
	}
	format := resp.Header.Get(HeaderKeyFormat)
	if format == "" || c.opts.KeyFormatter == nil {
		return
	}
	if kf := c.keyFormat.Load(); kf != nil && kf.format == format {
		return
	}
	c.keyFormat.Store(&keyFormat{format: format, f: c.opts.KeyFormatter(format)})
}

// NewClient returns a client for the server at rawURL (http://host:port or
// https://host:port; no path, query or user info).
func NewClient(rawURL string, o ClientOptions) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("server URL %q: %v", rawURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("server URL %q: scheme must be http or https", rawURL)
	}
	if u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("server URL %q: want %s://host:port and nothing else", rawURL, u.Scheme)
	}
	c := &Client{base: u.Scheme + "://" + u.Host, opts: o.defaults()}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &countConn{Conn: conn, sent: &c.wireSent, recv: &c.wireRecv}, nil
		},
		TLSClientConfig:     c.opts.TLS,
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: 15 * time.Second,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}
	c.hc = &http.Client{Transport: tr}
	return c, nil
}

// countConn counts the bytes a connection moves.
type countConn struct {
	net.Conn
	sent, recv *atomic.Int64
}

func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.recv.Add(int64(n))
	return n, err
}

func (c *countConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.sent.Add(int64(n))
	return n, err
}

// fatalError is a failure no retry can mend.
type fatalError struct{ error }

// StatusError is a server's refusal: its status and its one-line message.
type StatusError struct {
	Status int
	Msg    string
	err    error // a sentinel it wraps, or nil
	// refused is 1 + the HeaderRefusedRow of a 422 (0: none).
	refused int
}

func (e *StatusError) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.Msg, e.Status) }
func (e *StatusError) Unwrap() error { return e.err }

// call is one request.
type call struct {
	what    string
	method  string
	path    string
	headers map[string]string
	body    []byte
}

// do sends c with retries for failures that say nothing reached the endpoint's answer:
// network errors, a cut-off response, 502, 503 and 504. Every request this client makes
// may be retried: opens carry an open key, rounds and applies a sequence number, and the
// server answers a repeat with the stored answer instead of doing the work again.
func (c *Client) do(ctx context.Context, cl call) (*http.Response, []byte, error) {
	var lastErr error
	var retryAfter time.Duration // the last answer's Retry-After
	for attempt := 0; attempt < c.opts.Attempts; attempt++ {
		if attempt > 0 {
			if err := c.sleep(ctx, attempt, retryAfter); err != nil {
				return nil, nil, fmt.Errorf("%s: %s %s%s: %w (after: %v)", cl.what, cl.method, c.base, cl.path, err, lastErr)
			}
		}
		resp, body, err := c.once(ctx, cl)
		if err != nil {
			var fe *fatalError
			if errors.As(err, &fe) {
				return nil, nil, fmt.Errorf("%s: %w", cl.what, fe.error)
			}
			var cv *tls.CertificateVerificationError
			if errors.As(err, &cv) { // a certificate does not fix itself
				hint := ""
				var ua x509.UnknownAuthorityError
				if errors.As(err, &ua) {
					hint = " (to trust a private CA or a self-signed certificate, point SSL_CERT_FILE at its PEM file)"
				}
				return nil, nil, fmt.Errorf("%s: %s %s%s: %w%s", cl.what, cl.method, c.base, cl.path, cv, hint)
			}
			if ctx.Err() != nil {
				return nil, nil, fmt.Errorf("%s: %s %s%s: %w", cl.what, cl.method, c.base, cl.path, ctxErr(ctx))
			}
			if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") { // no retry mends that
				return nil, nil, fmt.Errorf("%s: %s serves plain HTTP: write the URL with http://", cl.what, c.base)
			}
			lastErr = err
			continue
		}
		retryAfter = 0
		switch resp.StatusCode {
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
			fallthrough
		case http.StatusBadGateway, http.StatusGatewayTimeout:
			lastErr = fmt.Errorf("HTTP %d: %s", resp.StatusCode, oneLine(body))
			continue
		}
		if err := c.check(resp, body, cl.what); err != nil {
			return resp, nil, err
		}
		return resp, body, nil
	}
	hint := ""
	if errors.Is(lastErr, syscall.ECONNREFUSED) {
		hint = "; is `reconcile serve` running there?"
	}
	var ue *url.Error
	if errors.As(lastErr, &ue) {
		lastErr = ue.Err
	}
	return nil, nil, &unreachableError{fmt.Sprintf("%s: %s %s%s: %v (gave up after %d attempts%s)", cl.what, cl.method, c.base, cl.path, lastErr, c.opts.Attempts, hint)}
}

// unreachableError is the error of a request no attempt got an answer to: it wraps
// reconcile.ErrUnreachable, so that a session stops instead of blaming its rows.
type unreachableError struct{ msg string }

func (e *unreachableError) Error() string { return e.msg }
func (e *unreachableError) Unwrap() error { return reconcile.ErrUnreachable }

// sleep waits before the attempt-th retry: the jittered backoff, or the server's
// Retry-After when that is longer, never more than MaxBackoff; it returns early with
// ctx's error when ctx ends.
func (c *Client) sleep(ctx context.Context, attempt int, retryAfter time.Duration) error {
	d := c.opts.Backoff << (attempt - 1)
	if d > c.opts.MaxBackoff || d <= 0 {
		d = c.opts.MaxBackoff
	}
	d = d/2 + time.Duration(mrand.Int64N(int64(d/2)+1))
	if retryAfter > d {
		d = min(retryAfter, c.opts.MaxBackoff)
	}
	if c.wait != nil {
		return c.wait(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctxErr(ctx)
	case <-t.C:
		return nil
	}
}

// ctxErr says why the caller's ctx ended a request: cancelled (Ctrl-C), or the caller's
// own deadline, not this client's Timeout (whose expiry is an attemptTimeout and is
// retried). It wraps ctx.Err(), and names ctx's cause when it was given one.
func ctxErr(ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return fmt.Errorf("%w: %w", cause, err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("the caller's deadline passed before the server answered (the deadline of the whole call, not the timeout of one attempt): give the call more time: %w", err)
	}
	return err
}

// attemptTimeout is the cause of an attempt that ran out of ClientOptions.Timeout, or
// (stall) of a dump whose server sent nothing for that long: the message says which
// timeout it was and how to raise it. It wraps context.DeadlineExceeded.
type attemptTimeout struct {
	d     time.Duration
	help  string
	stall bool
}

func (e *attemptTimeout) Error() string {
	help := e.help
	if help == "" {
		help = "raise the client's timeout"
	}
	if e.stall {
		return fmt.Sprintf("the server sent nothing for %s: it stopped, or the network did; if it needs longer between pieces of a dump, %s", e.d, help)
	}
	return fmt.Sprintf("no answer within %s, the time one attempt of a request may take: if the server needs longer (an open over a large table, a big apply batch), %s", e.d, help)
}

func (e *attemptTimeout) Unwrap() error { return context.DeadlineExceeded }

// or is e when e ended ctx (made from parent, which has not ended), else err: a request's
// error says which of the client's timeouts cut it rather than "context canceled".
func (e *attemptTimeout) or(parent, ctx context.Context, err error) error {
	if parent.Err() == nil && context.Cause(ctx) == e {
		return e
	}
	return err
}

// parseRetryAfter reads a Retry-After header: a number of seconds, or an HTTP date
// (the wait until then, as of now). Absent, malformed or past: 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, 1<<20)) * time.Second // bounded before multiplying
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// once makes one attempt of cl, bounded by ClientOptions.Timeout; an attempt that ran
// out of it fails with an *attemptTimeout.
func (c *Client) once(ctx context.Context, cl call) (*http.Response, []byte, error) {
	timeout := &attemptTimeout{d: c.opts.Timeout, help: c.opts.TimeoutHelp}
	parent := ctx
	ctx, cancel := context.WithTimeoutCause(ctx, c.opts.Timeout, timeout)
	defer cancel()
	timedOut := func(err error) error { return timeout.or(parent, ctx, err) }
	var rd io.Reader
	if cl.body != nil {
		rd = bytes.NewReader(cl.body)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, c.base+cl.path, rd)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set(HeaderProtocol, strconv.Itoa(reconcile.ProtocolVersion))
	if cl.body != nil {
		req.Header.Set("Content-Type", frameType)
	}
	if c.opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.opts.Token)
	}
	for k, v := range cl.headers {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, timedOut(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.opts.MaxResponse+1))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the response: %w", timedOut(err))
	}
	if int64(len(body)) > c.opts.MaxResponse {
		return nil, nil, &fatalError{fmt.Errorf("the server's answer is over %d bytes", c.opts.MaxResponse)}
	}
	if resp.ContentLength >= 0 && int64(len(body)) != resp.ContentLength {
		return nil, nil, fmt.Errorf("response cut off after %d of %d bytes", len(body), resp.ContentLength)
	}
	return resp, body, nil
}

// check turns a response that is not 200 into an error that says what the server said.
func (c *Client) check(resp *http.Response, body []byte, what string) error {
	pv := resp.Header.Get(HeaderProtocol)
	if pv == "" {
		if resp.StatusCode == http.StatusBadRequest && strings.Contains(string(body), "HTTP request to an HTTPS server") {
			return &StatusError{Status: resp.StatusCode, err: reconcile.ErrSessionLost,
				Msg: fmt.Sprintf("%s: %s serves HTTPS: write the URL with https://", what, c.base)}
		}
		return &StatusError{Status: resp.StatusCode, err: reconcile.ErrSessionLost,
			Msg: fmt.Sprintf("%s: %s is not a reconcile server (no %s header in its answer: %s)", what, c.base, HeaderProtocol, oneLine(body))}
	}
	c.learnKeyFormat(resp)
	if pv != strconv.Itoa(reconcile.ProtocolVersion) {
		return &StatusError{Status: resp.StatusCode, err: errors.Join(errProtocol, reconcile.ErrSessionLost),
			Msg: fmt.Sprintf("%s: the server at %s speaks reconcile protocol %s and this client %d: run the same reconcile version on both sides", what, c.base, clip(pv), reconcile.ProtocolVersion)}
	}
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	msg := oneLine(body)
	if !strings.HasPrefix(msg, what+":") {
		msg = what + ": " + msg
	}
	e := &StatusError{Status: resp.StatusCode, Msg: msg}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		if c.opts.Token == "" {
			e.Msg = fmt.Sprintf("%s: the server at %s wants a token and none was given", what, c.base)
			if c.opts.TokenHelp != "" {
				e.Msg += ": " + c.opts.TokenHelp
			}
		} else {
			from := ""
			if c.opts.TokenSource != "" {
				from = " (from " + c.opts.TokenSource + ")"
			}
			e.Msg = fmt.Sprintf("%s: the server at %s refused the token: the one given%s is not the server's: check it against the server's --token-file", what, c.base, from)
		}
		e.err = reconcile.ErrSessionLost
	case http.StatusForbidden:
		e.err = reconcile.ErrReadOnly
	case http.StatusNotFound, http.StatusConflict:
		e.err = reconcile.ErrSessionLost
	case http.StatusUnprocessableEntity:
		if i, err := strconv.Atoi(resp.Header.Get(HeaderRefusedRow)); err == nil && i >= 0 && i < 1<<30 {
			e.refused = i + 1
		}
	}
	return e
}

// count renders n with its noun, singular for one: "1 change", "2 changes".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// oneLine renders an error body as one short line.
func oneLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 500 {
		s = s[:500] + "…"
	}
	if s == "" {
		return "(no message)"
	}
	return s
}

// Root returns the Info of a snapshot of the server's endpoint at now (0: the server's
// clock).
func (c *Client) Root(ctx context.Context, now int64) (reconcile.Info, error) {
	return c.root(ctx, now, nil)
}

// RootAsOf is reconcile.RootAsOf on the server's endpoint: the Info of a snapshot at now
// (0: the server's clock) whose Root is the digest of the cut at version asOf. A
// key-ordered endpoint is refused (HTTP 422; the error wraps reconcile.ErrNoVersionCut).
func (c *Client) RootAsOf(ctx context.Context, now int64, asOf uint64) (reconcile.Info, error) {
	return c.root(ctx, now, &asOf)
}

func (c *Client) root(ctx context.Context, now int64, asOf *uint64) (reconcile.Info, error) {
	q := url.Values{}
	if now != 0 {
		q.Set("now", strconv.FormatInt(now, 10))
	}
	if asOf != nil {
		q.Set("as_of", strconv.FormatUint(*asOf, 10))
	}
	path := pathRoot
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	_, body, err := c.do(ctx, call{what: "root", method: http.MethodGet, path: path})
	var se *StatusError
	if asOf != nil && errors.As(err, &se) && se.Status == http.StatusUnprocessableEntity {
		return reconcile.Info{}, fmt.Errorf("%w (%w)", err, reconcile.ErrNoVersionCut)
	}
	if err != nil {
		return reconcile.Info{}, err
	}
	r, err := reconcile.DecodeOpenResponse(&reconcile.OpenRequest{}, body)
	if err != nil {
		return reconcile.Info{}, fmt.Errorf("root: the server's answer is malformed: %w", err)
	}
	if r.Protocol != reconcile.ProtocolVersion {
		return reconcile.Info{}, fmt.Errorf("root: the server speaks reconcile protocol %d and this client %d: %w", r.Protocol, reconcile.ProtocolVersion, errProtocol)
	}
	return reconcile.Info{Ordering: r.Ordering, Schema: r.Schema, Root: r.Root}, nil
}

// Dump copies the server's rows (GET /v1/dump) to w as they arrive. It is tried once:
// what was copied cannot be taken back. A dump may take as long as it keeps coming, but
// fails when the server sends nothing for ClientOptions.Timeout (the answer's start
// included). A stream cut short by the server or the network is an error.
func (c *Client) Dump(ctx context.Context, w io.Writer) error {
	// A dump may take far longer than one attempt's Timeout, but not a stall that long: a
	// server that stops sending (a partition, a hung machine) would hold the command for
	// ever. The clock restarts at each piece of the stream.
	parent := ctx
	stalled := &attemptTimeout{d: c.opts.Timeout, help: c.opts.TimeoutHelp, stall: true}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	clock := time.AfterFunc(c.opts.Timeout, func() { cancel(stalled) })
	defer clock.Stop()
	failed := func(err error) error { return stalled.or(parent, ctx, err) }
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+pathDump, nil)
	if err != nil {
		return err
	}
	req.Header.Set(HeaderProtocol, strconv.Itoa(reconcile.ProtocolVersion))
	if c.opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.opts.Token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("dump: %w", failed(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get(HeaderProtocol) != strconv.Itoa(reconcile.ProtocolVersion) {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if err := c.check(resp, body, "dump"); err != nil {
			return err
		}
		return fmt.Errorf("dump: HTTP %d: %s", resp.StatusCode, oneLine(body))
	}
	n, err := io.Copy(w, &progressReader{r: resp.Body, progress: func() { clock.Reset(c.opts.Timeout) }})
	if err != nil {
		return fmt.Errorf("dump: the stream broke after %d bytes: %w", n, failed(err))
	}
	return nil
}

// progressReader calls progress after each read that returned bytes.
type progressReader struct {
	r        io.Reader
	progress func()
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.progress()
	}
	return n, err
}

// Load sends body (the JSON lines of `reconcile load`) to the server's POST /v1/load and
// returns its answer (the CLI's: {"upserted": N, "deleted": M}). The server checks every
// line before it writes any; a load is idempotent, so it is retried like other requests.
func (c *Client) Load(ctx context.Context, body []byte) ([]byte, error) {
	_, out, err := c.do(ctx, call{what: "load", method: http.MethodPost, path: pathLoad, body: body})
	var se *StatusError
	if errors.As(err, &se) && se.Status == http.StatusRequestEntityTooLarge {
		// A load is one request, all or nothing: it cannot be halved as apply batches are.
		return nil, fmt.Errorf("load: the input (%d bytes) is over the server's --max-body; a load is one request, written all or nothing: raise reconcile serve's --max-body above it, or split the input into smaller loads (nothing was written)", len(body))
	}
	return out, err
}

// Open starts a session (closing this client's previous one).
func (c *Client) Open(ctx context.Context, req *reconcile.OpenRequest) (*reconcile.OpenResponse, error) {
	if c.id != "" {
		c.Close()
	}
	frame := reconcile.EncodeOpenRequest(req)
	var key [16]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, err
	}
	c.frames.Sent += int64(len(frame))
	resp, body, err := c.do(ctx, call{what: "open session", method: http.MethodPost, path: pathSessions,
		headers: map[string]string{HeaderOpenKey: hex.EncodeToString(key[:])}, body: frame})
	if err != nil {
		return nil, err
	}
	c.frames.Received += int64(len(body))
	id, err := parseSessionID(resp.Header.Get(HeaderSession))
	if err != nil {
		return nil, fmt.Errorf("open session: the server's answer has no valid %s header: %v", HeaderSession, err)
	}
	out, err := reconcile.DecodeOpenResponse(req, body)
	if err != nil {
		return nil, fmt.Errorf("open session: the server's answer is malformed: %w", err)
	}
	c.open, c.id, c.seq = req, id, 0
	c.readStats(resp)
	return out, nil
}

func (c *Client) readStats(resp *http.Response) {
	if n, err := strconv.ParseInt(resp.Header.Get(HeaderEntriesRead), 10, 64); err == nil {
		c.stats.Entries = n
	}
	if n, err := strconv.ParseInt(resp.Header.Get(HeaderNodesRead), 10, 64); err == nil {
		c.stats.Nodes = n
	}
}

func (c *Client) sessionCall(ctx context.Context, what string, frame []byte) ([]byte, error) {
	if c.id == "" {
		return nil, fmt.Errorf("%s: session not open", what)
	}
	c.seq++
	c.frames.Sent += int64(len(frame))
	resp, body, err := c.do(ctx, call{what: what, method: http.MethodPost,
		path:    pathSessions + "/" + c.id + "/" + what,
		headers: map[string]string{HeaderSeq: strconv.FormatUint(c.seq, 10)}, body: frame})
	if err != nil {
		return nil, err
	}
	c.frames.Received += int64(len(body))
	c.readStats(resp)
	return body, nil
}

// Round answers one round; a retry of it is answered from the server's stored answer.
func (c *Client) Round(ctx context.Context, req *reconcile.RoundRequest) (*reconcile.RoundResponse, error) {
	if c.open == nil {
		return nil, errors.New("round: session not open")
	}
	body, err := c.sessionCall(ctx, "round", reconcile.EncodeRoundRequest(c.open, req))
	if err != nil {
		return nil, err
	}
	out, err := reconcile.DecodeRoundResponse(c.open, req, body)
	if err != nil {
		return nil, fmt.Errorf("round: the server's answer is malformed: %w", err)
	}
	return out, nil
}

// Apply writes one batch on the server's endpoint. A retry after a lost answer gets the
// server's stored outcome, so a batch is never applied twice; if the server lost the
// session meanwhile, the error says the batch's fate is unknown (the next run settles it:
// writes are conditional).
func (c *Client) Apply(ctx context.Context, req *reconcile.ApplyRequest) (*reconcile.ApplyResponse, error) {
	if c.open == nil {
		return nil, errors.New("apply: session not open")
	}
	frame, values := reconcile.EncodeApplyRequest(c.open, req)
	body, err := c.sessionCall(ctx, "apply", frame)
	if err == nil {
		// Only an accepted batch surely went whole on the wire: a refused one (413 for a
		// body over the server's limit) may have been cut short, and counting its values
		// would report more value bytes than bytes sent.
		c.valueBytes += values
	}
	if err != nil {
		var se *StatusError
		if errors.As(err, &se) && se.Status == http.StatusNotFound {
			return nil, fmt.Errorf("%w; a batch of %s may or may not have been written: run the sync again (its writes are conditional, so it repairs what is left)", err, count(len(req.Changes), "change"))
		}
		return nil, refusedRow(err, len(req.Changes))
	}
	out, err := reconcile.DecodeApplyResponse(body, len(req.Changes))
	if err != nil {
		return nil, fmt.Errorf("apply: the server's answer is malformed: %w", err)
	}
	return out, nil
}

// Rows reads rows of the server session's snapshot (a sync whose source is the server).
// It writes nothing; a retry is answered from the server's stored answer.
func (c *Client) Rows(ctx context.Context, req *reconcile.RowsRequest) (*reconcile.RowsResponse, error) {
	if c.open == nil {
		return nil, errors.New("rows: session not open")
	}
	body, err := c.sessionCall(ctx, "rows", reconcile.EncodeRowsRequest(req))
	if err != nil {
		return nil, refusedRow(err, len(req.Keys)) // a row the server cannot read
	}
	out, err := reconcile.DecodeRowsResponse(req, body)
	if err != nil {
		return nil, fmt.Errorf("rows: the server's answer is malformed: %w", err)
	}
	for _, r := range out.Rows {
		c.valueBytes += int64(len(r.Value))
	}
	return out, nil
}

// refusedRow is err as a *reconcile.RowRefusedError where the server refused one of the
// request's n rows (a 422 naming it in HeaderRefusedRow), else err.
func refusedRow(err error, n int) error {
	var se *StatusError
	if errors.As(err, &se) && se.refused > 0 && se.refused <= n {
		return &reconcile.RowRefusedError{Index: se.refused - 1, Err: err}
	}
	return err
}

// Traffic reports the bytes this client's connections moved, TLS and HTTP headers
// included: the real bytes on the wire.
func (c *Client) Traffic() reconcile.Traffic {
	return reconcile.Traffic{Sent: c.wireSent.Load(), Received: c.wireRecv.Load(), ValueBytes: c.valueBytes}
}

// FrameTraffic reports the bytes of the protocol's frames alone, as reconcile.Local
// counts them.
func (c *Client) FrameTraffic() reconcile.Traffic {
	t := c.frames
	t.ValueBytes = c.valueBytes
	return t
}

// ReadStats reports what the server's snapshot has read, as of the last answer.
func (c *Client) ReadStats() merkle.ReadStats { return c.stats }

// Close ends the session on the server (its snapshot is released); the client stays
// usable for another session. Errors are not returned: the server's idle timeout closes
// a session whose close was lost.
func (c *Client) Close() error {
	if c.id == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl := call{what: "close session", method: http.MethodDelete, path: pathSessions + "/" + c.id}
	c.id, c.open, c.seq = "", nil, 0
	c.once(ctx, cl)
	return nil
}

// CloseIdleConnections releases the client's idle connections.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

var _ reconcile.Peer = (*Client)(nil)
