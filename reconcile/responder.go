package reconcile

import (
	"bytes"
	"context"
	"fmt"

	"github.com/reconcile-dev/reconcile/merkle"
)

// Responder answers one session's rounds from one snapshot. It is the remote half of the
// protocol: the same code serves an in-process peer and (later) an HTTP server.
type Responder struct {
	snap   Snapshot
	params frameParams
	keyed  *merkle.Keyed
}

// NewResponder checks an OpenRequest against snap and returns the responder for the
// session and the OpenResponse to send back, with the answer to the request's first round
// when the roots differ. It does not close snap.
func NewResponder(ctx context.Context, snap Snapshot, req *OpenRequest) (*Responder, *OpenResponse, error) {
	info := snap.Info()
	resp := &OpenResponse{Protocol: ProtocolVersion, Ordering: info.Ordering, Schema: info.Schema, Root: info.Root}
	if req.Protocol != ProtocolVersion {
		return nil, resp, fmt.Errorf("open session: peer speaks protocol %d, this side speaks %d: run the same reconcile version on both sides", req.Protocol, ProtocolVersion)
	}
	if err := checkCompatible(req.Ordering, req.Schema, info); err != nil {
		return nil, resp, err
	}
	r := &Responder{
		snap:   snap,
		params: frameParams{ordering: info.Ordering, fpLen: int(req.FPLen), prefixLen: int(req.PrefixLen)},
		keyed:  merkle.NewKeyed(req.Nonce[:]),
	}
	if req.First != nil && req.Root != info.Root {
		first, err := r.Round(ctx, req.First)
		if err != nil {
			return nil, resp, err
		}
		resp.First = first
	}
	return r, resp, nil
}

func checkCompatible(o merkle.Ordering, schema string, info Info) error {
	if o != info.Ordering {
		return fmt.Errorf("open session: the source is in %s order and the target in %s order: both must use the same ordering", o, info.Ordering)
	}
	if schema != info.Schema && schema != SchemaKV && info.Schema != SchemaKV {
		return fmt.Errorf("open session: schemas differ (source %q, target %q): rows would never compare equal", schema, info.Schema)
	}
	return nil
}

// Round answers every op of one round.
func (r *Responder) Round(ctx context.Context, req *RoundRequest) (*RoundResponse, error) {
	resp := &RoundResponse{Answers: make([]Answer, len(req.Ops))}
	for i := range req.Ops {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		a, err := r.answer(ctx, &req.Ops[i])
		if err != nil {
			return nil, err
		}
		resp.Answers[i] = a
	}
	return resp, nil
}

func (r *Responder) answer(ctx context.Context, op *Op) (Answer, error) {
	var a Answer
	switch op.Kind {
	case OpCompare:
		ds, err := r.snap.Digests(ctx, op.Lo, op.Hi, op.Bounds)
		if err != nil {
			return a, fmt.Errorf("compare: %w", err)
		}
		fl := r.params.fpLen
		a.Mismatch = make([]bool, len(ds))
		for j, d := range ds {
			if bytes.Equal(r.keyed.Fingerprint(d, fl), op.FPs[j*fl:(j+1)*fl]) {
				continue
			}
			a.Mismatch[j] = true
			a.Counts = append(a.Counts, d.Count)
			if d.Count > uint64(op.ListMax) {
				a.Listed = append(a.Listed, nil)
				continue
			}
			lo, hi := partBounds(op.Lo, op.Hi, op.Bounds, j)
			es, err := r.snap.Entries(ctx, lo, hi, 0)
			if err != nil {
				return a, fmt.Errorf("compare: %w", err)
			}
			listed := make([]byte, 0, len(es)*r.params.prefixLen)
			for _, e := range es {
				listed = append(listed, r.keyed.EntryPrefix(e.Hash(), r.params.prefixLen)...)
			}
			a.Counts[len(a.Counts)-1] = uint64(len(es))
			a.Listed = append(a.Listed, listed)
		}
	case OpList:
		limit := int(op.Limit)
		es, err := r.snap.Entries(ctx, op.Lo, op.Hi, limit+1)
		if err != nil {
			return a, fmt.Errorf("list: %w", err)
		}
		if limit > 0 && len(es) > limit {
			es, a.More = es[:limit], true
		}
		a.Entries = es
	case OpFetch:
		want := make(map[string]bool)
		pl := r.params.prefixLen
		for j := 0; j+pl <= len(op.Prefixes); j += pl {
			want[string(op.Prefixes[j:j+pl])] = true
		}
		es, err := r.snap.Entries(ctx, op.Lo, op.Hi, 0)
		if err != nil {
			return a, fmt.Errorf("fetch: %w", err)
		}
		for _, e := range es {
			if want[string(r.keyed.EntryPrefix(e.Hash(), pl))] {
				a.Entries = append(a.Entries, e)
			}
		}
	default:
		return a, fmt.Errorf("round: unknown op %d", op.Kind)
	}
	return a, nil
}

// partBounds returns the range of part j of [lo, hi) cut at bounds.
func partBounds(lo, hi []byte, bounds [][]byte, j int) ([]byte, []byte) {
	plo, phi := lo, hi
	if j > 0 {
		plo = bounds[j-1]
	}
	if j < len(bounds) {
		phi = bounds[j]
	}
	return plo, phi
}

// separators turns the cut positions a snapshot's Split returned (its own entries) into
// short separators for the wire: for each bound b, a prefix of b that is greater than the
// entry just before b, so that the cut keeps exactly its parts' entries on this side and
// the other side finds b again with one seek. Candidates, shortest first: in version order
// b's 8-byte version (right when b is the first entry of its version); then the shortest
// prefix of b above the entry found before b. Each candidate is checked with one
// one-entry listing of [candidate, b); after three tries the bound is sent whole. Bounds
// not strictly increasing are dropped. Consecutive separators share long prefixes, which
// the wire encoding compresses.
func separators(ctx context.Context, snap Snapshot, lo []byte, bounds [][]byte) ([][]byte, error) {
	o := snap.Info().Ordering
	out := make([][]byte, 0, len(bounds))
	prev := lo
	for _, b := range bounds {
		if prev != nil && bytes.Compare(b, prev) <= 0 {
			continue
		}
		var cand []byte
		if o == merkle.VersionOrder && len(b) > 8 && (prev == nil || bytes.Compare(b[:8], prev) > 0) {
			cand = b[:8:8]
		} else {
			cand = shortestAbove(b, prev)
		}
		cut := b
		for try := 0; try < 3 && len(cand) < len(b); try++ {
			es, err := snap.Entries(ctx, cand, b, 1)
			if err != nil {
				return nil, err
			}
			if len(es) == 0 {
				cut = cand
				break
			}
			cand = shortestAbove(b, es[0].Position(o))
		}
		out = append(out, cut)
		prev = cut
	}
	return out, nil
}

// shortestAbove returns the shortest prefix of b greater than p (b itself if none is);
// b must be greater than p. A nil p is below everything.
func shortestAbove(b, p []byte) []byte {
	if p == nil {
		return b
	}
	for j := 1; j < len(b); j++ {
		if bytes.Compare(b[:j], p) > 0 {
			return b[:j:j]
		}
	}
	return b
}
