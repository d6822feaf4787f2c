package remote

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// Relayed sessions: a session between two servers, driven by a client that can reach
// both. The source's server runs the session (reconcile.RunPeer over its own endpoint);
// its peer is the client, which hands each of the session's requests to the target's
// server and the answer back. So the source cuts with its own index as in any session,
// the frames are the protocol's, a round costs one exchange with each server, and only
// the client needs to reach both.
//
//	POST /v1/relays           body: JSON relayOptions   → the session's first call
//	POST /v1/relays/{id}      body: the answer to the last call (Reconcile-Seq) → the next call
//	DELETE /v1/relays/{id}                              → 204; the session stops
//
// A call is a byte (its kind: 'O' open, 'R' round, 'A' apply, 'W' rows, 'D' done) then
// the request frame, or for 'D' the JSON relayResult. An answer is a byte 0 then
// uvarint(entries read) uvarint(nodes read) and the response frame, or a byte 1, a byte of
// flags (1: the target refuses writes, 2: the target lost the session, 4: the client
// stopped, 8: the target refuses one row of an apply batch for what it is, and
// uvarint(its index in the batch) follows) and a message.

const pathRelays = "/v1/relays"

// HeaderRelay carries the id of a relayed session on the answer to its start.
const HeaderRelay = "Reconcile-Relay"

const (
	callOpen  = 'O'
	callRound = 'R'
	callApply = 'A'
	callRows  = 'W'
	callDone  = 'D'
)

// relayOptions are the session options a client sends to start a relayed session.
type relayOptions struct {
	Mode             string `json:"mode"`
	DryRun           bool   `json:"dry_run,omitempty"`
	MaxDelete        string `json:"max_delete,omitempty"`
	Force            bool   `json:"force,omitempty"`
	Now              int64  `json:"now"`
	Fanout           int    `json:"fanout,omitempty"`
	LeafMax          int    `json:"leaf_max,omitempty"`
	FingerprintBytes int    `json:"fingerprint_bytes,omitempty"`
	BatchRows        int    `json:"batch_rows,omitempty"`
	MaxBatchRows     int    `json:"max_batch_rows,omitempty"`
	BatchBytes       int    `json:"batch_bytes,omitempty"`
	Attempts         int    `json:"attempts,omitempty"`
	MaxDifferences   int    `json:"max_differences,omitempty"`
}

func relayOptionsOf(o reconcile.Options) relayOptions {
	return relayOptions{Mode: string(o.Mode), DryRun: o.DryRun, MaxDelete: o.MaxDelete.String(), Force: o.Force,
		Now: o.Now, Fanout: o.Fanout, LeafMax: o.LeafMax, FingerprintBytes: o.FingerprintBytes,
		BatchRows: o.BatchRows, MaxBatchRows: o.MaxBatchRows, BatchBytes: o.BatchBytes, Attempts: o.Attempts,
		MaxDifferences: o.MaxDifferences}
}

func (r relayOptions) options() (reconcile.Options, error) {
	o := reconcile.Options{Mode: reconcile.Mode(r.Mode), DryRun: r.DryRun, Force: r.Force, Now: r.Now,
		Fanout: r.Fanout, LeafMax: r.LeafMax, FingerprintBytes: r.FingerprintBytes,
		BatchRows: r.BatchRows, MaxBatchRows: r.MaxBatchRows, BatchBytes: r.BatchBytes, Attempts: r.Attempts,
		MaxDifferences: r.MaxDifferences}
	if o.Mode == "" {
		o.Mode = reconcile.Diff
	}
	if o.Mode != reconcile.Diff && o.Mode != reconcile.Mirror {
		return o, fmt.Errorf("mode %q: want diff or mirror", r.Mode)
	}
	if r.Now <= 0 {
		return o, errors.New("now must be set (unix ns), so that both servers see the same rows as live")
	}
	if r.MaxDelete != "" {
		l, err := reconcile.ParseDeleteLimit(r.MaxDelete)
		if err != nil {
			return o, err
		}
		o.MaxDelete = l
	}
	return o, nil
}

