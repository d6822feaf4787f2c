package reconcile

import (
	"bytes"
	"context"
	"slices"

	"github.com/reconcile-dev/reconcile/merkle"
)

// Bounds and cut entries (docs/protocol.md, "Bounds"). A bound on the wire stands for the
// first cut entry (merkle.IsCut) at or after it on the side that reads it, or for +inf
// when that side holds none there. Each side therefore cuts its own entries at its own
// cut entries: where the sides hold the same entries around a bound they cut at the same
// entry; where they do not (a differing cut entry nearby), some common entries land in
// different parts on the two sides, which then both mismatch and report those entries on
// both sides, and the session cancels such pairs. No difference is ever missed: every
// side's parts partition its entries, and a part whose digests match holds the same
// entries on both sides.
//
// Cutting only at cut entries lets an index whose upper nodes start at cut entries (the
// Badger store's) place every bound and compute every part's digest from nodes, never
// reading an entry to do so.

// CutSnapshot is implemented by snapshots that find cut entries from their index. A
// snapshot without it is served by scanning its entries (fine in memory).
type CutSnapshot interface {
	// SnapCuts returns, for each position of ps (sorted, none nil), the position of the
	// snapshot's first cut entry at or after it, or nil when there is none. A snapshot may
	// also cut at entries it holds but does not show (expired, not yet purged), as long as
	// it always does so.
	SnapCuts(ctx context.Context, ps [][]byte) ([][]byte, error)
	// SplitCuts is Split restricted to cut entries: up to k-1 sorted cut entries strictly
	// inside (lo, hi), which are cut entries or nil, cutting the range into parts of
	// near-equal count; prevs[i] is the cut entry before bounds[i] (nil when none; prevs
	// nil when not known, and the bounds then go on the wire whole), and
	// ds, when not nil, the parts' digests (saving a CutDigests). count, when not 0, is
	// how many entries the caller expects in the range: a hint, which may be off.
	SplitCuts(ctx context.Context, lo, hi []byte, k int, count uint64) (bounds, prevs [][]byte, ds []merkle.Digest, err error)
	// CutDigests returns the digests of the parts of [lo, hi) cut at bounds (sorted), each
	// of lo, hi and the bounds standing for the first cut entry at or after it. snapped,
	// when not nil, holds those cut entries for lo, each bound and hi (len(bounds)+2; nil
	// for an open lo or hi, or where there is none), found on the way. count, when not 0,
	// is how many entries the caller expects in the range: a hint, which may be off.
	CutDigests(ctx context.Context, lo, hi []byte, bounds [][]byte, count uint64) (ds []merkle.Digest, snapped [][]byte, err error)
}

// LevelCutSnapshot is implemented by snapshots whose index also finds cut entries of
// higher levels (Levels): the Badger store's, whose level-l nodes are exactly them. A
// responder over one reads points of any level up to MaxCutLevel, and an initiator over
// one sends cuts taken from level l > 1 as short separators of level l instead of whole.
type LevelCutSnapshot interface {
	CutSnapshot
	// SnapCutsAt is SnapCuts at level l (1..MaxCutLevel): for each of ps (sorted, none
	// nil), the first cut entry of level l at or after it, or nil when there is none.
	SnapCutsAt(ctx context.Context, l int, ps [][]byte) ([][]byte, error)
	// SplitCutsAt is SplitCuts, except that where its cuts are cut entries of a level l >
	// 1 and SplitCuts would return prevs nil, it returns l and, for each bound, the
	// level-l cut entry before it (nil: none). level is 1 otherwise.
	SplitCutsAt(ctx context.Context, lo, hi []byte, k int, count uint64) (bounds, prevs [][]byte, level int, ds []merkle.Digest, err error)
}

// snapPage is how many entries snapCuts lists at a time on a snapshot without an index.
const snapPage = 64

