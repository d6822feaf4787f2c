package sql

import (
	"bytes"
	"context"
	"slices"
	"sort"

	"github.com/reconcile-dev/reconcile/merkle"
)

// Partial catch-up. A catch-up of a few writes reads and rewrites only the superchunks
// their entries fall in (and, where a chunk start goes, the superchunk before), not every
// chunk of the index: O(d) index rows for d writes, as the session that follows reads
// O(d log n). A group is a run of consecutive superchunks loaded whole; within it the
// chunk sums, splits and merges are computed exactly as the full catch-up does, and the
// superchunks are regrouped from the group's chunks. Larger catch-ups (a change for every
// 512 entries or more) load every chunk instead (catchup.apply), in one sequential read.

// partialBatch is how many subqueries or ranges one statement of the partial catch-up
// names.
const partialBatch = 100

// group is a run of consecutive superchunks [supers[0].lo, next) and their chunks.
type group struct {
	supers []*chunkRow // as stored, in order
	next   []byte      // the start of the superchunk after the group (nil: none)
	chunks []*chunkRow // as stored, in order
}

func (g *group) lo() []byte { return g.supers[0].lo }

// partialWorthIt reports whether a catch-up step of n entry changes should use the partial
// path: it must not have loaded every chunk already, and the changes must be few against
// the index (the meta row's count).
func (c *catchup) partialWorthIt(ctx context.Context, n int) (bool, error) {
	if c.chunks != nil {
		return false, nil
	}
	if !c.rootLoaded {
		var cnt int64
		var sum []byte
		if err := c.tx.QueryRowContext(ctx, "SELECT n, s FROM "+c.n.meta+" WHERE id = 1").Scan(&cnt, &sum); err != nil {
			return false, c.t.d.dbErr(err)
		}
		if len(sum) != 32 || cnt < 0 {
			return false, staleError(c.t.cfg.Table, "its root is malformed")
		}
		c.root.Count = uint64(cnt)
		copy(c.root.Sum[:], sum)
		c.rootLoaded = true
	}
	// A change costs the partial path a share of a batched index probe for a superchunk or
	// two of chunks (spansQuery); the full path reads every chunk (one per 16 entries) in
	// one sequential query. Measured on 1M PostgreSQL rows, 1,000 changes took 0.27-0.44 s
	// either way (the partial path took 2.1-2.6 s while its probes were a UNION ALL, which
	// PostgreSQL plans slowly), hence one change per 512 entries.
	every := uint64(512)
	if c.t.partialEvery > 0 {
		every = uint64(c.t.partialEvery) // tests use small tables
	}
	return uint64(n)*every < c.root.Count, nil
}

// applyPartial is catchup.apply for a few changes: it writes the entries, then reads,
// recomputes and writes the groups of superchunks they touch, and the root.
func (c *catchup) applyPartial(ctx context.Context, removes, adds []indexEntry) error {
	t := c.t
	if err := c.moveEntries(ctx, removes, adds); err != nil {
		return err
	}
	for _, ie := range removes {
		c.root = c.root.Sub(one(ie.h))
	}
	for _, ie := range adds {
		c.root = c.root.Add(one(ie.h))
	}

	var ps [][]byte
	for _, ie := range removes {
		ps = append(ps, ie.pos)
	}
	for _, ie := range adds {
		ps = append(ps, ie.pos)
	}
	// Every superchunk row (one per 256 entries or so, as each session reads them too);
	// the chunks are read only for the superchunks the changes fall in.
	supers, err := t.readLevel(ctx, c.tx, c.n.super, nil, nil)
	if err != nil {
		return err
	}
	if len(supers) == 0 || len(supers[0].lo) != 0 {
		return staleError(t.cfg.Table, "no superchunk starts at the first position")
	}
	wanted := map[int]bool{}
	for _, p := range ps {
		wanted[chunkOf(supers, p)] = true
	}
	for {
		groups, err := c.loadGroups(ctx, supers, wanted)
		if err != nil {
			return err
		}
		var out [][]*chunkRow
		var grow [][]byte // groups that must take in the superchunk before them
		for _, g := range groups {
			cs, backward, err := c.recompute(ctx, g, removes, adds)
			if err != nil {
				return err
			}
			if backward {
				grow = append(grow, g.lo())
			}
			out = append(out, cs)
		}
		if len(grow) > 0 {
			// A group's first chunk lost its start (or its superchunk start): it merges
			// into the chunk before, which is loaded next time round.
			for _, lo := range grow {
				i := chunkOf(supers, lo)
				if i <= 0 {
					return staleError(t.cfg.Table, "a chunk merges backward past the first superchunk")
				}
				wanted[i-1] = true
			}
			continue
		}
		var w groupWrites
		for i, g := range groups {
			w.add(g, out[i])
		}
		if err := c.writeGroups(ctx, &w); err != nil {
			return err
		}
		c.partialDirty = true
		t.partialSteps.Add(1)
		return nil
	}
}

