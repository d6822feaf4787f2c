package reconcile

import (
	"context"
	"fmt"

	"github.com/reconcile-dev/reconcile/merkle"
)

// Peer is the responder side of a session as the initiator sees it: every call is one
// round trip. An in-process peer (Local) and a remote one implement it the same way, so a
// session behaves the same whether the other side is here or across a network.
type Peer interface {
	Open(ctx context.Context, req *OpenRequest) (*OpenResponse, error)
	Round(ctx context.Context, req *RoundRequest) (*RoundResponse, error)
	Apply(ctx context.Context, req *ApplyRequest) (*ApplyResponse, error)
	// Rows reads rows of the responder's snapshot (RunFromPeer reads a remote source's
	// rows this way). It writes nothing, so it may be retried.
	Rows(ctx context.Context, req *RowsRequest) (*RowsResponse, error)
	// Traffic reports the bytes the session's frames took on the wire so far.
	Traffic() Traffic
	// ReadStats reports what the responder's snapshot has read.
	ReadStats() merkle.ReadStats
	Close() error
}

// ReadOnlyPeer is a Peer that knows, once its Open has answered, whether its endpoint
// refuses writes (a read-only server): a mirror session then stops before its descent
// rather than at its first apply.
type ReadOnlyPeer interface {
	Peer
	ReadOnly() bool
}

// Traffic counts wire bytes from the initiator's point of view.
type Traffic struct {
	Sent, Received int64
	// ValueBytes is the part of Sent and Received that is row values: in apply frames
	// sent, or in rows answers received.
	ValueBytes int64
}

// Local is an in-process Peer over an Endpoint. Every frame is encoded and decoded
// exactly as it would be on the wire, so its byte counts are the protocol's.
type Local struct {
	ep      Endpoint
	snap    Snapshot
	resp    *Responder
	params  frameParams
	traffic Traffic
	pre     *preopened
	// cancelSnap ends the context a preopened snapshot was opened with (a SQL snapshot's
	// transaction lives as long as it), once the snapshot is closed.
	cancelSnap context.CancelFunc
}

// preopened is a snapshot opened ahead of the open request (Local.preopen).
type preopened struct {
	now    int64
	cancel context.CancelFunc
	done   chan struct{}
	snap   Snapshot
	err    error
}

