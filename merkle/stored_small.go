package merkle

import "bytes"

// Small ranges (the last levels of a descent) are answered bottom-up from their level-1
// nodes: one reverse seek for the node holding lo, one forward scan to hi. A top-down walk
// would read about 16 nodes per level at each cut point, several times more.

// smallRangeNodes is the most level-1 nodes a range may span to be answered bottom-up.
const smallRangeNodes = 64

// level1Nodes returns the level-1 nodes covering [lo, hi) (the first one holds lo) when
// there are at most max of them; ok is false when the range spans more.
func (s *Stored) level1Nodes(lo, hi []byte, max int) (nodes []storedNode, ok bool, err error) {
	start := s.headKey(1)
	if lo != nil {
		ns, err := s.lastNodes(1, lo, 1, true)
		if err != nil {
			return nil, false, err
		}
		start = s.key(1, ns[0])
		if ns[0].head {
			nodes = append(nodes, ns[0]) // possibly an unstored, empty head
			start = s.boundStart(1)
		}
	}
	var arena posArena
	end := s.levelEnd(1)
	if hi != nil {
		end = s.nodeKey(1, hi)
	}
	err = s.scan(1, start, end, false, true, func(head bool, p []byte, d Digest) bool {
		if head && len(nodes) > 0 && nodes[0].head {
			return true // already have it
		}
		nodes = append(nodes, storedNode{pos: arena.copy(p), head: head, d: d})
		return len(nodes) <= max
	})
	if err != nil {
		return nil, false, err
	}
	return nodes, len(nodes) <= max, nil
}

// digestsBottomUp fills out (len(bounds)+1 parts of [lo, hi)) from the level-1 nodes
// covering the range: a node inside one part adds its digest, a node that a cut or an end
// of the range passes through is read entry by entry.
// When perNode is not nil it also receives each node's count of entries in the range.
func (s *Stored) digestsBottomUp(nodes []storedNode, lo, hi []byte, bounds [][]byte, out []Digest, perNode []uint64) error {
	p := 0 // the part the current node starts in
	for i, n := range nodes {
		var nend []byte // nil: +inf
		if i+1 < len(nodes) {
			nend = nodes[i+1].pos
		}
		for !n.head && p < len(bounds) && bytes.Compare(bounds[p], n.pos) <= 0 {
			p++
		}
		startsIn := lo == nil || (!n.head && bytes.Compare(n.pos, lo) >= 0)
		endsIn := hi == nil || (nend != nil && bytes.Compare(nend, hi) <= 0)
		oneCut := p >= len(bounds) || (nend != nil && bytes.Compare(bounds[p], nend) >= 0)
		if startsIn && endsIn && oneCut {
			out[p] = out[p].Add(n.d)
			if perNode != nil {
				perNode[i] = n.d.Count
			}
			continue
		}
		from, to := n.pos, nend
		if n.head {
			from = nil
		}
		if lo != nil && (from == nil || bytes.Compare(from, lo) < 0) {
			from = lo
		}
		if hi != nil && (to == nil || bytes.Compare(to, hi) > 0) {
			to = hi
		}
		start, end := s.levelStart(0), s.levelEnd(0)
		if from != nil {
			start = s.nodeKey(0, from)
		}
		if to != nil {
			end = s.nodeKey(0, to)
		}
		q := p
		err := s.scan(0, start, end, false, true, func(_ bool, pos []byte, d Digest) bool {
			for q < len(bounds) && bytes.Compare(bounds[q], pos) <= 0 {
				q++
			}
			out[q] = out[q].Add(d)
			if perNode != nil {
				perNode[i]++
			}
			return true
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// countsBottomUp returns how many entries of [lo, hi) each node holds.
func (s *Stored) countsBottomUp(nodes []storedNode, lo, hi []byte) ([]uint64, error) {
	out := make([]uint64, len(nodes))
	return out, s.digestsBottomUp(nodes, lo, hi, nil, make([]Digest, 1), out)
}

// splitBottomUp picks up to parts-1 level-1 boundaries strictly inside (lo, hi) nearest to
// the count quantiles of the range, from the nodes covering it and their in-range counts.
// Every part it cuts holds at least one entry.
func splitBottomUp(nodes []storedNode, counts []uint64, lo, hi []byte, parts int) [][]byte {
	var total uint64
	for _, c := range counts {
		total += c
	}
	var cands [][]byte
	var ranks []uint64 // entries of the range before each candidate
	var r uint64
	for i, n := range nodes {
		if !n.head && r > 0 && r < total && (lo == nil || bytes.Compare(n.pos, lo) > 0) && (hi == nil || bytes.Compare(n.pos, hi) < 0) {
			cands = append(cands, n.pos)
			ranks = append(ranks, r)
		}
		r += counts[i]
	}
	need := min(parts, int(total)) - 1
	if need <= 0 {
		return nil
	}
	if len(cands) <= need {
		return cands
	}
	out := make([][]byte, 0, need)
	j := 0
	for i := 1; i <= need; i++ {
		target := uint64(i) * total / uint64(need+1)
		maxJ := len(cands) - 1 - (need - i)
		for j < maxJ && absDiff(ranks[j+1], target) <= absDiff(ranks[j], target) {
			j++
		}
		out = append(out, cands[j])
		j++
	}
	return out
}
