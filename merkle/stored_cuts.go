package merkle

import (
	"bytes"
	"fmt"
)

// Cut entries. Sessions cut ranges only at cut entries: entries whose EntryHash starts with
// a zero 4-bit nibble (one entry in 16, chosen by content alone, so two copies of a set of
// entries agree on them). A bound on the wire stands for the first cut entry at or after
// it (see docs/protocol.md), so a side with an index whose level-1 nodes are exactly its
// cut entries (Stored) finds every bound, and every part's digest, from level-1 nodes
// alone: no cut ever falls between two entries of a level-1 node, and no entry is read to
// place one.

// IsCut reports whether an entry with EntryHash h is a cut entry.
func IsCut(h Hash) bool { return h[0] < 0x10 }

// cutGap is how many level-1 nodes SnapCuts steps over before it seeks again.
const cutGap = 8

// SnapCuts returns, for each position of ps (sorted ascending, none nil), the position of
// the first level-1 node at or after it, or nil when there is none. With the index's
// default 4 bits a level, level-1 nodes are exactly the cut entries (IsCut). Positions that
// lie close together share one forward scan of level 1; a gap of more than a few nodes
// costs a new seek.
func (s *Stored) SnapCuts(ps [][]byte) ([][]byte, error) { return s.SnapCutsAt(1, ps) }

// SnapCutsAt is SnapCuts at a level: for each position of ps, the first level-l node at
// or after it (with the default 4 bits a level, the first entry whose EntryHash starts
// with l zero nibbles), or nil when there is none.
func (s *Stored) SnapCutsAt(l int, ps [][]byte) ([][]byte, error) {
	out := make([][]byte, len(ps))
	if len(ps) == 0 {
		return out, nil
	}
	if l < 1 || l > storedMaxLevel {
		return nil, fmt.Errorf("merkle: snap at level %d, outside 1..%d", l, storedMaxLevel)
	}
	t, err := s.loadTop()
	if err != nil || t == 0 || l > t {
		return out, err // no level-l node: nothing at or after any point
	}
	i := 0
	for i < len(ps) {
		start := i
		gap := 0
		var last []byte
		err := s.scan(l, s.nodeKey(l, ps[i]), s.levelEnd(l), false, true,
			func(head bool, p []byte, _ Digest) bool {
				if head {
					return true
				}
				if i < len(ps) && bytes.Compare(ps[i], p) <= 0 {
					last = append([]byte{}, p...)
					for i < len(ps) && bytes.Compare(ps[i], p) <= 0 {
						out[i] = last
						i++
					}
					gap = 0
					return i < len(ps)
				}
				gap++
				return gap <= cutGap
			})
		if err != nil {
			return nil, err
		}
		if i == start || (i < len(ps) && gap <= cutGap) {
			// The level ended: nothing at or after ps[i].
			for ; i < len(ps); i++ {
				out[i] = nil
			}
		}
	}
	return out, nil
}

// cutNodes returns the level-1 nodes at or after lo and before hi (the head too when lo
// is nil) in one forward scan, when there are at most max of them; ok is false when the
// range holds more. Under cut semantics they are exactly the nodes of [lo, hi).
func (s *Stored) cutNodes(lo, hi []byte, limit int) (nodes []storedNode, ok bool, err error) {
	start, end := s.headKey(1), s.levelEnd(1)
	if lo != nil {
		start = s.nodeKey(1, lo)
	}
	if hi != nil {
		end = s.nodeKey(1, hi)
	}
	var arena posArena
	nodes = make([]storedNode, 0, min(limit+1, 32))
	err = s.scan(1, start, end, false, true, func(head bool, p []byte, d Digest) bool {
		nodes = append(nodes, storedNode{pos: arena.copy(p), head: head, d: d})
		return len(nodes) <= limit
	})
	if err != nil {
		return nil, false, err
	}
	return nodes, len(nodes) <= limit, nil
}

// cutScanNodes is the most level-1 nodes a range cut into parts may span to be answered
// by one scan of them: a top-down walk costs each part about three seeks and 50 node
// reads, a scan one read per node.
func cutScanNodes(parts int) int { return smallRangeNodes + 16*parts }