// recompute applies the changes that fall in g to its chunks, as the full catch-up does.
// backward reports that the group's first chunk would merge into the chunk before it (its
// start went, or it no longer starts a superchunk): the caller must load that one too.
func (c *catchup) recompute(ctx context.Context, g *group, removes, adds []indexEntry) (out []*chunkRow, backward bool, err error) {
	return c.rechunk(ctx, g.chunks, g.lo(), g.next, removes, adds)
}

// rechunk applies the changes that fall in [lo, next) (nil: open) to old, the chunks that
// cover exactly that range, in order, and returns the new chunks: each old chunk's sum
// plus what came and minus what went, cut where a new chunk start came (the pieces after
// each new start summed from the entries, in batched statements), merged into the chunk
// before where its start went. backward reports that old's first chunk would merge into
// the chunk before lo (its start went, or it no longer starts a superchunk); the first
// chunk of the index (an empty lo) never does.
func (c *catchup) rechunk(ctx context.Context, old []*chunkRow, lo, next []byte, removes, adds []indexEntry) (out []*chunkRow, backward bool, err error) {
	in := func(p []byte) bool {
		return (lo == nil || bytes.Compare(p, lo) >= 0) && (next == nil || bytes.Compare(p, next) < 0)
	}
	sums := make([]merkle.Digest, len(old))
	sup := make([]bool, len(old))
	for i, ch := range old {
		sums[i], sup[i] = ch.d, ch.sup
	}
	endsRemoved := map[int]bool{} // old chunks whose first entry went
	for _, ie := range removes {
		if !in(ie.pos) {
			continue
		}
		i := chunkOf(old, ie.pos)
		sums[i] = sums[i].Sub(one(ie.h))
		if len(old[i].lo) > 0 && bytes.Equal(old[i].lo, ie.pos) {
			endsRemoved[i] = true
		}
	}
	newStarts := map[int][]indexEntry{} // new chunk starts inside each old chunk's range
	for _, ie := range adds {
		if !in(ie.pos) {
			continue
		}
		i := chunkOf(old, ie.pos)
		sums[i] = sums[i].Add(one(ie.h))
		if !chunkStart(ie.h) {
			continue
		}
		if bytes.Equal(old[i].lo, ie.pos) {
			delete(endsRemoved, i) // a start at the same position came back
			sup[i] = superStart(ie.h)
			continue
		}
		newStarts[i] = append(newStarts[i], ie)
	}
	if len(old[0].lo) > 0 && (endsRemoved[0] || !sup[0]) {
		return nil, true, nil
	}
	// The pieces after the new starts, in position order, and their sums.
	var pieces []*chunkRow
	var spans []span
	for i := range old {
		starts := newStarts[i]
		sort.Slice(starts, func(a, b int) bool { return bytes.Compare(starts[a].pos, starts[b].pos) < 0 })
		for j, st := range starts {
			hi := next
			switch {
			case j+1 < len(starts):
				hi = starts[j+1].pos
			case i+1 < len(old):
				hi = old[i+1].lo
			}
			pieces = append(pieces, &chunkRow{lo: st.pos, sup: superStart(st.h)})
			spans = append(spans, span{st.pos, hi})
		}
	}
	if err := c.sumSpans(ctx, spans, pieces); err != nil {
		return nil, false, err
	}
	for i, ch := range old {
		// The first piece keeps what the pieces after the new starts do not hold.
		first := sums[i]
		k := len(newStarts[i])
		for _, p := range pieces[:k] {
			first = first.Sub(p.d)
		}
		if endsRemoved[i] {
			out[len(out)-1].d = out[len(out)-1].d.Add(first) // i > 0: merges into the chunk before
		} else {
			out = append(out, &chunkRow{lo: ch.lo, d: first, sup: sup[i]})
		}
		out = append(out, pieces[:k]...)
		pieces = pieces[k:]
	}
	return out, false, nil
}