// preopen starts opening the endpoint's snapshot at now while the initiator opens its
// own: where opening reads a whole table (a SQL table in scan mode), the two reads
// overlap instead of running one after the other. Open takes the snapshot if its request
// is for the same now.
func (l *Local) preopen(ctx context.Context, now int64) {
	if l.pre != nil {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &preopened{now: now, cancel: cancel, done: make(chan struct{})}
	l.pre = p
	go func() {
		defer close(p.done)
		p.snap, p.err = l.ep.Open(ctx, now)
	}()
}

// cancelFunc returns the context's cancel of a preopened snapshot (a no-op without one).
func (p *preopened) cancelFunc() context.CancelFunc {
	if p == nil {
		return func() {}
	}
	return p.cancel
}

// takePreopened returns the snapshot preopen opened for now, if any; a snapshot opened
// for another now is closed.
func (l *Local) takePreopened(now int64) (Snapshot, error, bool) {
	p := l.pre
	if p == nil {
		return nil, nil, false
	}
	l.pre = nil
	if p.now != now {
		p.cancel() // not wanted: stop a long open early
	}
	<-p.done
	if p.now != now {
		if p.snap != nil {
			p.snap.Close()
		}
		return nil, nil, false
	}
	return p.snap, p.err, true
}

// NewLocal returns a Peer that answers from ep in this process.
func NewLocal(ep Endpoint) *Local { return &Local{ep: ep} }

// FormatKey renders a key as the endpoint's KeyFormatter does, or "" when it has none.
func (l *Local) FormatKey(k []byte) string {
	if f, ok := l.ep.(KeyFormatter); ok {
		return f.FormatKey(k)
	}
	return ""
}

// FormatVersion renders a version as the endpoint's VersionFormatter does, or "" when it
// has none.
func (l *Local) FormatVersion(v uint64) string {
	if f, ok := l.ep.(VersionFormatter); ok {
		return f.FormatVersion(v)
	}
	return ""
}

// Open opens a snapshot of the endpoint at req.Now and starts the session.
func (l *Local) Open(ctx context.Context, req *OpenRequest) (*OpenResponse, error) {
	frame := EncodeOpenRequest(req)
	l.traffic.Sent += int64(len(frame))
	sent := req
	req, err := DecodeOpenRequest(frame)
	if err != nil {
		return nil, err
	}
	if l.snap != nil {
		l.closeSnap()
	}
	cancel := l.pre.cancelFunc()
	snap, err, ok := l.takePreopened(req.Now)
	if !ok {
		cancel = func() {}
		snap, err = l.ep.Open(ctx, req.Now)
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open target snapshot: %w", err)
	}
	resp, openResp, err := NewResponder(ctx, snap, req)
	if err != nil {
		snap.Close()
		cancel()
		return nil, err
	}
	l.snap, l.resp, l.cancelSnap = snap, resp, cancel
	l.params = resp.params
	frame = EncodeOpenResponse(req, openResp)
	l.traffic.Received += int64(len(frame))
	return DecodeOpenResponse(sent, frame)
}

// Round answers one round.
func (l *Local) Round(ctx context.Context, req *RoundRequest) (*RoundResponse, error) {
	if l.resp == nil {
		return nil, fmt.Errorf("round: session not open")
	}
	frame := encodeRound(l.params, req)
	l.traffic.Sent += int64(len(frame))
	decoded, err := decodeRound(l.params, frame)
	if err != nil {
		return nil, err
	}
	resp, err := l.resp.Round(ctx, decoded)
	if err != nil {
		return nil, err
	}
	frame = encodeRoundResponse(l.params, decoded, resp)
	l.traffic.Received += int64(len(frame))
	return decodeRoundResponse(l.params, req, frame)
}

// Apply writes one batch to the endpoint.
func (l *Local) Apply(ctx context.Context, req *ApplyRequest) (*ApplyResponse, error) {
	frame, values := encodeApply(l.params, req)
	l.traffic.Sent += int64(len(frame))
	l.traffic.ValueBytes += values
	decoded, err := decodeApply(frame)
	if err != nil {
		return nil, err
	}
	outcomes, err := l.ep.Apply(ctx, decoded.Now, decoded.Changes)
	if err != nil {
		return nil, err
	}
	frame = encodeApplyResponse(&ApplyResponse{Outcomes: outcomes})
	l.traffic.Received += int64(len(frame))
	return decodeApplyResponse(frame, len(req.Changes))
}

// Rows reads rows of the snapshot the session opened.
func (l *Local) Rows(ctx context.Context, req *RowsRequest) (*RowsResponse, error) {
	if l.snap == nil {
		return nil, fmt.Errorf("rows: session not open")
	}
	frame := EncodeRowsRequest(req)
	l.traffic.Sent += int64(len(frame))
	decoded, err := DecodeRowsRequest(frame)
	if err != nil {
		return nil, err
	}
	rows, err := l.snap.Rows(ctx, decoded.Keys)
	if err != nil {
		return nil, err
	}
	frame, values := EncodeRowsResponse(decoded, &RowsResponse{Rows: LimitRows(rows, decoded.MaxBytes)})
	l.traffic.Received += int64(len(frame))
	l.traffic.ValueBytes += values
	return DecodeRowsResponse(req, frame)
}

// Traffic reports the bytes counted so far.
func (l *Local) Traffic() Traffic { return l.traffic }

// ReadStats reports what the responder's snapshot read.
func (l *Local) ReadStats() merkle.ReadStats {
	if l.snap == nil {
		return merkle.ReadStats{}
	}
	return l.snap.ReadStats()
}

// Close releases the snapshot; the endpoint stays open.
func (l *Local) Close() error {
	l.takePreopened(0) // closes a snapshot opened ahead for a session that never asked for it
	if l.snap == nil {
		return nil
	}
	return l.closeSnap()
}

// closeSnap closes the session's snapshot.
func (l *Local) closeSnap() error {
	err := l.snap.Close()
	if l.cancelSnap != nil {
		l.cancelSnap()
	}
	l.snap, l.resp, l.cancelSnap = nil, nil, nil
	return err
}