// relayResult ends a relayed session: its report, and its error if it failed.
type relayResult struct {
	Report *reconcile.Report `json:"report"`
	Error  string            `json:"error,omitempty"`
	// Kind names an error the client can act on: "delete_guard", "read_only".
	Kind string `json:"kind,omitempty"`
}

// relayCall is one request of the relayed session, for the client to carry.
type relayCall struct {
	kind  byte
	frame []byte
}

// relayAnswer is the target's answer to a call, as the client brought it back.
type relayAnswer struct {
	frame []byte
	stats merkle.ReadStats
	err   error
}

// relay is a relayed session on the source's server.
type relay struct {
	id        string
	key       string          // the client's open key ("" for none)
	startHash [32]byte        // of the start request's body
	ctx       context.Context // the session's: done when the relay is dropped
	cancel    context.CancelFunc
	calls     chan relayCall
	answers   chan relayAnswer

	mu       sync.Mutex // serializes the client's requests
	lastSeq  uint64
	lastHash [32]byte
	last     []byte // the last call sent, for a retry
	timer    *time.Timer
}

// relayPeer is the session's Peer on the source's server: every call goes out through
// the client to the target's server.
type relayPeer struct {
	r       *relay
	open    *reconcile.OpenRequest
	traffic reconcile.Traffic
	stats   merkle.ReadStats
}

