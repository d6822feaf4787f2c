package reconcile

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	"github.com/reconcile-dev/reconcile/merkle"
)

// Responder answers one session's rounds from one snapshot. It is the remote half of the
// protocol: the same code serves an in-process peer and (later) an HTTP server.
type Responder struct {
	snap   Snapshot
	params frameParams
	keyed  *merkle.Keyed

	// The entries of the parts listed in the previous round's Compare answers, by their
	// wire bounds: the next round's Fetch for a part is answered from here, not read
	// again. At most leafCacheMax entries are kept.
	leaves, prevLeaves map[string][]hashedEntry
	leafCount          int
	// The counts this side answered for mismatching parts it did not list, by their wire
	// bounds: the next round's Compare of such a part knows its size without probing.
	counts, prevCounts map[string]uint64
}

type hashedEntry struct {
	e merkle.Entry
	h merkle.Hash
}

// leafCacheMax bounds the entries a Responder keeps from one round to the next.
const leafCacheMax = 1 << 18

// leafKey names a part by its wire bounds.
func leafKey(lo, hi []byte) string {
	b := make([]byte, 0, len(lo)+len(hi)+4)
	for _, p := range [][]byte{lo, hi} {
		if p == nil {
			b = append(b, 0)
			continue
		}
		b = binary.AppendUvarint(b, uint64(len(p))+1)
		b = append(b, p...)
	}
	return string(b)
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
	if err := checkCompatible(req.Ordering, req.Schema, info, "initiating side", "answering side"); err != nil {
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

// checkCompatible checks that the initiator's ordering o and schema go with the
// responder's info; mine and theirs name the two sides in messages.
func checkCompatible(o merkle.Ordering, schema string, info Info, mine, theirs string) error {
	if o != info.Ordering {
		return fmt.Errorf("open session: the %s is in %s order and the %s in %s order: both must use the same ordering", mine, o, theirs, info.Ordering)
	}
	if schema != info.Schema && schema != SchemaKV && info.Schema != SchemaKV {
		return fmt.Errorf("open session: schemas differ (%s %q, %s %q): rows would never compare equal", mine, schema, theirs, info.Schema)
	}
	return nil
}

// Round answers every op of one round: first what needs no entry (digests, counts, where
// the parts to list lie), then, after naming them all to a Prefetcher, the listings.
func (r *Responder) Round(ctx context.Context, req *RoundRequest) (*RoundResponse, error) {
	resp := &RoundResponse{Answers: make([]Answer, len(req.Ops))}
	r.prevLeaves, r.leaves, r.leafCount = r.leaves, nil, 0
	r.prevCounts, r.counts = r.counts, nil
	defer func() { r.prevLeaves, r.prevCounts = nil, nil }()
	plans := make([]opPlan, len(req.Ops))
	var reads []exactRange
	for i := range req.Ops {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p, err := r.plan(ctx, &req.Ops[i], &resp.Answers[i])
		if err != nil {
			return nil, err
		}
		plans[i] = p
		reads = append(reads, p.parts...)
	}
	if err := prefetch(ctx, r.snap, reads); err != nil {
		return nil, fmt.Errorf("round: %w", err)
	}
	for i := range req.Ops {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := r.list(ctx, &req.Ops[i], &resp.Answers[i], plans[i]); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// opPlan is what the first pass over an op leaves for the second: the exact ranges of
// the entries it lists, and for a Compare the digests and which parts they are.
type opPlan struct {
	parts  []exactRange
	ds     []merkle.Digest
	listed []int
}

// plan answers op as far as it can without listing entries.
func (r *Responder) plan(ctx context.Context, op *Op, a *Answer) (opPlan, error) {
	var p opPlan
	switch op.Kind {
	case OpCompare:
		ds, snapped, err := cutDigests(ctx, r.snap, op.Lo, op.Hi, op.Bounds, r.prevCounts[leafKey(op.Lo, op.Hi)])
		if err != nil {
			return p, fmt.Errorf("compare: %w", err)
		}
		p.ds = ds
		fl := r.params.fpLen
		a.Mismatch = make([]bool, len(ds))
		var fp [32]byte
		for j, d := range ds {
			if bytes.Equal(r.keyed.AppendFingerprint(fp[:0], d, fl), op.FPs[j*fl:(j+1)*fl]) {
				continue
			}
			a.Mismatch[j] = true
			a.Counts = append(a.Counts, d.Count)
			a.Listed = append(a.Listed, nil)
			if d.Count <= uint64(op.ListMax) {
				p.listed = append(p.listed, j)
			} else if len(r.counts) < leafCacheMax {
				if r.counts == nil {
					r.counts = make(map[string]uint64)
				}
				plo, phi := partBounds(op.Lo, op.Hi, op.Bounds, j)
				r.counts[leafKey(plo, phi)] = d.Count
			}
		}
		if len(p.listed) == 0 {
			break
		}
		// Where the listed parts start and end as this side cuts them.
		if snapped != nil {
			for _, j := range p.listed {
				p.parts = append(p.parts, snappedPart(op.Lo, snapped, j))
			}
		} else if p.parts, err = snapParts(ctx, r.snap, op.Lo, op.Hi, op.Bounds, p.listed); err != nil {
			return p, fmt.Errorf("compare: %w", err)
		}
	case OpList:
		xr, _, err := snapRange(ctx, r.snap, op.Lo, op.Hi, nil)
		if err != nil {
			return p, fmt.Errorf("list: %w", err)
		}
		p.parts = []exactRange{xr}
	case OpFetch:
		if _, ok := r.prevLeaves[leafKey(op.Lo, op.Hi)]; ok {
			break
		}
		xr, _, err := snapRange(ctx, r.snap, op.Lo, op.Hi, nil)
		if err != nil {
			return p, fmt.Errorf("fetch: %w", err)
		}
		p.parts = []exactRange{xr}
	default:
		return p, fmt.Errorf("round: unknown op %d", op.Kind)
	}
	return p, nil
}

// list completes op's answer with the entries its plan lists.
func (r *Responder) list(ctx context.Context, op *Op, a *Answer, p opPlan) error {
	switch op.Kind {
	case OpCompare:
		k, l := 0, 0
		listed := p.listed
		for j, mm := range a.Mismatch {
			if !mm {
				continue
			}
			k++
			if len(listed) == 0 || listed[0] != j {
				continue
			}
			listed = listed[1:]
			xp := p.parts[l]
			l++
			var n uint64
			prefixes := make([]byte, 0, p.ds[j].Count*uint64(r.params.prefixLen))
			var kept []hashedEntry
			keep := r.leafCount+int(p.ds[j].Count) <= leafCacheMax
			if keep {
				kept = make([]hashedEntry, 0, p.ds[j].Count)
			}
			err := eachHashed(ctx, r.snap, xp, func(e merkle.Entry, h merkle.Hash) {
				prefixes = r.keyed.AppendEntryPrefix(prefixes, h, r.params.prefixLen)
				n++
				if keep {
					kept = append(kept, hashedEntry{e, h})
				}
			})
			if err != nil {
				return fmt.Errorf("compare: %w", err)
			}
			if keep {
				if r.leaves == nil {
					r.leaves = make(map[string][]hashedEntry)
				}
				plo, phi := partBounds(op.Lo, op.Hi, op.Bounds, j)
				r.leaves[leafKey(plo, phi)] = kept
				r.leafCount += len(kept)
			}
			a.Counts[k-1] = n
			a.Listed[k-1] = prefixes
		}
	case OpList:
		var err error
		if a.Entries, a.More, err = listEntryPage(ctx, r.snap, p.parts[0], int(op.Limit)); err != nil {
			return fmt.Errorf("list: %w", err)
		}
	case OpFetch:
		want := make(map[string]bool)
		pl := r.params.prefixLen
		for j := 0; j+pl <= len(op.Prefixes); j += pl {
			want[string(op.Prefixes[j:j+pl])] = true
		}
		var pb [32]byte
		pick := func(e merkle.Entry, h merkle.Hash) {
			if want[string(r.keyed.AppendEntryPrefix(pb[:0], h, pl))] {
				a.Entries = append(a.Entries, e)
			}
		}
		if kept, ok := r.prevLeaves[leafKey(op.Lo, op.Hi)]; ok {
			for _, he := range kept {
				pick(he.e, he.h)
			}
			break
		}
		if err := eachHashed(ctx, r.snap, p.parts[0], pick); err != nil {
			return fmt.Errorf("fetch: %w", err)
		}
	}
	return nil
}

// listEntryPage lists the entries of an exact range, about limit of them (<= 0: all). A page
// that does not reach the end of the range ends just before a cut entry, so that the
// initiator's next bound (just past the page's last entry) snaps to exactly where the
// page stopped; more says so.
func listEntryPage(ctx context.Context, snap Snapshot, xr exactRange, limit int) (es []merkle.Entry, more bool, err error) {
	if limit <= 0 {
		es, err = entriesIn(ctx, snap, xr, 0)
		return es, false, err
	}
	o := snap.Info().Ordering
	from := xr
	for {
		page, err := entriesIn(ctx, snap, from, limit+1)
		if err != nil {
			return nil, false, err
		}
		if len(page) <= limit {
			return append(es, page...), false, nil
		}
		// Stop at the last cut entry of the page, unless it is the page's first entry.
		base := len(es)
		es = append(es, page...)
		for j := len(es) - 1; j >= max(base, 1); j-- {
			if merkle.IsCut(es[j].Hash()) {
				return es[:j], true, nil
			}
		}
		// No cut entry in a whole page (only where hashes are crafted): read on.
		from.lo = append(page[len(page)-1].Position(o), 0)
	}
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