// snapCuts returns, for each of ps (sorted, none nil), the first cut entry of snap at or
// after it (nil: none). Without CutSnapshot it lists entries in pages, and a page serves
// every point that falls inside it, so close points cost one listing.
func snapCuts(ctx context.Context, snap Snapshot, ps [][]byte) ([][]byte, error) {
	if cs, ok := snap.(CutSnapshot); ok {
		return cs.SnapCuts(ctx, ps)
	}
	o := snap.Info().Ordering
	out := make([][]byte, len(ps))
	var page [][]byte // positions of the last page listed, in order
	var cut []bool    // whether each is a cut entry
	more := true      // whether entries follow the page
	for i, p := range ps {
		// Find p in the page, or list a new page from p.
		j, _ := slices.BinarySearchFunc(page, p, bytes.Compare)
		if j == len(page) {
			if len(page) > 0 && !more {
				break // nothing at or after p, nor after the later points
			}
			page, cut, j = page[:0], cut[:0], 0
			es, err := snap.Entries(ctx, p, nil, snapPage)
			if err != nil {
				return nil, err
			}
			for _, e := range es {
				page = append(page, e.Position(o))
				cut = append(cut, merkle.IsCut(e.Hash()))
			}
			more = len(es) == snapPage
			if len(es) == 0 {
				break
			}
		}
		for {
			for ; j < len(page); j++ {
				if cut[j] {
					out[i] = page[j]
					break
				}
			}
			if out[i] != nil || !more {
				break
			}
			// No cut entry in the rest of the page: list on.
			es, err := snap.Entries(ctx, append(page[len(page)-1], 0), nil, snapPage)
			if err != nil {
				return nil, err
			}
			page, cut, j = page[:0], cut[:0], 0
			for _, e := range es {
				page = append(page, e.Position(o))
				cut = append(cut, merkle.IsCut(e.Hash()))
			}
			more = len(es) == snapPage
		}
		if out[i] == nil {
			break // none here, nor after
		}
	}
	return out, nil
}

// splitCuts cuts [lo, hi) (source-exact: cut entries or nil) at cut entries of snap near
// its count quantiles. The bounds go on the wire as points of cut level level: above 1
// only for a LevelCutSnapshot whose cuts come from that level, when the responder reads
// up to maxLevel >= it. prevs[i], when known, is the cut entry of that level before
// bounds[i] (nil: none); known is false where they are not known (snapshots without
// CutSnapshot, or a CutSnapshot that returned no prevs): those bounds go on the wire whole.
func splitCuts(ctx context.Context, snap Snapshot, lo, hi []byte, k int, count uint64, maxLevel int) (bounds, prevs [][]byte, level int, ds []merkle.Digest, known bool, err error) {
	if ls, ok := snap.(LevelCutSnapshot); ok && maxLevel > 1 {
		bounds, prevs, level, ds, err = ls.SplitCutsAt(ctx, lo, hi, k, count)
		if err != nil || (prevs != nil && level <= maxLevel) {
			return bounds, prevs, level, ds, true, err
		}
		return bounds, make([][]byte, len(bounds)), 1, ds, false, nil
	}
	bounds, prevs, ds, known, err = splitCutsLevel1(ctx, snap, lo, hi, k, count)
	return bounds, prevs, 1, ds, known, err
}

// splitCutsLevel1 is splitCuts with every bound at level 1.
func splitCutsLevel1(ctx context.Context, snap Snapshot, lo, hi []byte, k int, count uint64) (bounds, prevs [][]byte, ds []merkle.Digest, known bool, err error) {
	if cs, ok := snap.(CutSnapshot); ok {
		bounds, prevs, ds, err = cs.SplitCuts(ctx, lo, hi, k, count)
		if prevs == nil {
			return bounds, make([][]byte, len(bounds)), ds, false, err
		}
		return bounds, prevs, ds, true, err
	}
	cands, err := snap.Split(ctx, lo, hi, k)
	if err != nil || len(cands) == 0 {
		return nil, nil, nil, false, err
	}
	snapped, err := snapCuts(ctx, snap, cands)
	if err != nil {
		return nil, nil, nil, false, err
	}
	for _, b := range snapped {
		if b == nil || (hi != nil && bytes.Compare(b, hi) >= 0) {
			break
		}
		if lo != nil && bytes.Compare(b, lo) <= 0 {
			continue
		}
		if n := len(bounds); n > 0 && bytes.Equal(bounds[n-1], b) {
			continue
		}
		bounds = append(bounds, b)
	}
	return bounds, make([][]byte, len(bounds)), nil, false, nil
}

// cutDigests returns the digests of the parts of [lo, hi) cut at bounds, every cut point
// standing for snap's first cut entry at or after it.
func cutDigests(ctx context.Context, snap Snapshot, lo, hi []byte, bounds [][]byte, count uint64) ([]merkle.Digest, [][]byte, error) {
	if cs, ok := snap.(CutSnapshot); ok {
		return cs.CutDigests(ctx, lo, hi, bounds, count)
	}
	ds, _, _, err := exactDigests(ctx, snap, lo, hi, bounds)
	return ds, nil, err
}