// cutScanDigests fills out (zeroed) from one forward scan of the level-1 nodes of
// [lo, hi), crediting each to the part its position falls in, when the range spans at most
// cutScanNodes of them; otherwise it returns false, with out zeroed again. snapped, when
// the scan ran, holds what lo, each bound and hi snap to (the first level-1 node at or
// after it; nil: none, or an open bound): the scan reads one node past hi for it.
func (s *Stored) cutScanDigests(lo, hi []byte, bounds [][]byte, out []Digest, count uint64) (snapped [][]byte, ok bool, err error) {
	limit := cutScanNodes(len(bounds) + 1)
	if count > 0 {
		if count>>s.nbits > uint64(limit) || s.partsSpanLevel2(count, len(bounds)+1) {
			return nil, false, nil
		}
	} else if few, err := s.fewLevel1(lo, hi, limit); err != nil || !few {
		return nil, false, err
	}
	start := s.headKey(1)
	if lo != nil {
		start = s.nodeKey(1, lo)
	}
	snapped = make([][]byte, len(bounds)+2)
	n, p := 0, 0
	first := true
	err = s.scan(1, start, s.levelEnd(1), false, true, func(head bool, pos []byte, d Digest) bool {
		if head {
			out[0] = out[0].Add(d)
			return true
		}
		var cp []byte // pos, copied once if a cut point snaps to it
		snap := func() []byte {
			if cp == nil {
				cp = append([]byte{}, pos...)
			}
			return cp
		}
		if first && lo != nil {
			snapped[0] = snap()
		}
		first = false
		for p < len(bounds) && bytes.Compare(bounds[p], pos) <= 0 {
			snapped[p+1] = snap()
			p++
		}
		if hi != nil && bytes.Compare(pos, hi) >= 0 {
			snapped[len(snapped)-1] = snap()
			return false
		}
		if n++; n > limit {
			return false
		}
		out[p] = out[p].Add(d)
		return true
	})
	if err != nil || n <= limit {
		return snapped, err == nil, err
	}
	clear(out)
	return nil, false, nil
}

// partsSpanLevel2 reports whether count entries cut into parts make parts as large as a
// level-2 node (256 entries). Such a split is taken from level-2 nodes (SplitCuts), and a
// top-down walk finds its parts' digests reading no level-1 node, where a scan of the
// range's level-1 nodes would read 16 a part.
func (s *Stored) partsSpanLevel2(count uint64, parts int) bool {
	return count/uint64(max(parts, 1)) >= 1<<(2*s.nbits)
}

// fewLevel1 reports whether [lo, hi) may span at most about limit level-1 nodes, judging
// by its level-2 nodes (16 times fewer, so the probe is cheap): false means that scanning
// level 1 across it would read more than limit nodes.
func (s *Stored) fewLevel1(lo, hi []byte, limit int) (bool, error) {
	t, err := s.loadTop()
	if err != nil || t < 2 {
		return true, err
	}
	start, end := s.headKey(2), s.levelEnd(2)
	if lo != nil {
		start = s.nodeKey(2, lo)
	}
	if hi != nil {
		end = s.nodeKey(2, hi)
	}
	max2 := limit>>s.nbits + 1
	n := 0
	err = s.scan(2, start, end, false, true, func(head bool, _ []byte, _ Digest) bool {
		if !head {
			n++
		}
		return n <= max2
	})
	return n <= max2, err
}

// creditNodes adds each node's digest to the part its position falls in (bounds sorted;
// the head falls in part 0).
func creditNodes(nodes []storedNode, bounds [][]byte, out []Digest) {
	p := 0
	for _, n := range nodes {
		for !n.head && p < len(bounds) && bytes.Compare(bounds[p], n.pos) <= 0 {
			p++
		}
		out[p] = out[p].Add(n.d)
	}
}

