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
	info   Info
	params frameParams
	keyed  *merkle.Keyed
}

// NewResponder checks an OpenRequest against snap and returns the responder for the
// session and the OpenResponse to send back. It does not close snap.
func NewResponder(snap Snapshot, req *OpenRequest) (*Responder, *OpenResponse, error) {
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
		info:   info,
		params: frameParams{ordering: info.Ordering, fpLen: int(req.FPLen), prefixLen: int(req.PrefixLen)},
		keyed:  merkle.NewKeyed(req.Nonce[:]),
	}
	return r, resp, nil
}

func checkCompatible(o merkle.Ordering, schema string, info Info) error {
	if o != info.Ordering {
		return fmt.Errorf("open session: the source is in %s order and the target in %s order: both must use the same ordering", o, info.Ordering)
	}
	if schema != info.Schema {
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
	case OpSplit:
		bounds, err := r.snap.Split(ctx, op.Lo, op.Hi, int(op.K))
		if err != nil {
			return a, fmt.Errorf("split: %w", err)
		}
		a.Bounds = shortBounds(r.info.Ordering, op.Lo, bounds)
		ds, err := r.snap.Digests(ctx, op.Lo, op.Hi, a.Bounds)
		if err != nil {
			return a, fmt.Errorf("split: %w", err)
		}
		for _, d := range ds {
			a.Counts = append(a.Counts, d.Count)
			a.FPs = append(a.FPs, r.keyed.Fingerprint(d, r.params.fpLen)...)
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

// shortBounds shortens bounds for the wire. In version order a bound becomes its 8-byte
// version (be64) when that is still greater than the bound before it: the cut then falls
// just before the first entry of that version, which with distinct versions is the bound
// entry itself, so both sides find it again with one seek and their index walks stay at
// node boundaries; consecutive versions share their high bytes, so the wire encoding's
// prefix compression leaves 2-4 bytes a bound. Otherwise (key order, or several entries at
// one version) a bound becomes its shortest prefix greater than the bound before it (or
// lo). Bounds that are not strictly increasing are dropped.
func shortBounds(o merkle.Ordering, lo []byte, bounds [][]byte) [][]byte {
	out := make([][]byte, 0, len(bounds))
	prev := lo
	for _, b := range bounds {
		if prev != nil && bytes.Compare(b, prev) <= 0 {
			continue
		}
		cut := b
		if o == merkle.VersionOrder && len(b) > 8 && (prev == nil || bytes.Compare(b[:8], prev) > 0) {
			cut = b[:8:8]
		} else {
			for j := 1; prev != nil && j < len(b); j++ {
				if bytes.Compare(b[:j], prev) > 0 {
					cut = b[:j:j]
					break
				}
			}
		}
		out = append(out, cut)
		prev = cut
	}
	return out
}