// snappedPart returns part j of wire range [lo, hi) cut at bounds from the cut entries
// its points snapped to (as CutSnapshot.CutDigests returns them).
func snappedPart(lo []byte, snapped [][]byte, j int) exactRange {
	x := exactRange{lo: snapped[j], hi: snapped[j+1]}
	if x.lo == nil && (j > 0 || lo != nil) {
		x.empty = true
	}
	if !x.empty && x.lo != nil && x.hi != nil && bytes.Compare(x.lo, x.hi) >= 0 {
		x.empty = true
	}
	return x
}

// separator returns a short bound for the wire that snaps back to the cut entry b on the
// side that cut there: a point above p, the greatest of the cut entry before b and the
// previous wire bound (nil: none), and at most b. In version order it is b's version alone
// (8 bytes, which a round sends as a difference from the point before: a byte or two)
// when p's version is lower, else that version and the shortest prefix of b's key above
// p's. In key order it is the shortest prefix of b above p. Without a known predecessor b
// goes whole.
func separator(o merkle.Ordering, b, p []byte, known bool) []byte {
	if !known {
		return b
	}
	if o == merkle.VersionOrder && len(b) >= 8 {
		v := b[:8:8]
		if p == nil || bytes.Compare(v, p) > 0 {
			return v
		}
		return append(v, shortestAbove(b[8:], p[min(8, len(p)):])...)
	}
	if p == nil {
		return b[:min(1, len(b)):min(1, len(b))]
	}
	return shortestAbove(b, p)
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

// exactRange is a range as one side cuts it: lo and hi are that side's cut entries (nil:
// open), or the range is empty when its lo lies past that side's last cut entry.
type exactRange struct {
	lo, hi []byte
	empty  bool
}

// snapRange snaps a wire range and its bounds on snap. Bounds past the last cut entry
// become hi; the returned bounds are sorted, within [lo, hi], equal neighbours allowed.
func snapRange(ctx context.Context, snap Snapshot, lo, hi []byte, bounds [][]byte) (exactRange, [][]byte, error) {
	snapped, err := snapCuts(ctx, snap, merkle.CutPoints(lo, hi, bounds))
	if err != nil {
		return exactRange{}, nil, err
	}
	var r exactRange
	if lo != nil {
		r.lo, snapped = snapped[0], snapped[1:]
		if r.lo == nil {
			r.empty = true
		}
	}
	if hi != nil {
		r.hi, snapped = snapped[len(snapped)-1], snapped[:len(snapped)-1]
	}
	for i, b := range snapped {
		if b == nil {
			snapped[i] = r.hi // past the last cut entry: the parts from here on are empty
		}
	}
	// A nil bound (+inf) where hi is open too: cut the parts off instead.
	return r, snapped, nil
}

// exactDigests returns the digests of the parts of wire range [lo, hi) cut at bounds, as
// snap cuts them, with the exact part bounds (cut entries) it used.
func exactDigests(ctx context.Context, snap Snapshot, lo, hi []byte, bounds [][]byte) ([]merkle.Digest, exactRange, [][]byte, error) {
	r, xb, err := snapRange(ctx, snap, lo, hi, bounds)
	if err != nil {
		return nil, r, nil, err
	}
	ds := make([]merkle.Digest, len(bounds)+1)
	if r.empty {
		return ds, r, xb, nil
	}
	// Bounds that snapped past the last cut entry (nil while hi is open) end the range.
	n := len(xb)
	for n > 0 && xb[n-1] == nil {
		n--
	}
	got, err := snap.Digests(ctx, r.lo, r.hi, xb[:n])
	if err != nil {
		return nil, r, nil, err
	}
	copy(ds, got)
	return ds, r, xb, nil
}

// snapParts returns the exact ranges of parts js (ascending) of wire range [lo, hi) cut
// at bounds, snapping only their own ends.
func snapParts(ctx context.Context, snap Snapshot, lo, hi []byte, bounds [][]byte, js []int) ([]exactRange, error) {
	var ps [][]byte
	add := func(p []byte) {
		if p != nil && (len(ps) == 0 || !bytes.Equal(ps[len(ps)-1], p)) {
			ps = append(ps, p)
		}
	}
	for _, j := range js {
		plo, phi := partBounds(lo, hi, bounds, j)
		add(plo)
		add(phi)
	}
	xs, err := snapCuts(ctx, snap, ps)
	if err != nil {
		return nil, err
	}
	at := func(p []byte) []byte { // p is in ps
		i, _ := slices.BinarySearchFunc(ps, p, bytes.Compare)
		return xs[i]
	}
	out := make([]exactRange, len(js))
	for i, j := range js {
		plo, phi := partBounds(lo, hi, bounds, j)
		var x exactRange
		if plo != nil {
			if x.lo = at(plo); x.lo == nil {
				x.empty = true
			}
		}
		if phi != nil {
			x.hi = at(phi)
		}
		if !x.empty && x.lo != nil && x.hi != nil && bytes.Compare(x.lo, x.hi) >= 0 {
			x.empty = true
		}
		out[i] = x
	}
	return out, nil
}

// exactPart returns part j of an exact range cut at exact bounds xb (nil entries: +inf).
func exactPart(r exactRange, xb [][]byte, j int) exactRange {
	p := r
	if j > 0 {
		p.lo = xb[j-1]
		if p.lo == nil {
			p.empty = true
		}
	}
	if j < len(xb) {
		p.hi = xb[j]
	}
	if !p.empty && p.lo != nil && p.hi != nil && bytes.Compare(p.lo, p.hi) >= 0 {
		p.empty = true
	}
	return p
}

// entriesIn lists the entries of an exact range (at most limit; <= 0: all).
func entriesIn(ctx context.Context, snap Snapshot, r exactRange, limit int) ([]merkle.Entry, error) {
	if r.empty {
		return nil, nil
	}
	return snap.Entries(ctx, r.lo, r.hi, limit)
}

// HashedEntries is implemented by snapshots that keep each entry's EntryHash, which
// spares hashing every entry listed.
type HashedEntries interface {
	// EachHashed calls fn with each entry of [lo, hi) and its EntryHash, in position
	// order, until fn returns false.
	EachHashed(ctx context.Context, lo, hi []byte, fn func(merkle.Entry, merkle.Hash) bool) error
}

// eachHashed calls fn with each entry of the exact range x and its EntryHash.
func eachHashed(ctx context.Context, snap Snapshot, x exactRange, fn func(merkle.Entry, merkle.Hash)) error {
	if x.empty {
		return nil
	}
	if hs, ok := snap.(HashedEntries); ok {
		return hs.EachHashed(ctx, x.lo, x.hi, func(e merkle.Entry, h merkle.Hash) bool {
			fn(e, h)
			return true
		})
	}
	return eachEntry(ctx, snap, x.lo, x.hi, func(e merkle.Entry) { fn(e, e.Hash()) })
}

// Prefetcher is implemented by snapshots for which reading many ranges at once costs far
// less than reading them one by one: a SQL index answers a round's listings in one query
// rather than one per range. Before a round's listings (its own, or a peer's), a session
// names the ranges it is about to list with EachHashed or Entries; Prefetch may read them
// ahead. It is a hint: a snapshot may read less than asked (a range too large to hold,
// say), and later reads must answer the same whether it read ahead or not.
type Prefetcher interface {
	// Prefetch reads ahead the entries of ranges, sorted by Lo (they may overlap).
	Prefetch(ctx context.Context, ranges []Range) error
}

// Range is a range of positions [Lo, Hi); a nil Lo or Hi is open.
type Range struct{ Lo, Hi []byte }

// prefetch hands the non-empty ranges of xs, when there are two or more, to snap's
// Prefetch, if it has one.
func prefetch(ctx context.Context, snap Snapshot, xs []exactRange) error {
	p, ok := snap.(Prefetcher)
	if !ok {
		return nil
	}
	rs := make([]Range, 0, len(xs))
	for _, x := range xs {
		if !x.empty {
			rs = append(rs, Range{Lo: x.lo, Hi: x.hi})
		}
	}
	if len(rs) < 2 {
		return nil
	}
	// An open Lo (nil) compares as the empty position, the smallest there is.
	slices.SortFunc(rs, func(a, b Range) int { return bytes.Compare(a.Lo, b.Lo) })
	return p.Prefetch(ctx, rs)
}