func (p *relayPeer) call(ctx context.Context, kind byte, frame []byte) ([]byte, error) {
	p.traffic.Sent += int64(len(frame))
	select {
	case p.r.calls <- relayCall{kind: kind, frame: frame}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case a := <-p.r.answers:
		if a.err != nil {
			return nil, a.err
		}
		p.stats = a.stats
		p.traffic.Received += int64(len(a.frame))
		return a.frame, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *relayPeer) Open(ctx context.Context, req *reconcile.OpenRequest) (*reconcile.OpenResponse, error) {
	b, err := p.call(ctx, callOpen, reconcile.EncodeOpenRequest(req))
	if err != nil {
		return nil, err
	}
	p.open = req
	return reconcile.DecodeOpenResponse(req, b)
}

func (p *relayPeer) Round(ctx context.Context, req *reconcile.RoundRequest) (*reconcile.RoundResponse, error) {
	b, err := p.call(ctx, callRound, reconcile.EncodeRoundRequest(p.open, req))
	if err != nil {
		return nil, err
	}
	return reconcile.DecodeRoundResponse(p.open, req, b)
}

func (p *relayPeer) Apply(ctx context.Context, req *reconcile.ApplyRequest) (*reconcile.ApplyResponse, error) {
	frame, values := reconcile.EncodeApplyRequest(p.open, req)
	p.traffic.ValueBytes += values
	b, err := p.call(ctx, callApply, frame)
	if err != nil {
		return nil, err
	}
	return reconcile.DecodeApplyResponse(b, len(req.Changes))
}

func (p *relayPeer) Rows(ctx context.Context, req *reconcile.RowsRequest) (*reconcile.RowsResponse, error) {
	b, err := p.call(ctx, callRows, reconcile.EncodeRowsRequest(req))
	if err != nil {
		return nil, err
	}
	return reconcile.DecodeRowsResponse(req, b)
}

func (p *relayPeer) Traffic() reconcile.Traffic  { return p.traffic }
func (p *relayPeer) ReadStats() merkle.ReadStats { return p.stats }
func (p *relayPeer) Close() error                { return nil }

// expired is the idle timer's action: the client stopped carrying calls.
func (r *relay) expired(s *Server) func() { return func() { s.dropRelay(r) } }

func relayEnvelope(kind byte, payload []byte) []byte { return append([]byte{kind}, payload...) }

// handleRelayStart starts a relayed session and answers its first call.
func (s *Server) handleRelayStart(w http.ResponseWriter, r *http.Request) {
	key, err := parseOpenKey(r.Header.Get(HeaderOpenKey))
	if err != nil {
		httpError(w, http.StatusBadRequest, "relay: %v", err)
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	// A known open key is answered before the options are decoded, as an open's is.
	s.mu.Lock()
	prev := s.relayKeys[key]
	s.mu.Unlock()
	if key != "" && prev != nil {
		s.replayRelayStart(w, prev, sha256.Sum256(body))
		return
	}
	var ro relayOptions
	if err := json.Unmarshal(body, &ro); err != nil {
		httpError(w, http.StatusBadRequest, "relay: options are not JSON: %v", err)
		return
	}
	opts, err := ro.options()
	if err != nil {
		httpError(w, http.StatusBadRequest, "relay: %v", err)
		return
	}
	s.mu.Lock()
	if prev := s.relayKeys[key]; key != "" && prev != nil {
		s.mu.Unlock()
		s.replayRelayStart(w, prev, sha256.Sum256(body))
		return
	}
	if s.closed || len(s.sessions)+len(s.relays) >= s.opts.MaxSessions {
		s.mu.Unlock()
		w.Header().Set("Retry-After", "5")
		httpError(w, http.StatusServiceUnavailable, "relay: too many open sessions, or the server is shutting down")
		return
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	rl := &relay{id: newID(), key: key, startHash: sha256.Sum256(body), ctx: ctx, cancel: cancel,
		calls: make(chan relayCall), answers: make(chan relayAnswer)}
	// The idle timer runs only while a call is out with the client (see nextCall).
	rl.timer = time.AfterFunc(time.Hour, rl.expired(s))
	rl.timer.Stop()
	s.relays[rl.id] = rl
	if key != "" {
		s.relayKeys[key] = rl
	}
	s.relaysRunning.Add(1)
	s.mu.Unlock()

	go func() {
		defer s.relaysRunning.Done()
		peer := &relayPeer{r: rl}
		rep, err := reconcile.RunPeer(ctx, s.ep, peer, opts)
		res := relayResult{Report: rep}
		if err != nil {
			res.Error = err.Error()
			switch {
			case errors.Is(err, reconcile.ErrDeleteGuard):
				res.Kind = "delete_guard"
			case errors.Is(err, reconcile.ErrStopped):
				res.Kind = "stopped"
			case errors.Is(err, reconcile.ErrReadOnly):
				res.Kind = "read_only"
			}
		}
		b, _ := json.Marshal(res)
		select {
		case rl.calls <- relayCall{kind: callDone, frame: b}:
		case <-ctx.Done():
		}
	}()

	rl.mu.Lock()
	defer rl.mu.Unlock()
	next, ok := s.nextCall(w, rl)
	if !ok {
		return
	}
	w.Header().Set(HeaderRelay, rl.id)
	writeFrame(w, next)
}

// replayRelayStart answers a retried start (same open key) with the relay's first call,
// so that a lost answer does not start a second session.
func (s *Server) replayRelayStart(w http.ResponseWriter, rl *relay, hash [32]byte) {
	rl.mu.Lock() // held by the first start until its first call is out
	defer rl.mu.Unlock()
	switch {
	case hash != rl.startHash:
		httpError(w, http.StatusConflict, "relay: open key reused for different options")
	case rl.lastSeq != 0 || len(rl.last) == 0:
		httpError(w, http.StatusConflict, "relay: this relay has moved past its start (or failed to start); run the command again")
	default:
		w.Header().Set(HeaderRelay, rl.id)
		writeFrame(w, rl.last)
	}
}

// relayIdle is how long a relay waits for its client to come back with a call's answer:
// the idle timeout, plus what the client may spend on the target (one request's work).
func (s *Server) relayIdle() time.Duration { return s.opts.IdleTimeout + s.opts.RequestTimeout }

// nextCall waits for the session's next call; on failure it has answered.
func (s *Server) nextCall(w http.ResponseWriter, rl *relay) ([]byte, bool) {
	deadline := time.NewTimer(s.opts.RequestTimeout)
	defer deadline.Stop()
	select {
	case c := <-rl.calls:
		rl.last = relayEnvelope(c.kind, c.frame)
		rl.timer.Reset(s.relayIdle())
		return rl.last, true
	case <-rl.ctx.Done():
		httpError(w, http.StatusNotFound, "relay: the session ended (its client did not come back for %s, or it was stopped)", s.relayIdle())
	case <-deadline.C:
		s.dropRelay(rl)
		httpError(w, http.StatusInternalServerError, "relay: the session made no request for %s", s.opts.RequestTimeout)
	}
	return nil, false
}

// handleRelayAnswer hands the target's answer to the session and answers its next call.
func (s *Server) handleRelayAnswer(w http.ResponseWriter, r *http.Request) {
	id, err := parseSessionID(r.PathValue("id"))
	if err != nil {
		httpError(w, http.StatusBadRequest, "relay: %v", err)
		return
	}
	seq, err := parseSeq(r.Header.Get(HeaderSeq))
	if err != nil {
		httpError(w, http.StatusBadRequest, "relay: %v", err)
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	rl := s.relays[id]
	s.mu.Unlock()
	if rl == nil {
		httpError(w, http.StatusNotFound, "relay: session %s is not open on this server: it ended, its client did not come back for %s, or the server restarted; run the command again", id, s.relayIdle())
		return
	}
	rl.timer.Stop() // the client is back: the relay is not idle while it works
	rl.mu.Lock()
	defer rl.mu.Unlock()
	hash := sha256.Sum256(body)
	switch {
	case seq == rl.lastSeq && hash == rl.lastHash:
		writeFrame(w, rl.last) // a retry: the same next call, the answer not delivered twice
		return
	case seq <= rl.lastSeq:
		httpError(w, http.StatusConflict, "relay: answer %d out of order (the last one was %d)", seq, rl.lastSeq)
		return
	case len(rl.last) > 0 && rl.last[0] == callDone:
		httpError(w, http.StatusConflict, "relay: the session has ended; nothing is waiting for an answer")
		return
	}
	a, err := decodeRelayAnswer(body)
	if err != nil {
		httpError(w, http.StatusBadRequest, "relay: %v", err)
		return
	}
	ctx := rl.ctx
	select {
	case rl.answers <- a:
	case <-ctx.Done():
		httpError(w, http.StatusNotFound, "relay: the session ended")
		return
	}
	rl.lastSeq, rl.lastHash = seq, hash
	if next, ok := s.nextCall(w, rl); ok {
		writeFrame(w, next)
	}
}

func (s *Server) handleRelayClose(w http.ResponseWriter, r *http.Request) {
	id, err := parseSessionID(r.PathValue("id"))
	if err != nil {
		httpError(w, http.StatusBadRequest, "relay: %v", err)
		return
	}
	s.mu.Lock()
	rl := s.relays[id]
	s.mu.Unlock()
	if rl != nil {
		s.dropRelay(rl)
	}
	w.WriteHeader(http.StatusNoContent)
}

// dropRelay stops a relayed session and forgets it.
func (s *Server) dropRelay(rl *relay) {
	rl.cancel()
	rl.timer.Stop()
	s.mu.Lock()
	if s.relays[rl.id] == rl {
		delete(s.relays, rl.id)
	}
	if rl.key != "" && s.relayKeys[rl.key] == rl {
		delete(s.relayKeys, rl.key)
	}
	s.mu.Unlock()
}

func encodeRelayAnswer(frame []byte, stats merkle.ReadStats, err error) []byte {
	if err != nil {
		var flags byte
		if errors.Is(err, reconcile.ErrReadOnly) {
			flags |= 1
		}
		if errors.Is(err, reconcile.ErrSessionLost) || errors.Is(err, reconcile.ErrUnreachable) {
			// A target no attempt reached cannot take the session's next call either:
			// the session stops rather than halving batches and quarantining rows.
			flags |= 2
		}
		if errors.Is(err, reconcile.ErrStopped) {
			flags |= 4
		}
		var refused *reconcile.RowRefusedError
		if errors.As(err, &refused) && refused.Index >= 0 {
			// The target refuses one row for what it is: its index follows the flags.
			b := binary.AppendUvarint([]byte{1, flags | 8}, uint64(refused.Index))
			return append(b, err.Error()...)
		}
		return append([]byte{1, flags}, err.Error()...)
	}
	b := []byte{0}
	b = binary.AppendUvarint(b, uint64(stats.Entries))
	b = binary.AppendUvarint(b, uint64(stats.Nodes))
	return append(b, frame...)
}

// relayTargetError is the target's error as the relay carries it.
type relayTargetError struct {
	msg  string
	kind []error
}

func (e *relayTargetError) Error() string   { return e.msg }
func (e *relayTargetError) Unwrap() []error { return e.kind }

func decodeRelayAnswer(b []byte) (relayAnswer, error) {
	if len(b) == 0 {
		return relayAnswer{}, errors.New("empty answer")
	}
	switch b[0] {
	case 0:
		e, n := binary.Uvarint(b[1:])
		if n <= 0 {
			return relayAnswer{}, errors.New("answer: bad read count")
		}
		nd, m := binary.Uvarint(b[1+n:])
		if m <= 0 || e > 1<<62 || nd > 1<<62 {
			return relayAnswer{}, errors.New("answer: bad read count")
		}
		return relayAnswer{frame: b[1+n+m:], stats: merkle.ReadStats{Entries: int64(e), Nodes: int64(nd)}}, nil
	case 1:
		if len(b) < 2 || b[1]&^15 != 0 {
			return relayAnswer{}, errors.New("answer: bad error flags")
		}
		msg, refused := b[2:], -1
		if b[1]&8 != 0 {
			i, n := binary.Uvarint(msg)
			if n <= 0 || i >= 1<<30 {
				return relayAnswer{}, errors.New("answer: bad refused row index")
			}
			msg, refused = msg[n:], int(i)
		}
		// The target's own message: what a quarantined row failed with, what to change.
		te := &relayTargetError{msg: "target: " + clipTo(string(msg), maxRelayMessage)}
		if b[1]&4 != 0 {
			// The client was told to stop: no request may follow, the session ends.
			te.msg = "the client stopped the session"
			te.kind = append(te.kind, reconcile.ErrStopped, reconcile.ErrSessionLost)
		}
		if b[1]&1 != 0 {
			te.kind = append(te.kind, reconcile.ErrReadOnly)
		}
		if b[1]&2 != 0 {
			te.kind = append(te.kind, reconcile.ErrSessionLost)
		}
		if refused >= 0 {
			return relayAnswer{err: &reconcile.RowRefusedError{Index: refused, Err: te}}, nil
		}
		return relayAnswer{err: te}, nil
	}
	return relayAnswer{}, fmt.Errorf("answer: unknown kind %d", b[0])
}

// relayError is a relayed session's error, as the source's server reported it.
type relayError struct {
	msg  string
	kind error
}

func (e *relayError) Error() string { return e.msg }
func (e *relayError) Unwrap() error { return e.kind }

// Relay runs a session from this client's server (the source) to target's server: the
// source's server runs the session, and this client carries each of its requests to the
// target and the answers back (see the top of relay.go). opts.Progress is not called.
// The report is the source server's, with the traffic of this client's connections to
// both servers, and after a sync that wrote, the target's root read again. An error
// wraps reconcile.ErrDeleteGuard for a refused sync. When the relay fails after it
// started without the source's server reporting the session's end (that server stopped
// answering, say), the report is this client's own account: the rows the target said
// it upserted and deleted in the apply batches this client carried (each batch whole),
// and the traffic; its other counts are zero.
func (c *Client) Relay(ctx context.Context, target *Client, opts reconcile.Options) (*reconcile.Report, error) {
	if opts.Resolve != nil {
		return nil, errors.New("relay: a session between two servers runs on the source's server, which cannot call Options.Resolve: run it next to one of the endpoints")
	}
	if opts.Now == 0 {
		opts.Now = time.Now().UnixNano()
	}
	body, err := json.Marshal(relayOptionsOf(opts))
	if err != nil {
		return nil, err
	}
	var key [16]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, err
	}
	resp, next, err := c.do(ctx, call{what: "relay", method: http.MethodPost, path: pathRelays, body: body,
		headers: map[string]string{HeaderOpenKey: hex.EncodeToString(key[:])}})
	if err != nil {
		return nil, err
	}
	id, err := parseSessionID(resp.Header.Get(HeaderRelay))
	if err != nil {
		return nil, fmt.Errorf("relay: the source's server answered no session: %v", err)
	}
	s0, t0 := c.Traffic(), target.Traffic()
	// written counts what the target wrote, from the answers carried to the source, for
	// a failure that leaves no report of the source's.
	written := &reconcile.Report{Mode: opts.Mode, DryRun: opts.DryRun}
	if written.Mode == "" {
		written.Mode = reconcile.Diff
	}
	// inDoubt is the size of the apply batch whose answer the target did not give (it
	// may have committed it): the source's session ends on it, and if its report never
	// comes, this client's error says so.
	inDoubt := 0
	failed := func(err error) (*reconcile.Report, error) {
		s1, t1 := c.Traffic(), target.Traffic()
		written.BytesSent = (s1.Sent - s0.Sent) + (t1.Sent - t0.Sent)
		written.BytesReceived = (s1.Received - s0.Received) + (t1.Received - t0.Received)
		var d *reconcile.InDoubtError
		if inDoubt > 0 && !errors.As(err, &d) {
			err = &reconcile.InDoubtError{Rows: inDoubt, Err: err}
		}
		return written, err
	}
	defer target.Close()
	// Forget the session on the source's server (and stop it, if it has not ended).
	defer c.once(context.WithoutCancel(ctx), call{what: "close relay", method: http.MethodDelete, path: pathRelays + "/" + id})
	var open *reconcile.OpenRequest
	for seq := uint64(1); ; seq++ {
		if len(next) == 0 {
			return failed(errors.New("relay: the source's server sent an empty call"))
		}
		kind, frame := next[0], next[1:]
		var answer []byte
		switch kind {
		case callDone:
			var res relayResult
			if err := json.Unmarshal(frame, &res); err != nil || res.Report == nil {
				return failed(fmt.Errorf("relay: the source's server sent a malformed result: %v", err))
			}
			rep := res.Report
			s1, t1 := c.Traffic(), target.Traffic()
			rep.BytesSent = (s1.Sent - s0.Sent) + (t1.Sent - t0.Sent)
			rep.BytesReceived = (s1.Received - s0.Received) + (t1.Received - t0.Received)
			if res.Error != "" {
				e := &relayError{msg: res.Error}
				switch res.Kind {
				case "delete_guard":
					e.kind = reconcile.ErrDeleteGuard
				case "stopped":
					e.kind = reconcile.ErrStopped
				case "read_only":
					e.kind = reconcile.ErrReadOnly
				}
				return rep, e
			}
			err := rep.ReadRootAfter(func() (reconcile.Info, error) { return target.Root(ctx, opts.Now) })
			return rep, err
		case callOpen, callRound, callApply, callRows:
			if stopped(opts.Stop) {
				// Between calls: the session on the source's server ends at once, with
				// what it wrote so far (Options.Stop's contract).
				answer = encodeRelayAnswer(nil, target.ReadStats(), reconcile.ErrStopped)
				break
			}
			answer, err = c.relayCall(ctx, target, &open, kind, frame, opts.Mode == reconcile.Mirror && !opts.DryRun, written, &inDoubt)
			if err != nil {
				return failed(err)
			}
		default:
			return failed(fmt.Errorf("relay: the source's server sent an unknown call %q", kind))
		}
		_, next, err = c.do(ctx, call{what: "relay", method: http.MethodPost, path: pathRelays + "/" + id,
			headers: map[string]string{HeaderSeq: strconv.FormatUint(seq, 10)}, body: answer})
		if errors.Is(err, reconcile.ErrUnreachable) {
			// err names the request ("relay: POST …: … (gave up after N attempts)").
			return failed(&relayError{msg: "relay: the source's server stopped answering: " + strings.TrimPrefix(err.Error(), "relay: "), kind: err})
		}
		if err != nil {
			return failed(err)
		}
	}
}

// stopped reports whether stop is closed (nil: never).
func stopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

// relayCall carries one call of the relayed session to the target and returns the
// answer to post back (the target's frame, or its error), adding the rows an apply
// wrote to written's Upserted and Deleted, and setting inDoubt to the rows of an apply
// whose answer was lost. Only a malformed call is an error of the
// relay itself. When the session writes (a mirror that is no dry run) and
// the target's server says it is read-only as it answers the open, the open's answer is
// that refusal, so the session stops before its descent.
func (c *Client) relayCall(ctx context.Context, target *Client, open **reconcile.OpenRequest, kind byte, frame []byte, writes bool, written *reconcile.Report, inDoubt *int) ([]byte, error) {
	switch kind {
	case callOpen:
		req, err := reconcile.DecodeOpenRequest(frame)
		if err != nil {
			return nil, fmt.Errorf("relay: the source's server sent a malformed open: %w", err)
		}
		*open = req
		r, err := target.Open(ctx, req)
		if err == nil && writes && target.ReadOnly() {
			target.Close() // the target's session: no call follows
			err = fmt.Errorf("the target refuses writes (%w): a mirror sync cannot write to it; use it as a diff target or a sync source; nothing was written", reconcile.ErrReadOnly)
		}
		var out []byte
		if err == nil {
			out = reconcile.EncodeOpenResponse(req, r)
		}
		return encodeRelayAnswer(out, target.ReadStats(), err), nil
	}
	if *open == nil {
		return nil, errors.New("relay: the source's server sent a request before opening")
	}
	out, err := relayForward(ctx, target, *open, kind, frame, written, inDoubt)
	return encodeRelayAnswer(out, target.ReadStats(), err), nil
}

// relayForward carries one round, apply or rows request to the target; for an apply, it
// adds the rows the target wrote to written, or sets inDoubt to the batch's rows when
// the answer was lost (as the session itself counts a batch in doubt).
func relayForward(ctx context.Context, target *Client, open *reconcile.OpenRequest, kind byte, frame []byte, written *reconcile.Report, inDoubt *int) ([]byte, error) {
	switch kind {
	case callRound:
		req, err := reconcile.DecodeRoundRequest(open, frame)
		if err != nil {
			return nil, fmt.Errorf("relay: malformed round from the source's server: %w", err)
		}
		r, err := target.Round(ctx, req)
		if err != nil {
			return nil, err
		}
		return reconcile.EncodeRoundResponse(open, req, r), nil
	case callApply:
		req, err := reconcile.DecodeApplyRequest(frame)
		if err != nil {
			return nil, fmt.Errorf("relay: malformed apply from the source's server: %w", err)
		}
		r, err := target.Apply(ctx, req)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, reconcile.ErrSessionLost) || errors.Is(err, reconcile.ErrUnreachable) {
				*inDoubt = len(req.Changes)
			}
			return nil, err
		}
		for i, o := range r.Outcomes {
			switch {
			case o != reconcile.Applied:
			case req.Changes[i].Put != nil:
				written.Upserted++
			default:
				written.Deleted++
			}
		}
		return reconcile.EncodeApplyResponse(r), nil
	default:
		req, err := reconcile.DecodeRowsRequest(frame)
		if err != nil {
			return nil, fmt.Errorf("relay: malformed rows request from the source's server: %w", err)
		}
		r, err := target.Rows(ctx, req)
		if err != nil {
			return nil, err
		}
		out, _ := reconcile.EncodeRowsResponse(req, r)
		return out, nil
	}
}

func callDelete(path string) call {
	return call{what: "close relay", method: http.MethodDelete, path: path}
}

// maxRelayMessage bounds a target's error message carried in a relay answer.
const maxRelayMessage = 2000
