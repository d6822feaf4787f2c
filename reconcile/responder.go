package reconcile

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"

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
	leaves, prevLeaves map[string][]prefixedEntry
	leafCount          int
	// The counts this side answered for mismatching parts it did not list, by their wire
	// bounds: the next round's Compare of such a part knows its size without probing.
	counts, prevCounts map[string]uint64

	// cutLevels is the highest cut level this side reads (OpenResponse.CutLevels), and
	// readAs the points of this round and the last that it read as other positions, by
	// level and wire bytes (see resolveLevels).
	cutLevels          uint8
	readAs, prevReadAs map[string][]byte
	kbuf               []byte
	// leafReader lists the round's leaves, read ahead on several cores where the
	// snapshot forks.
	leafReader *leafReader
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
		snap:      snap,
		params:    frameParams{ordering: info.Ordering},
		keyed:     merkle.NewKeyed(req.Nonce[:]),
		cutLevels: 1,
	}
	r.leafReader = &leafReader{keyed: r.keyed}
	if _, ok := snap.(LevelCutSnapshot); ok {
		r.cutLevels = MaxCutLevel
	}
	resp.CutLevels = r.cutLevels
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
		return fmt.Errorf("open session: the %s is in %s order and the %s in %s order: both must use the same ordering (a SQL table is in version order when its URL names &version=COLUMN, in key order without; a Badger store keeps the ordering it was created with, ?ordering=key for key order)", mine, o, theirs, info.Ordering)
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
	for _, n := range []uint8{req.FPBits, req.PrefixBits, req.FetchBits} {
		if n < 8 {
			return nil, fmt.Errorf("round: fingerprints or prefixes of %d bits: at least 8", n)
		}
	}
	if err := r.resolveLevels(ctx, req.Ops); err != nil {
		return nil, fmt.Errorf("round: %w", err)
	}
	// The digests of the compared parts first (on several cores where the snapshot
	// forks), then each op's plan in order.
	var compares []int
	for i := range req.Ops {
		if req.Ops[i].Kind == OpCompare {
			compares = append(compares, i)
		}
	}
	cuts := make([]cutAnswer, len(req.Ops))
	err := forEach(ctx, r.snap, len(compares), func(view Snapshot, k int) error {
		op, c := &req.Ops[compares[k]], &cuts[compares[k]]
		c.ds, c.snapped, c.err = cutDigests(ctx, view, op.Lo, op.Hi, op.Bounds, r.prevCounts[leafKey(op.Lo, op.Hi)])
		c.fps = r.fingerprints(c.ds, int(req.FPBits))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("round: %w", err)
	}
	plans := make([]opPlan, len(req.Ops))
	var reads, ahead []exactRange
	for i := range req.Ops {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p, err := r.plan(ctx, &req.Ops[i], &resp.Answers[i], shortBytes(int(req.FPBits)), cuts[i])
		if err != nil {
			return nil, err
		}
		plans[i] = p
		reads = append(reads, p.parts...)
		if req.Ops[i].Kind != OpList { // leaves; a listing may be any size
			ahead = append(ahead, p.parts...)
		}
	}
	if err := prefetch(ctx, r.snap, reads); err != nil {
		return nil, fmt.Errorf("round: %w", err)
	}
	r.leafReader.readAhead(r.snap, ahead)
	defer r.leafReader.readAhead(nil, nil)
	for i := range req.Ops {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := r.list(ctx, req, &req.Ops[i], &resp.Answers[i], plans[i]); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// cutAnswer is a compare op's cutDigests, which Round reads before the plans, with the
// digests' fingerprints.
type cutAnswer struct {
	ds      []merkle.Digest
	fps     []byte
	snapped [][]byte
	err     error
}

// fingerprints returns the short fingerprints of ds, bits long, one after the other.
func (r *Responder) fingerprints(ds []merkle.Digest, bits int) []byte {
	return appendFingerprints(nil, r.keyed, ds, bits)
}

// past returns a position after every position (longer than any, all 0xFF): a point that
// stands for no cut entry on this side (+inf) is read as past, which no entry reaches.
// It is a megabyte, made once, when a session first needs it.
var past = sync.OnceValue(func() []byte { return bytes.Repeat([]byte{0xFF}, MaxPosition+1) })

// resolveLevels rewrites the points of ops as this side reads them, so that the rest of
// the round reads every point at level 1 (a cut entry of any level is a level-1 cut entry,
// its own first one at or after it):
//
//   - a point above level 1 becomes the cut entry it stands for here, or past (Hi: nil)
//     when there is none;
//   - each op's bounds are then clamped into its range, in order. A point of one level
//     can read past a later point of another (next to a cut entry only one side holds):
//     the parts between are then empty here, which is what the clamped parts are;
//   - every point so rewritten is remembered for the next round, whose ranges are this
//     round's parts: a range reads its ends as its parent op read them, so that each
//     round's ranges still partition this side's entries.
func (r *Responder) resolveLevels(ctx context.Context, ops []Op) error {
	r.prevReadAs, r.readAs = r.readAs, nil
	high := false
	for i := range ops {
		lv := ops[i].Levels
		if top := max(lv.Lo, lv.Hi, lv.Bounds); top > r.cutLevels {
			return fmt.Errorf("an op cuts at level %d; this side reads levels up to %d", top, r.cutLevels)
		}
		high = high || lv.high()
	}
	if !high && r.prevReadAs == nil {
		return nil
	}
	r.readAs = make(map[string][]byte)
	lookup := func(l uint8, p []byte) ([]byte, bool) {
		r.kbuf = append(append(r.kbuf[:0], cutLevel(l)), p...)
		if x, ok := r.readAs[string(r.kbuf)]; ok {
			return x, true
		}
		if x, ok := r.prevReadAs[string(r.kbuf)]; ok {
			r.readAs[string(r.kbuf)] = x // a range may keep an end for several rounds
			return x, true
		}
		return nil, false
	}
	remember := func(l uint8, p, x []byte) { r.readAs[string(append([]byte{cutLevel(l)}, p...))] = x }
	or := func(x, ifNone []byte) []byte {
		if x == nil {
			return ifNone
		}
		return x
	}

	// The points above level 1 that are not remembered, read in one batch per level.
	type point struct {
		p      []byte
		l      uint8
		dst    *[]byte
		ifNone []byte // what it reads as where this side has no such cut entry
	}
	var pts []point
	// The ops read here are those with a point above level 1 or an end read as another
	// position (the others are read as sent); wire holds their bounds as sent.
	read := make([]bool, len(ops))
	wire := make([][][]byte, len(ops))
	for i := range ops {
		op := &ops[i]
		lv := op.Levels
		touched := lv.high()
		for _, end := range []struct {
			l      uint8
			p      *[]byte
			ifNone []byte
		}{{lv.Lo, &op.Lo, past()}, {lv.Hi, &op.Hi, nil}} {
			if *end.p == nil {
				continue
			}
			if x, ok := lookup(end.l, *end.p); ok {
				*end.p, touched = or(x, end.ifNone), true
			} else if end.l > 1 {
				pts = append(pts, point{p: *end.p, l: end.l, dst: end.p, ifNone: end.ifNone})
			}
		}
		if read[i] = touched; !touched {
			continue
		}
		wire[i] = op.Bounds
		op.Bounds = slices.Clone(op.Bounds)
		if lv.Bounds > 1 {
			for j, b := range wire[i] {
				pts = append(pts, point{p: b, l: lv.Bounds, dst: &op.Bounds[j], ifNone: past()})
			}
		}
	}
	slices.SortFunc(pts, func(a, b point) int {
		if a.l != b.l {
			return int(a.l) - int(b.l)
		}
		return bytes.Compare(a.p, b.p)
	})
	for i := 0; i < len(pts); {
		j := i
		for j < len(pts) && pts[j].l == pts[i].l {
			j++
		}
		ps := make([][]byte, j-i)
		for k := range ps {
			ps[k] = pts[i+k].p
		}
		xs, err := r.snap.(LevelCutSnapshot).SnapCutsAt(ctx, int(pts[i].l), ps)
		if err != nil {
			return err
		}
		for k, x := range xs {
			*pts[i+k].dst = or(x, pts[i+k].ifNone)
		}
		i = j
	}

	for i := range ops {
		op := &ops[i]
		if !read[i] {
			continue // as sent: its bounds lie inside its range (checkRange)
		}
		if op.Hi != nil && op.Lo != nil && bytes.Compare(op.Hi, op.Lo) < 0 {
			op.Hi = op.Lo
		}
		if bytes.Equal(op.Hi, past()) {
			op.Hi = nil // +inf
		}
		for j, b := range op.Bounds {
			if op.Lo != nil && bytes.Compare(b, op.Lo) < 0 {
				b = op.Lo
			}
			if j > 0 && bytes.Compare(b, op.Bounds[j-1]) < 0 {
				b = op.Bounds[j-1]
			}
			if op.Hi != nil && bytes.Compare(b, op.Hi) > 0 {
				b = op.Hi
			}
			op.Bounds[j] = b
			if op.Levels.Bounds > 1 || !bytes.Equal(b, wire[i][j]) {
				remember(op.Levels.Bounds, wire[i][j], b)
			}
		}
		op.Levels = Levels{}
	}
	return nil
}

// opPlan is what the first pass over an op leaves for the second: the exact ranges of
// the entries it lists, and for a Compare the digests and which parts they are.
type opPlan struct {
	parts  []exactRange
	ds     []merkle.Digest
	listed []int
}

// plan answers op, whose fingerprints take fl bytes each (shortBytes), as far as it can without
// listing entries; cut is its cutDigests (a compare op's).
func (r *Responder) plan(ctx context.Context, op *Op, a *Answer, fl int, cut cutAnswer) (opPlan, error) {
	var p opPlan
	switch op.Kind {
	case OpCompare:
		ds, snapped, fps, err := cut.ds, cut.snapped, cut.fps, cut.err
		if err != nil {
			return p, fmt.Errorf("compare: %w", err)
		}
		p.ds = ds
		a.Mismatch = make([]bool, len(ds))
		for j, d := range ds {
			if bytes.Equal(fps[j*fl:(j+1)*fl], op.FPs[j*fl:(j+1)*fl]) {
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

// list completes the answer to op, one of req's, with the entries its plan lists.
func (r *Responder) list(ctx context.Context, req *RoundRequest, op *Op, a *Answer, p opPlan) error {
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
			bits := int(req.PrefixBits)
			prefixes := make([]byte, 0, p.ds[j].Count*uint64(shortBytes(bits)))
			var kept []prefixedEntry
			keep := r.leafCount+int(p.ds[j].Count) <= leafCacheMax
			if keep {
				kept = make([]prefixedEntry, 0, p.ds[j].Count)
			}
			err := r.leafReader.each(ctx, r.snap, xp, func(pe *prefixedEntry) {
				prefixes = appendShort(prefixes, pe.p[:], bits)
				n++
				if keep {
					kept = append(kept, *pe)
				}
			})
			if err != nil {
				return fmt.Errorf("compare: %w", err)
			}
			if keep {
				if r.leaves == nil {
					r.leaves = make(map[string][]prefixedEntry)
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
		bits := int(req.FetchBits)
		pl := shortBytes(bits)
		for j := 0; j+pl <= len(op.Prefixes); j += pl {
			want[string(op.Prefixes[j:j+pl])] = true
		}
		pick := func(pe *prefixedEntry) {
			if want[pe.prefix(bits)] {
				a.Entries = append(a.Entries, pe.e)
			}
		}
		if kept, ok := r.prevLeaves[leafKey(op.Lo, op.Hi)]; ok {
			for i := range kept {
				pick(&kept[i]) // listed last round, prefixes and all
			}
			break
		}
		if err := r.leafReader.each(ctx, r.snap, p.parts[0], pick); err != nil {
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
