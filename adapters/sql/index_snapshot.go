package sql

import (
	"bytes"
	"context"
	dbsql "database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// indexSnapshot answers a session from the maintained index, in one read transaction.
//
// Three levels, each read lazily: the superchunk sums (all of them, at the first range
// question), the chunk sums of a superchunk (when a range ends inside it; all chunks at
// once after lazySupers superchunks), and the entries of a chunk (when a range ends inside
// it). Ranges that end on superchunk or chunk starts need no reads below. Entries that
// expired by the session's now are read once at open (an indexed query on expiry) and
// taken off the sums above them.
type indexSnapshot struct {
	t   *Table
	n   indexNames
	tx  *dbsql.Tx
	now int64

	info    reconcile.Info
	expired map[string]merkle.Hash // position -> entry hash, of entries expired at now

	supers  []*superNode    // nil until first needed
	sprefix []merkle.Digest // sprefix[i]: the live digest of supers[:i]
	loaded  int             // superchunks whose chunks were read one by one
	stats   merkle.ReadStats
}

// superNode is a superchunk with, once read, its chunks.
type superNode struct {
	chunkRow
	chunks []*chunkNode    // nil until read
	prefix []merkle.Digest // prefix[i]: the live digest of chunks[:i]
}

// chunkNode is a chunk with, once read, its live entries and their positions.
type chunkNode struct {
	chunkRow
	entries []merkle.Entry
	hashes  []merkle.Hash
	pos     [][]byte
	read    bool
}

// lazySupers is how many superchunks' chunks are read one query each before the rest are
// read in one.
const lazySupers = 16

// openIndex catches up and opens an index snapshot at now.
func (t *Table) openIndex(ctx context.Context, now int64) (reconcile.Snapshot, error) {
	if _, err := t.catchUp(ctx); err != nil {
		return nil, err
	}
	tx, _, err := t.d.beginRead(ctx, t.db)
	if err != nil {
		return nil, fmt.Errorf("open a read snapshot of %s: %w", t.cfg.Table, err)
	}
	s := &indexSnapshot{t: t, n: t.indexNames(), tx: tx, now: now, expired: map[string]merkle.Hash{}}
	if err := s.open(ctx); err != nil {
		tx.Rollback()
		return nil, err
	}
	return s, nil
}

func (s *indexSnapshot) open(ctx context.Context) error {
	t := s.t
	var cnt int64
	var sum []byte
	if err := s.tx.QueryRowContext(ctx, "SELECT n, s FROM "+s.n.meta+" WHERE id = 1").Scan(&cnt, &sum); err != nil {
		return fmt.Errorf("read the index of %s: %w", t.cfg.Table, t.d.dbErr(err))
	}
	root := merkle.Digest{Count: uint64(cnt)}
	copy(root.Sum[:], sum)
	// Two index ranges (never-expiring entries hold 0, between them).
	for _, where := range []string{"exp > 0 AND exp <= " + t.p(1), "exp < 0"} {
		var args []any
		if strings.Contains(where, "<=") {
			args = append(args, s.now)
		}
		rs, err := s.tx.QueryContext(ctx, "SELECT pos, h FROM "+s.n.ent+" WHERE "+where, args...)
		if err != nil {
			return fmt.Errorf("read expired entries of %s: %w", t.cfg.Table, t.d.dbErr(err))
		}
		for rs.Next() {
			var pos, h []byte
			if err := rs.Scan(&pos, &h); err != nil {
				rs.Close()
				return err
			}
			var hh merkle.Hash
			copy(hh[:], h)
			s.expired[string(pos)] = hh
			root = root.Sub(one(hh))
			s.stats.Entries++
		}
		err = rs.Err()
		rs.Close()
		if err != nil {
			return t.d.dbErr(err)
		}
	}
	s.info = reconcile.Info{Ordering: t.ordering, Schema: t.schema, Root: root}
	return nil
}

func (s *indexSnapshot) Info() reconcile.Info { return s.info }

// loadSupers reads the superchunk sums, less their expired entries.
func (s *indexSnapshot) loadSupers(ctx context.Context) error {
	if s.supers != nil {
		return nil
	}
	rows, err := s.t.readLevel(ctx, s.tx, s.n.super, nil, nil)
	if err != nil {
		return fmt.Errorf("read the index of %s: %w", s.t.cfg.Table, err)
	}
	if len(rows) == 0 || len(rows[0].lo) != 0 {
		return staleError(s.t.cfg.Table, "it has no first superchunk")
	}
	s.stats.Nodes += int64(len(rows))
	s.supers = make([]*superNode, len(rows))
	los := make([]*chunkRow, len(rows))
	for i, r := range rows {
		s.supers[i] = &superNode{chunkRow: *r}
		los[i] = r
	}
	for pos, h := range s.expired {
		sn := s.supers[chunkOf(los, []byte(pos))]
		sn.d = sn.d.Sub(one(h))
	}
	s.sprefix = make([]merkle.Digest, len(s.supers)+1)
	for i, sn := range s.supers {
		s.sprefix[i+1] = s.sprefix[i].Add(sn.d)
	}
	return nil
}

// superOf returns the index of the superchunk holding p.
func (s *indexSnapshot) superOf(p []byte) int {
	lo, hi := 0, len(s.supers)
	for lo < hi {
		m := (lo + hi) / 2
		if bytes.Compare(s.supers[m].lo, p) <= 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo - 1
}

// chunksOf returns superchunk i's chunks, reading them if needed.
func (s *indexSnapshot) chunksOf(ctx context.Context, i int) ([]*chunkNode, error) {
	sn := s.supers[i]
	if sn.chunks != nil {
		return sn.chunks, nil
	}
	if s.loaded >= lazySupers {
		if err := s.loadAllChunks(ctx); err != nil {
			return nil, err
		}
		return sn.chunks, nil
	}
	s.loaded++
	var hi []byte
	if i+1 < len(s.supers) {
		hi = s.supers[i+1].lo
	}
	rows, err := s.t.readLevel(ctx, s.tx, s.n.chunk, sn.lo, hi)
	if err != nil {
		return nil, fmt.Errorf("read the index of %s: %w", s.t.cfg.Table, err)
	}
	var expired []expiredEntry
	for pos, h := range s.expired {
		if s.superOf([]byte(pos)) == i {
			expired = append(expired, expiredEntry{[]byte(pos), h})
		}
	}
	if err := s.attach(sn, rows, expired); err != nil {
		return nil, err
	}
	return sn.chunks, nil
}

// expiredBySuper groups the expired entries by the superchunk they fall in.
func (s *indexSnapshot) expiredBySuper() map[int][]expiredEntry {
	out := map[int][]expiredEntry{}
	for pos, h := range s.expired {
		i := s.superOf([]byte(pos))
		out[i] = append(out[i], expiredEntry{[]byte(pos), h})
	}
	return out
}

// expiredEntry is an entry expired at the session's now: its position and hash.
type expiredEntry struct {
	pos []byte
	h   merkle.Hash
}

// loadAllChunks reads every chunk sum in one query and attaches them to their superchunks.
func (s *indexSnapshot) loadAllChunks(ctx context.Context) error {
	rows, err := s.t.readLevel(ctx, s.tx, s.n.chunk, nil, nil)
	if err != nil {
		return fmt.Errorf("read the index of %s: %w", s.t.cfg.Table, err)
	}
	expired := s.expiredBySuper()
	j := 0
	for i, sn := range s.supers {
		k := j
		for k < len(rows) && (i+1 == len(s.supers) || bytes.Compare(rows[k].lo, s.supers[i+1].lo) < 0) {
			k++
		}
		if sn.chunks == nil {
			if err := s.attach(sn, rows[j:k], expired[i]); err != nil {
				return err
			}
		}
		j = k
	}
	return nil
}

// attach gives superchunk sn its chunks, less their expired entries (those of expired
// that fall in sn), and checks that they add up to its sum.
func (s *indexSnapshot) attach(sn *superNode, rows []*chunkRow, expired []expiredEntry) error {
	s.stats.Nodes += int64(len(rows))
	if len(rows) == 0 || !bytes.Equal(rows[0].lo, sn.lo) {
		return staleError(s.t.cfg.Table, "a superchunk does not start with a chunk")
	}
	sn.chunks = make([]*chunkNode, len(rows))
	nodes := make([]chunkNode, len(rows))
	for i, r := range rows {
		nodes[i].chunkRow = *r
		sn.chunks[i] = &nodes[i]
	}
	for _, x := range expired {
		c := sn.chunks[chunkOfNodes(sn.chunks, x.pos)]
		c.d = c.d.Sub(one(x.h))
	}
	sn.prefix = make([]merkle.Digest, len(rows)+1)
	for i, c := range sn.chunks {
		sn.prefix[i+1] = sn.prefix[i].Add(c.d)
	}
	if sn.prefix[len(rows)] != sn.d {
		return staleError(s.t.cfg.Table, "a superchunk's sum is not the sum of its chunks")
	}
	return nil
}

func chunkOfNodes(cs []*chunkNode, p []byte) int {
	lo, hi := 0, len(cs)
	for lo < hi {
		m := (lo + hi) / 2
		if bytes.Compare(cs[m].lo, p) <= 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo - 1
}

// entriesOf returns chunk j of superchunk i's live entries and positions, reading them if
// needed.
func (s *indexSnapshot) entriesOf(ctx context.Context, i, j int) (*chunkNode, error) {
	c := s.supers[i].chunks[j]
	if !c.read {
		if err := s.readChunks(ctx, []chunkRef{{i, j}}); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// chunkRef names chunk j of superchunk i (whose chunks are loaded).
type chunkRef struct{ i, j int }

// hiOf returns where chunk r ends: the next chunk's start (nil: the end of the index).
func (s *indexSnapshot) hiOf(r chunkRef) []byte {
	switch {
	case r.j+1 < len(s.supers[r.i].chunks):
		return s.supers[r.i].chunks[r.j+1].lo
	case r.i+1 < len(s.supers):
		return s.supers[r.i+1].lo
	}
	return nil
}

// run is a run of consecutive chunks, and the span they cover.
type run struct {
	span
	refs []chunkRef
}

// readBatch is how many runs of consecutive chunks one statement of readChunks reads.
const readBatch = 128

// readChunks reads the entries of chunks refs (unread, in position order): consecutive
// chunks as one range, up to readBatch ranges a statement (spansQuery).
func (s *indexSnapshot) readChunks(ctx context.Context, refs []chunkRef) error {
	var runs []run
	for k, r := range refs {
		if k > 0 && bytes.Equal(runs[len(runs)-1].hi, s.supers[r.i].chunks[r.j].lo) {
			last := &runs[len(runs)-1]
			last.hi, last.refs = s.hiOf(r), append(last.refs, r)
			continue
		}
		runs = append(runs, run{span{s.supers[r.i].chunks[r.j].lo, s.hiOf(r)}, []chunkRef{r}})
	}
	for len(runs) > 0 {
		part := runs[:min(len(runs), readBatch)]
		runs = runs[len(part):]
		spans := make([]span, len(part))
		var nodes []*chunkNode // the chunks read, in position order
		for k, r := range part {
			spans[k] = r.span
			for _, ref := range r.refs {
				nodes = append(nodes, s.supers[ref.i].chunks[ref.j])
			}
		}
		if err := s.readNodes(ctx, nodes, spans); err != nil {
			for _, c := range nodes { // a later read starts afresh
				c.entries, c.hashes, c.pos = nil, nil, nil
			}
			return err
		}
	}
	return nil
}

// readNodes reads the entries of spans, which are exactly the chunks nodes (in order).
func (s *indexSnapshot) readNodes(ctx context.Context, nodes []*chunkNode, spans []span) error {
	t := s.t
	q, args := t.spansQuery(s.n.ent, "k, pos, h, vh, exp", "pos", spans)
	rs, err := s.tx.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("read the index of %s: %w", t.cfg.Table, t.d.dbErr(err))
	}
	defer rs.Close()
	k := 0
	for rs.Next() {
		ie, err := t.scanEntry(rs)
		if err != nil {
			return err
		}
		s.stats.Entries++
		for k+1 < len(nodes) && bytes.Compare(nodes[k+1].lo, ie.pos) <= 0 {
			k++
		}
		if ie.e.Expired(s.now) {
			continue
		}
		c := nodes[k]
		c.entries = append(c.entries, ie.e)
		c.hashes = append(c.hashes, ie.h)
		c.pos = append(c.pos, ie.pos)
	}
	if err := rs.Err(); err != nil {
		return t.d.dbErr(err)
	}
	for _, c := range nodes {
		if uint64(len(c.entries)) != c.d.Count {
			return staleError(t.cfg.Table, fmt.Sprintf("a chunk's sum says %d entries, its entries are %d", c.d.Count, len(c.entries)))
		}
	}
	for _, c := range nodes {
		c.read = true
	}
	return nil
}

// prefetchMax bounds the chunks one Prefetch reads (about ChunkTarget entries each);
// chunks past it are read when listed.
const prefetchMax = 8192

// Prefetch reads the unread chunks of ranges in a few statements (reconcile.Prefetcher):
// a round lists a chunk or two in each of many ranges, which would otherwise cost a
// statement each.
func (s *indexSnapshot) Prefetch(ctx context.Context, ranges []reconcile.Range) error {
	if err := s.loadSupers(ctx); err != nil {
		return err
	}
	var refs []chunkRef
	seen := map[chunkRef]bool{}
	for _, r := range ranges {
		err := s.eachChunk(ctx, r.Lo, r.Hi, func(ref chunkRef, c *chunkNode) bool {
			if !c.read && !seen[ref] {
				seen[ref] = true
				refs = append(refs, ref)
			}
			return len(refs) < prefetchMax
		})
		if err != nil {
			return err
		}
	}
	slices.SortFunc(refs, func(a, b chunkRef) int {
		if a.i != b.i {
			return a.i - b.i
		}
		return a.j - b.j
	})
	return s.readChunks(ctx, refs)
}

// eachChunk calls fn with each chunk holding live entries of [lo, hi), in order, until it
// returns false.
func (s *indexSnapshot) eachChunk(ctx context.Context, lo, hi []byte, fn func(chunkRef, *chunkNode) bool) error {
	i := 0
	if lo != nil {
		i = max(0, s.superOf(lo))
	}
	for ; i < len(s.supers); i++ {
		if hi != nil && bytes.Compare(s.supers[i].lo, hi) >= 0 {
			return nil
		}
		if s.supers[i].d.Count == 0 {
			continue
		}
		cs, err := s.chunksOf(ctx, i)
		if err != nil {
			return err
		}
		j := 0
		if lo != nil && bytes.Compare(lo, s.supers[i].lo) > 0 {
			j = max(0, chunkOfNodes(cs, lo))
		}
		for ; j < len(cs); j++ {
			if hi != nil && bytes.Compare(cs[j].lo, hi) >= 0 {
				return nil
			}
			if cs[j].d.Count == 0 {
				continue
			}
			if !fn(chunkRef{i, j}, cs[j]) {
				return nil
			}
		}
	}
	return nil
}

// before returns the digest of the live entries at positions below p (nil: all).
func (s *indexSnapshot) before(ctx context.Context, p []byte) (merkle.Digest, error) {
	if p == nil {
		return s.sprefix[len(s.supers)], nil
	}
	i := s.superOf(p)
	if i < 0 {
		return merkle.Digest{}, nil
	}
	d := s.sprefix[i]
	if bytes.Equal(s.supers[i].lo, p) {
		return d, nil
	}
	cs, err := s.chunksOf(ctx, i)
	if err != nil {
		return d, err
	}
	j := chunkOfNodes(cs, p)
	d = d.Add(s.supers[i].prefix[j])
	if bytes.Equal(cs[j].lo, p) {
		return d, nil
	}
	c, err := s.entriesOf(ctx, i, j)
	if err != nil {
		return d, err
	}
	for k := range c.entries {
		if bytes.Compare(c.pos[k], p) >= 0 {
			break
		}
		d = d.Add(c.entries[k].Digest())
	}
	return d, nil
}

func (s *indexSnapshot) Digests(ctx context.Context, lo, hi []byte, bounds [][]byte) ([]merkle.Digest, error) {
	if err := s.loadSupers(ctx); err != nil {
		return nil, err
	}
	pts := make([][]byte, 0, len(bounds)+2)
	pts = append(pts, lo)
	pts = append(pts, bounds...)
	pts = append(pts, hi)
	out := make([]merkle.Digest, len(pts)-1)
	var prev merkle.Digest
	for i, p := range pts {
		var d merkle.Digest
		if i > 0 || p != nil {
			var err error
			if d, err = s.before(ctx, p); err != nil {
				return nil, err
			}
		}
		if i > 0 {
			out[i-1] = d.Sub(prev)
		}
		prev = d
	}
	return out, nil
}

// cand is a cut candidate: a start position and the live count before it.
type cand struct {
	pos    []byte
	before uint64
}

// Split cuts at superchunk starts where the range spans enough of them, else at chunk
// starts, and between entries only inside a chunk or two.
func (s *indexSnapshot) Split(ctx context.Context, lo, hi []byte, k int) ([][]byte, error) {
	if err := s.loadSupers(ctx); err != nil {
		return nil, err
	}
	var from merkle.Digest
	if lo != nil {
		var err error
		if from, err = s.before(ctx, lo); err != nil {
			return nil, err
		}
	}
	to, err := s.before(ctx, hi)
	if err != nil {
		return nil, err
	}
	total := to.Sub(from).Count
	if total <= 1 || k < 2 {
		return nil, nil
	}
	inside := func(p []byte) bool {
		if _, gone := s.expired[string(p)]; gone || len(p) == 0 {
			return false
		}
		return (lo == nil || bytes.Compare(p, lo) > 0) && (hi == nil || bytes.Compare(p, hi) < 0)
	}
	first := 0
	if lo != nil {
		first = max(0, s.superOf(lo))
	}
	last := len(s.supers) - 1
	if hi != nil {
		last = s.superOf(hi)
	}
	var supers []cand
	for i := first; i <= last; i++ {
		if inside(s.supers[i].lo) {
			supers = append(supers, cand{s.supers[i].lo, s.sprefix[i].Count})
		}
	}
	if len(supers) >= k-1 {
		// Unless the superchunks bunch up so that too few quantiles fall apart.
		if out := quantiles(supers, from.Count, total, k); len(out) >= k/2 {
			return out, nil
		}
	}
	var chunks []cand
	for i := first; i <= last; i++ {
		cs, err := s.chunksOf(ctx, i)
		if err != nil {
			return nil, err
		}
		for j, c := range cs {
			if inside(c.lo) {
				chunks = append(chunks, cand{c.lo, s.sprefix[i].Count + s.supers[i].prefix[j].Count})
			}
		}
	}
	switch {
	case len(chunks) >= k-1:
		return quantiles(chunks, from.Count, total, k), nil
	case len(chunks) > 0 && total > 2*ChunkTarget:
		// Fewer chunks than parts asked for: cut at every chunk start. Cutting between
		// entries would read every entry of the range; the session lists or descends
		// into the chunks that differ, reading only those.
		out := make([][]byte, len(chunks))
		for i, c := range chunks {
			out[i] = c.pos
		}
		return out, nil
	}
	// A chunk or two: cut between entries.
	var ps [][]byte
	err = s.walk(ctx, lo, hi, func(e merkle.Entry, p []byte) bool { ps = append(ps, p); return true })
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for q := 1; q < k; q++ {
		j := len(ps) * q / k
		if j == 0 || (len(out) > 0 && bytes.Equal(out[len(out)-1], ps[j])) {
			continue
		}
		out = append(out, ps[j])
	}
	return out, nil
}

// quantiles picks, from candidates in order, the ones nearest the count quantiles of a
// range of total entries starting after from entries.
func quantiles(cands []cand, from, total uint64, k int) [][]byte {
	var out [][]byte
	c := 0
	for q := 1; q < k; q++ {
		target := from + total*uint64(q)/uint64(k)
		for c < len(cands)-1 && cands[c].before < target {
			c++
		}
		if p := cands[c].pos; len(out) == 0 || bytes.Compare(out[len(out)-1], p) < 0 {
			out = append(out, p)
		}
	}
	return out
}

// walk calls fn for each live entry in [lo, hi) in position order until it returns false.
func (s *indexSnapshot) walk(ctx context.Context, lo, hi []byte, fn func(merkle.Entry, []byte) bool) error {
	return s.walkHashed(ctx, lo, hi, func(e merkle.Entry, _ merkle.Hash, p []byte) bool { return fn(e, p) })
}

// EachHashed lists entries with the hashes the index stores (reconcile.HashedEntries).
func (s *indexSnapshot) EachHashed(ctx context.Context, lo, hi []byte, fn func(merkle.Entry, merkle.Hash) bool) error {
	if err := s.loadSupers(ctx); err != nil {
		return err
	}
	return s.walkHashed(ctx, lo, hi, func(e merkle.Entry, h merkle.Hash, _ []byte) bool { return fn(e, h) })
}

func (s *indexSnapshot) walkHashed(ctx context.Context, lo, hi []byte, fn func(merkle.Entry, merkle.Hash, []byte) bool) error {
	var ahead []chunkRef // unread chunks of the range, read together
	done := false
	visit := func(c *chunkNode) bool {
		for k := range c.entries {
			if lo != nil && bytes.Compare(c.pos[k], lo) < 0 {
				continue
			}
			if hi != nil && bytes.Compare(c.pos[k], hi) >= 0 {
				return false
			}
			if !fn(c.entries[k], c.hashes[k], c.pos[k]) {
				return false
			}
		}
		return true
	}
	flush := func() error {
		if len(ahead) == 0 {
			return nil
		}
		if err := s.readChunks(ctx, ahead); err != nil {
			return err
		}
		for _, r := range ahead {
			if !done && !visit(s.supers[r.i].chunks[r.j]) {
				done = true
			}
		}
		ahead = ahead[:0]
		return nil
	}
	var err error
	werr := s.eachChunk(ctx, lo, hi, func(ref chunkRef, c *chunkNode) bool {
		if !c.read {
			ahead = append(ahead, ref)
			if len(ahead) < walkAhead {
				return true
			}
			err = flush()
			return err == nil && !done
		}
		// The chunks before c first.
		if err = flush(); err != nil || done {
			return false
		}
		done = !visit(c)
		return !done
	})
	if werr != nil {
		return werr
	}
	if err != nil || done {
		return err
	}
	return flush()
}

// walkAhead is how many unread chunks a listing reads in one statement.
const walkAhead = 256

func (s *indexSnapshot) Entries(ctx context.Context, lo, hi []byte, limit int) ([]merkle.Entry, error) {
	if err := s.loadSupers(ctx); err != nil {
		return nil, err
	}
	var out []merkle.Entry
	err := s.walk(ctx, lo, hi, func(e merkle.Entry, _ []byte) bool {
		out = append(out, e)
		return limit <= 0 || len(out) < limit
	})
	return out, err
}

func (s *indexSnapshot) Rows(ctx context.Context, keys [][]byte) ([]reconcile.Row, error) {
	return s.t.liveRows(ctx, s.tx, keys, s.now)
}

func (s *indexSnapshot) ReadStats() merkle.ReadStats { return s.stats }

func (s *indexSnapshot) Close() error {
	if s.tx == nil {
		return nil
	}
	err := s.tx.Rollback()
	s.tx = nil
	return err
}

// Cut entries (reconcile.CutSnapshot): the session's bounds stand for the first cut entry
// at or after them. Here the cut entries are exactly the chunk starts (an EntryHash
// beginning with a byte below 0x10, expired entries included), so bounds are found and
// parts summed from the chunk and superchunk sums, without reading entries.

// snap returns the first chunk start at or after p (nil: none) and the live count before
// it (the total when none).
func (s *indexSnapshot) snap(ctx context.Context, p []byte) ([]byte, uint64, error) {
	i := s.superOf(p)
	if i < 0 {
		i = 0
	}
	if i > 0 && bytes.Equal(s.supers[i].lo, p) {
		return p, s.sprefix[i].Count, nil
	}
	cs, err := s.chunksOf(ctx, i)
	if err != nil {
		return nil, 0, err
	}
	j := chunkOfNodes(cs, p)
	if j >= 0 && len(cs[j].lo) > 0 && bytes.Equal(cs[j].lo, p) {
		return p, s.sprefix[i].Count + s.supers[i].prefix[j].Count, nil
	}
	if j+1 < len(cs) {
		return cs[j+1].lo, s.sprefix[i].Count + s.supers[i].prefix[j+1].Count, nil
	}
	if i+1 < len(s.supers) {
		return s.supers[i+1].lo, s.sprefix[i+1].Count, nil
	}
	return nil, s.sprefix[len(s.supers)].Count, nil
}

// SnapCuts returns the first cut entry at or after each of ps.
func (s *indexSnapshot) SnapCuts(ctx context.Context, ps [][]byte) ([][]byte, error) {
	if err := s.loadSupers(ctx); err != nil {
		return nil, err
	}
	out := make([][]byte, len(ps))
	for i, p := range ps {
		c, _, err := s.snap(ctx, p)
		if err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}

// CutDigests sums the parts of [lo, hi) cut at bounds, each point standing for the first
// cut entry at or after it.
// The count hint is not needed: sums come from the superchunk and chunk prefixes.
func (s *indexSnapshot) CutDigests(ctx context.Context, lo, hi []byte, bounds [][]byte, _ uint64) ([]merkle.Digest, [][]byte, error) {
	if err := s.loadSupers(ctx); err != nil {
		return nil, nil, err
	}
	pts := make([][]byte, 0, len(bounds)+2)
	pts = append(pts, lo)
	pts = append(pts, bounds...)
	pts = append(pts, hi)
	snapped := make([][]byte, len(pts))
	vals := make([]merkle.Digest, len(pts))
	total := s.sprefix[len(s.supers)]
	for i, p := range pts {
		switch {
		case p == nil && i == 0:
			vals[i] = merkle.Digest{}
		case p == nil:
			vals[i] = total
		default:
			c, _, err := s.snap(ctx, p)
			if err != nil {
				return nil, nil, err
			}
			snapped[i] = c
			if c == nil {
				vals[i] = total
			} else if vals[i], err = s.before(ctx, c); err != nil { // a chunk start: no entry read
				return nil, nil, err
			}
		}
	}
	// Points past hi's cut count as hi; a lo past everything makes every part empty.
	ds := make([]merkle.Digest, len(bounds)+1)
	end := vals[len(vals)-1]
	prev := vals[0]
	if prev.Count > end.Count {
		return ds, snapped, nil
	}
	for i := 1; i < len(vals); i++ {
		v := vals[i]
		if v.Count > end.Count {
			v = end
		}
		if v.Count < prev.Count {
			v = prev
		}
		ds[i-1] = v.Sub(prev)
		prev = v
	}
	return ds, snapped, nil
}

// SplitCuts cuts (lo, hi), whose ends are cut entries or nil, at cut entries near its
// count quantiles: superchunk starts where enough of them lie inside, else chunk starts.
func (s *indexSnapshot) SplitCuts(ctx context.Context, lo, hi []byte, k int, _ uint64) ([][]byte, [][]byte, []merkle.Digest, error) {
	if err := s.loadSupers(ctx); err != nil {
		return nil, nil, nil, err
	}
	var from merkle.Digest
	if lo != nil {
		var err error
		if from, err = s.before(ctx, lo); err != nil {
			return nil, nil, nil, err
		}
	}
	to, err := s.before(ctx, hi)
	if err != nil {
		return nil, nil, nil, err
	}
	total := to.Sub(from).Count
	if total <= 1 || k < 2 {
		return nil, nil, nil, nil
	}
	inside := func(p []byte) bool {
		return len(p) > 0 && (lo == nil || bytes.Compare(p, lo) > 0) && (hi == nil || bytes.Compare(p, hi) < 0)
	}
	first := 0
	if lo != nil {
		first = max(0, s.superOf(lo))
	}
	last := len(s.supers) - 1
	if hi != nil {
		last = s.superOf(hi)
	}
	type cut struct {
		cand
		prev []byte
	}
	pick := func(cs []cut) ([][]byte, [][]byte, []merkle.Digest) {
		cands := make([]cand, len(cs))
		for i := range cs {
			cands[i] = cs[i].cand
		}
		bounds := quantiles(cands, from.Count, total, k)
		prevs := make([][]byte, len(bounds))
		j := 0
		for i, b := range bounds {
			for !bytes.Equal(cs[j].pos, b) {
				j++
			}
			prevs[i] = cs[j].prev
		}
		return bounds, prevs, nil
	}
	var supers []cut
	for i := first; i <= last; i++ {
		if inside(s.supers[i].lo) {
			supers = append(supers, cut{cand{s.supers[i].lo, s.sprefix[i].Count}, s.supers[i].prev})
		}
	}
	if len(supers) >= k-1 {
		if b, p, d := pick(supers); len(b) >= k/2 {
			return b, p, d, nil
		}
	}
	var chunks []cut
	for i := first; i <= last; i++ {
		cs, err := s.chunksOf(ctx, i)
		if err != nil {
			return nil, nil, nil, err
		}
		for j, c := range cs {
			if !inside(c.lo) {
				continue
			}
			prev := s.supers[i].prev
			if j > 0 {
				prev = cs[j-1].lo
				if len(prev) == 0 {
					prev = nil
				}
			}
			chunks = append(chunks, cut{cand{c.lo, s.sprefix[i].Count + s.supers[i].prefix[j].Count}, prev})
		}
	}
	if len(chunks) >= k-1 {
		b, p, d := pick(chunks)
		return b, p, d, nil
	}
	bounds := make([][]byte, len(chunks))
	prevs := make([][]byte, len(chunks))
	for i, c := range chunks {
		bounds[i], prevs[i] = c.pos, c.prev
	}
	return bounds, prevs, nil, nil
}

var (
	_ reconcile.CutSnapshot   = (*indexSnapshot)(nil)
	_ reconcile.HashedEntries = (*indexSnapshot)(nil)
)