// CutDigests returns the digests of the parts of [lo, hi) cut at bounds under cut
// semantics: every cut point (lo, each bound, hi) stands for the first level-1 node at or
// after it, so each part holds the entries of whole level-1 nodes, those whose positions
// fall between its cut points. Where the cut points are level-1 node positions this is
// Digests. No entry is ever read: a small range costs one forward scan of its level-1
// nodes, a large one a top-down walk that stops at level 1.
func (s *Stored) CutDigests(lo, hi []byte, bounds [][]byte) ([]Digest, error) {
	out := make([]Digest, len(bounds)+1)
	if len(bounds) == 0 && rangeIsEmpty(lo, hi) {
		return out, nil
	}
	if err := checkPartBounds(lo, hi, bounds); err != nil {
		return nil, err
	}
	if lo == nil && hi == nil && len(bounds) == 0 {
		root, err := s.Root()
		return []Digest{root}, err
	}
	t, err := s.loadTop()
	if err != nil || t == 0 {
		return out, err
	}
	if _, small, err := s.cutScanDigests(lo, hi, bounds, out, 0); err != nil || small {
		return out, err
	}
	_, err = s.cutDigestsWalk(t, lo, hi, bounds, out, false)
	return out, err
}

// cutDigestsWalk is CutDigests' top-down walk (T = t) for large ranges. With snaps it also
// returns what lo, each bound and hi snap to, as CutDigestsSnapped: those the walk passes
// are recorded on the way (storedWalker.snap), and SnapCuts finds the rest.
func (s *Stored) cutDigestsWalk(t int, lo, hi []byte, bounds [][]byte, out []Digest, snaps bool) ([][]byte, error) {
	w := newStoredWalker(s, lo, hi, bounds, out)
	w.whole1 = true
	if snaps {
		w.snaps, w.has = make([][]byte, len(w.cuts)), make([]bool, len(w.cuts))
	}
	end := s.levelEnd(t)
	if hi != nil {
		end = s.nodeKey(t, hi)
	}
	nodes, err := s.nodesIn(t, s.headKey(t), end)
	if err != nil {
		return nil, err
	}
	if err := w.distribute(t, nodes, nil, true); err != nil || !snaps {
		return nil, err
	}
	var rest [][]byte
	for k, ok := range w.has {
		if !ok {
			rest = append(rest, w.cuts[k])
		}
	}
	found, err := s.SnapCuts(rest)
	if err != nil {
		return nil, err
	}
	for k, ok := range w.has {
		if !ok {
			w.snaps[k], found = found[0], found[1:]
		}
	}
	return padSnaps(lo, hi, w.snaps), nil // w.cuts are CutPoints(lo, hi, bounds)
}

// CutPoints returns lo (unless open), the bounds and hi (unless open), in order: the
// points of a range and its bounds that SnapCuts snaps.
func CutPoints(lo, hi []byte, bounds [][]byte) [][]byte {
	ps := make([][]byte, 0, len(bounds)+2)
	if lo != nil {
		ps = append(ps, lo)
	}
	ps = append(ps, bounds...)
	if hi != nil {
		ps = append(ps, hi)
	}
	return ps
}

// padSnaps turns what CutPoints(lo, hi, bounds) snap to into CutDigestsSnapped's snapped:
// nil in the places of an open lo or hi.
func padSnaps(lo, hi []byte, found [][]byte) [][]byte {
	snapped := make([][]byte, 0, len(found)+2)
	if lo == nil {
		snapped = append(snapped, nil)
	}
	snapped = append(snapped, found...)
	if hi == nil {
		snapped = append(snapped, nil)
	}
	return snapped
}

// withSnaps returns ds and, when snaps is set, what lo, each bound and hi snap to, found
// with SnapCuts: CutDigestsSnapped's answer for ranges it answers without a scan or walk.
func (s *Stored) withSnaps(snaps bool, lo, hi []byte, bounds [][]byte, ds []Digest, err error) ([]Digest, [][]byte, error) {
	if err != nil || !snaps {
		return ds, nil, err
	}
	found, err := s.SnapCuts(CutPoints(lo, hi, bounds))
	if err != nil {
		return nil, nil, err
	}
	return ds, padSnaps(lo, hi, found), nil
}