// sumSpans sets each of pieces' digest to the sum of the entries in the matching span
// (spans in position order, not overlapping), reading them partialBatch spans a statement.
func (c *catchup) sumSpans(ctx context.Context, spans []span, pieces []*chunkRow) error {
	t := c.t
	for len(spans) > 0 {
		part, ps := spans[:min(len(spans), partialBatch)], pieces[:min(len(spans), partialBatch)]
		spans, pieces = spans[len(part):], pieces[len(part):]
		q, args := t.spansQuery(c.n.ent, "pos, h", "pos", part)
		rs, err := c.tx.QueryContext(ctx, q, args...)
		if err != nil {
			return t.d.dbErr(err)
		}
		k := 0
		for rs.Next() {
			var pos, h []byte
			if err := rs.Scan(&pos, &h); err != nil {
				rs.Close()
				return err
			}
			for k+1 < len(part) && bytes.Compare(part[k+1].lo, pos) <= 0 {
				k++
			}
			var hh merkle.Hash
			copy(hh[:], h)
			ps[k].d = ps[k].d.Add(one(hh))
		}
		err = rs.Err()
		rs.Close()
		if err != nil {
			return t.d.dbErr(err)
		}
	}
	return nil
}

// groupWrites are the row changes of the groups of one step, written together.
type groupWrites struct {
	delChunks, delSupers [][]byte
	insChunks, insSupers []*chunkRow
	prevs                [][2][]byte // superchunk lo, its new prev
}

// add records what replacing g's chunk and superchunk rows by those of its new chunks cs
// changes (rows that did not change are left alone), and the next superchunk's prev when
// the group's last chunk moved.
func (w *groupWrites) add(g *group, cs []*chunkRow) {
	del, ins := rowChanges(g.chunks, cs, sameChunk)
	w.delChunks, w.insChunks = append(w.delChunks, del...), append(w.insChunks, ins...)

	// The group's superchunks, from its chunks as supersOf makes them from all chunks; the
	// first keeps its prev (the chunk before the group, which did not change).
	supers := supersOf(cs)
	supers[0].prev = g.supers[0].prev
	del, ins = rowChanges(g.supers, supers, sameSuper)
	w.delSupers, w.insSupers = append(w.delSupers, del...), append(w.insSupers, ins...)
	if g.next != nil && !bytes.Equal(cs[len(cs)-1].lo, g.chunks[len(g.chunks)-1].lo) {
		w.prevs = append(w.prevs, [2][]byte{g.next, cs[len(cs)-1].lo})
	}
}

// writeGroups writes the changes of a step's groups in bulk statements.
func (c *catchup) writeGroups(ctx context.Context, w *groupWrites) error {
	t := c.t
	if err := t.deleteRows(ctx, c.tx, c.n.chunk, "lo", w.delChunks); err != nil {
		return err
	}
	if err := t.insertChunks(ctx, c.tx, c.n, w.insChunks); err != nil {
		return err
	}
	if err := t.deleteRows(ctx, c.tx, c.n.super, "lo", w.delSupers); err != nil {
		return err
	}
	if err := t.insertSupers(ctx, c.tx, c.n, w.insSupers); err != nil {
		return err
	}
	for _, p := range w.prevs {
		_, err := c.tx.ExecContext(ctx, "UPDATE "+c.n.super+" SET prev = "+t.p(1)+" WHERE lo = "+t.p(2), p[1], p[0])
		if err != nil {
			return t.d.dbErr(err)
		}
	}
	return nil
}

// loadGroups groups the superchunks wanted (indexes into supers, every superchunk in
// order) into runs of consecutive ones, and reads their chunks.
func (c *catchup) loadGroups(ctx context.Context, supers []*chunkRow, wanted map[int]bool) ([]*group, error) {
	t := c.t
	idx := make([]int, 0, len(wanted))
	for i := range wanted {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	var groups []*group
	for k, i := range idx {
		var next []byte
		if i+1 < len(supers) {
			next = supers[i+1].lo
		}
		if k > 0 && idx[k-1] == i-1 {
			g := groups[len(groups)-1]
			g.supers, g.next = append(g.supers, supers[i]), next
			continue
		}
		groups = append(groups, &group{supers: []*chunkRow{supers[i]}, next: next})
	}
	// Every group's chunks: one range scan each, batched.
	for i := 0; i < len(groups); i += partialBatch {
		part := groups[i:min(i+partialBatch, len(groups))]
		spans := make([]span, len(part))
		for k, g := range part {
			spans[k] = span{g.lo(), g.next}
		}
		q, args := t.spansQuery(c.n.chunk, "lo, n, s, sup", "lo", spans)
		rows, err := t.readRows(ctx, c.tx, true, q, args)
		if err != nil {
			return nil, err
		}
		k := 0
		for _, g := range part {
			for k < len(rows) && bytes.Compare(rows[k].lo, g.lo()) < 0 {
				k++
			}
			for k < len(rows) && (g.next == nil || bytes.Compare(rows[k].lo, g.next) < 0) {
				g.chunks = append(g.chunks, rows[k])
				k++
			}
			if len(g.chunks) == 0 || !bytes.Equal(g.chunks[0].lo, g.lo()) {
				return nil, staleError(t.cfg.Table, "a superchunk does not start with a chunk")
			}
		}
	}
	return groups, nil
}