// CutDigestsSnapped is CutDigests that also returns what lo, each bound and hi snap to
// (len bounds+2 positions: the first level-1 node at or after each, nil for none or for an
// open lo or hi): always when snaps is set, and otherwise only where the range was small
// enough to be answered by one scan of its level-1 nodes (snapped is nil otherwise). For
// a large range with snaps the walk records the snaps it passes, and SnapCuts finds the
// rest. count, when not 0, is how many entries the caller expects in the range: a hint
// that spares probing its size.
func (s *Stored) CutDigestsSnapped(lo, hi []byte, bounds [][]byte, count uint64, snaps bool) (ds []Digest, snapped [][]byte, err error) {
	if len(bounds) == 0 && rangeIsEmpty(lo, hi) || (lo == nil && hi == nil && len(bounds) == 0) {
		ds, err = s.CutDigests(lo, hi, bounds)
		return s.withSnaps(snaps, lo, hi, bounds, ds, err)
	}
	if err := checkPartBounds(lo, hi, bounds); err != nil {
		return nil, nil, err
	}
	t, err := s.loadTop()
	if err != nil || t == 0 {
		ds, err = s.CutDigests(lo, hi, bounds)
		return s.withSnaps(snaps, lo, hi, bounds, ds, err)
	}
	out := make([]Digest, len(bounds)+1)
	snapped, small, err := s.cutScanDigests(lo, hi, bounds, out, count)
	if err != nil || small {
		return out, snapped, err
	}
	snapped, err = s.cutDigestsWalk(t, lo, hi, bounds, out, snaps)
	return out, snapped, err
}

// SplitCuts is Split restricted to level-1 nodes (cut entries), under cut semantics (see
// CutDigests): it returns up to k-1 sorted level-1 node positions strictly inside (lo, hi)
// that cut [lo, hi) into parts of near-equal count, for each the position of the level-1
// node before it (nil when it is the first), from which a session derives a short
// separator that snaps back to it (prevs is nil when a range other than the whole index
// was too large to be read as whole level-1 nodes: the cuts come from a higher level, and
// their predecessors would cost a seek each), and, when the range was small enough to be
// read as
// whole level-1 nodes, the parts' digests (nil otherwise: ask CutDigests). A range with
// too few level-1 nodes gets fewer cuts, possibly none. count, when not 0, is how many
// entries the caller expects in the range (a hint that spares probing its size). Cost: as
// Split, plus a reverse seek per bound for the split of the whole index.
func (s *Stored) SplitCuts(lo, hi []byte, k int, count uint64) (bounds, prevs [][]byte, ds []Digest, err error) {
	bounds, prevs, _, ds, err = s.splitCuts(lo, hi, k, count, false)
	return bounds, prevs, ds, err
}

// SplitCutsAt is SplitCuts for a caller whose bounds may stand for nodes of a higher level
// (see reconcile's cut levels): where SplitCuts takes its cuts from level l > 1 and would
// return prevs nil, SplitCutsAt returns level l and, for each bound, the level-l node
// before it (nil when it is the first), read in the same scan. Otherwise level is 1 and
// it returns what SplitCuts does.
func (s *Stored) SplitCutsAt(lo, hi []byte, k int, count uint64) (bounds, prevs [][]byte, level int, ds []Digest, err error) {
	return s.splitCuts(lo, hi, k, count, true)
}

// splitCuts is SplitCuts, and with levels SplitCutsAt.
func (s *Stored) splitCuts(lo, hi []byte, k int, count uint64, levels bool) (bounds, prevs [][]byte, level int, ds []Digest, err error) {
	if k < 2 || rangeIsEmpty(lo, hi) {
		return nil, nil, 1, nil, nil
	}
	t, err := s.loadTop()
	if err != nil || t == 0 {
		return nil, nil, 1, nil, err
	}
	// A range of few level-1 nodes is read whole: one scan gives the cuts, their
	// predecessors and the parts' digests. Not when the parts asked for are as large as a
	// level-2 node: cutting at level-2 nodes then reads 16 times fewer nodes.
	var small bool
	if count > 0 {
		small = count>>s.nbits <= uint64(cutScanNodes(k)) && !s.partsSpanLevel2(count, k)
	} else if small, err = s.fewLevel1(lo, hi, cutScanNodes(k)); err != nil {
		return nil, nil, 1, nil, err
	}
	if small {
		// A probe or hint that was off only costs the scan: go on as for a large range.
		if bounds, prevs, ds, err = s.splitCutsScan(lo, hi, k, cutScanNodes(k)); err != nil || prevs != nil {
			return bounds, prevs, 1, ds, err
		}
	}
	c := count
	if c == 0 {
		all, err := s.CutDigests(lo, hi, nil)
		if err != nil {
			return nil, nil, 1, nil, err
		}
		c = all[0].Count
	}
	if c <= 1 {
		return nil, nil, 1, nil, nil
	}
	parts := min(uint64(k), c)
	fan := uint64(1) << s.nbits
	// Nodes of about a part: coarser than Split's quarter, as balance matters less than
	// reading few nodes here (the next split adapts to each part's count).
	l, size, q := 0, uint64(1), c/parts
	for l < t && size <= q/fan {
		size *= fan
		l++
	}
	for ; l > 1; l-- {
		out, lprevs, lds, err := s.splitLevelPrevs(l, lo, hi, c, parts, true)
		if err != nil {
			return nil, nil, 1, nil, err
		}
		if out == nil {
			continue
		}
		if levels && (lo != nil || hi != nil) {
			return out, lprevs, l, lds, nil
		}
		if lo != nil || hi != nil {
			// The level-1 nodes before these cuts are not at hand: prevs stays nil, and a
			// session sends these bounds whole, which also lets the other side cut at them
			// without reading below the level they were taken from.
			return out, nil, 1, nil, nil
		}
		// The split of everything opens every session, identical stores included: its
		// bounds stay short, for a reverse seek each.
		prevs = make([][]byte, len(out))
		for i, b := range out {
			ns, err := s.lastNodes(1, b, 2, true)
			if err != nil {
				return nil, nil, 1, nil, err
			}
			if len(ns) < 2 || ns[0].head || !bytes.Equal(ns[0].pos, b) {
				return nil, nil, 1, nil, errStoredCorrupt("split bound is not a level-1 node")
			}
			if !ns[1].head {
				prevs[i] = ns[1].pos
			}
		}
		return out, prevs, 1, nil, nil
	}
	// Cutting at level 1 reads every level-1 node of the range anyway: read them once and
	// take the digests and predecessors from the same scan. Its parts hold at most about
	// 2·16 nodes (the level choice above), so the range holds at most about 32k of them.
	if bounds, prevs, ds, err = s.splitCutsScan(lo, hi, k, 64*k+smallRangeNodes); err != nil || prevs != nil {
		return bounds, prevs, 1, ds, err
	}
	out, err := s.splitLevel(1, lo, hi, c, parts, true)
	if err != nil || out == nil {
		return nil, nil, 1, nil, err
	}
	return out, nil, 1, nil, nil
}

// splitCutsScan is SplitCuts by one scan of the range's level-1 nodes, when there are at
// most limit of them; otherwise it returns all nil (prevs is never nil otherwise).
func (s *Stored) splitCutsScan(lo, hi []byte, k, limit int) (bounds, prevs [][]byte, ds []Digest, err error) {
	nodes, ok, err := s.cutNodes(lo, hi, limit)
	if err != nil || !ok {
		return nil, nil, nil, err
	}
	counts := make([]uint64, len(nodes))
	var c uint64
	for i, n := range nodes {
		counts[i] = n.d.Count
		c += n.d.Count
	}
	if c <= 1 { // nothing to cut
		ds = make([]Digest, 1)
		creditNodes(nodes, nil, ds)
		return nil, [][]byte{}, ds, nil
	}
	parts := min(uint64(k), c)
	bounds = splitBottomUp(nodes, counts, lo, hi, int(parts))
	// The node before each bound is the one before it in nodes.
	prevs = make([][]byte, len(bounds))
	j := 0
	for i, b := range bounds {
		for j < len(nodes) && (nodes[j].head || !bytes.Equal(nodes[j].pos, b)) {
			j++
		}
		if j > 0 && !nodes[j-1].head {
			prevs[i] = nodes[j-1].pos
		}
	}
	ds = make([]Digest, len(bounds)+1)
	creditNodes(nodes, bounds, ds)
	return bounds, prevs, ds, nil
}
