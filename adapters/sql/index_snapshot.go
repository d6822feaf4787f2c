package sql

import (
	"bytes"
	"context"
	dbsql "database/sql"
	"fmt"

	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// indexSnapshot answers a session from the maintained index, in one read transaction.
//
// Whole chunks are answered from their sums; a range end inside a chunk reads that
// chunk's entries (once: they are cached). Entries that expired by the session's now are
// left out: they are read once at open (an indexed query on expiry) and taken off their
// chunks' sums.
type indexSnapshot struct {
	t   *Table
	n   indexNames
	tx  *dbsql.Tx
	now int64

	info    reconcile.Info
	expired map[string]merkle.Hash // position -> entry hash of entries expired at now

	chunks []*chunkRow     // nil until first needed
	prefix []merkle.Digest // prefix[i]: the live digest of chunks[:i]
	cache  map[int][]merkle.Entry
	pos    map[int][][]byte // positions of the cached entries
	stats  merkle.ReadStats
}

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
	rs, err := s.tx.QueryContext(ctx, "SELECT pos, h FROM "+s.n.ent+" WHERE exp <> 0 AND exp <= "+t.p(1), s.now)
	if err != nil {
		return fmt.Errorf("read expired entries of %s: %w", t.cfg.Table, t.d.dbErr(err))
	}
	defer rs.Close()
	for rs.Next() {
		var pos, h []byte
		if err := rs.Scan(&pos, &h); err != nil {
			return err
		}
		var hh merkle.Hash
		copy(hh[:], h)
		s.expired[string(pos)] = hh
		root = root.Sub(one(hh))
		s.stats.Entries++
	}
	if err := rs.Err(); err != nil {
		return t.d.dbErr(err)
	}
	s.info = reconcile.Info{Ordering: t.ordering, Schema: t.schema, Root: root}
	return nil
}

func (s *indexSnapshot) Info() reconcile.Info { return s.info }

// loadChunks reads the chunk sums, less their expired entries.
func (s *indexSnapshot) loadChunks(ctx context.Context) error {
	if s.chunks != nil {
		return nil
	}
	cs, err := s.t.readChunks(ctx, s.tx, s.n)
	if err != nil {
		return fmt.Errorf("read the index of %s: %w", s.t.cfg.Table, err)
	}
	s.stats.Nodes += int64(len(cs))
	for pos, h := range s.expired {
		c := cs[chunkOf(cs, []byte(pos))]
		c.d = c.d.Sub(one(h))
	}
	s.prefix = make([]merkle.Digest, len(cs)+1)
	for i, c := range cs {
		s.prefix[i+1] = s.prefix[i].Add(c.d)
	}
	s.chunks, s.cache, s.pos = cs, map[int][]merkle.Entry{}, map[int][][]byte{}
	return nil
}

// chunkEntries returns the live entries of chunk i and their positions, in order.
func (s *indexSnapshot) chunkEntries(ctx context.Context, i int) ([]merkle.Entry, [][]byte, error) {
	if es, ok := s.cache[i]; ok {
		return es, s.pos[i], nil
	}
	t := s.t
	q := "SELECT k, pos, h, vh, exp FROM " + s.n.ent + " WHERE pos >= " + t.p(1)
	args := []any{s.chunks[i].lo}
	if i+1 < len(s.chunks) {
		q += " AND pos < " + t.p(2)
		args = append(args, s.chunks[i+1].lo)
	}
	rs, err := s.tx.QueryContext(ctx, q+" ORDER BY pos", args...)
	if err != nil {
		return nil, nil, fmt.Errorf("read the index of %s: %w", t.cfg.Table, t.d.dbErr(err))
	}
	defer rs.Close()
	var es []merkle.Entry
	var ps [][]byte
	for rs.Next() {
		ie, err := t.scanEntry(rs)
		if err != nil {
			return nil, nil, err
		}
		s.stats.Entries++
		if ie.e.Expired(s.now) {
			continue
		}
		es = append(es, ie.e)
		ps = append(ps, ie.pos)
	}
	if err := rs.Err(); err != nil {
		return nil, nil, t.d.dbErr(err)
	}
	if uint64(len(es)) != s.chunks[i].d.Count {
		return nil, nil, staleError(t.cfg.Table, fmt.Sprintf("a chunk's sum says %d entries, its entries are %d", s.chunks[i].d.Count, len(es)))
	}
	s.cache[i], s.pos[i] = es, ps
	return es, ps, nil
}

// before returns the digest of the live entries at positions below p (nil: all).
func (s *indexSnapshot) before(ctx context.Context, p []byte) (merkle.Digest, error) {
	if p == nil {
		return s.prefix[len(s.chunks)], nil
	}
	i := chunkOf(s.chunks, p)
	if i < 0 {
		return merkle.Digest{}, nil
	}
	d := s.prefix[i]
	if bytes.Equal(s.chunks[i].lo, p) {
		return d, nil
	}
	es, ps, err := s.chunkEntries(ctx, i)
	if err != nil {
		return d, err
	}
	for j := range es {
		if bytes.Compare(ps[j], p) >= 0 {
			break
		}
		d = d.Add(es[j].Digest())
	}
	return d, nil
}

func (s *indexSnapshot) Digests(ctx context.Context, lo, hi []byte, bounds [][]byte) ([]merkle.Digest, error) {
	if err := s.loadChunks(ctx); err != nil {
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
		var err error
		if i == 0 && p == nil {
			d = merkle.Digest{}
		} else if d, err = s.before(ctx, p); err != nil {
			return nil, err
		}
		if i > 0 {
			out[i-1] = d.Sub(prev)
		}
		prev = d
	}
	return out, nil
}

// Split cuts at chunk starts where the range spans enough chunks, and at entries
// otherwise.
func (s *indexSnapshot) Split(ctx context.Context, lo, hi []byte, k int) ([][]byte, error) {
	if err := s.loadChunks(ctx); err != nil {
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
	// Candidate cuts: chunk starts strictly inside the range whose first entry is live.
	first := 1
	if lo != nil {
		first = max(1, chunkOf(s.chunks, lo)+1)
	}
	last := len(s.chunks) - 1
	if hi != nil {
		last = chunkOf(s.chunks, hi)
		if last >= 0 && bytes.Equal(s.chunks[last].lo, hi) {
			last--
		}
	}
	var cands []int
	for i := first; i <= last; i++ {
		if _, gone := s.expired[string(s.chunks[i].lo)]; !gone && (lo == nil || bytes.Compare(s.chunks[i].lo, lo) > 0) {
			cands = append(cands, i)
		}
	}
	if len(cands) >= 2*(k-1) {
		var out [][]byte
		c := 0
		for q := 1; q < k; q++ {
			target := from.Count + total*uint64(q)/uint64(k)
			for c < len(cands)-1 && s.prefix[cands[c]].Count < target {
				c++
			}
			if p := s.chunks[cands[c]].lo; len(out) == 0 || bytes.Compare(out[len(out)-1], p) < 0 {
				out = append(out, p)
			}
		}
		return out, nil
	}
	// Few chunks: cut between entries.
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

// walk calls fn for each live entry in [lo, hi) in position order until it returns false.
func (s *indexSnapshot) walk(ctx context.Context, lo, hi []byte, fn func(merkle.Entry, []byte) bool) error {
	i := 0
	if lo != nil {
		i = max(0, chunkOf(s.chunks, lo))
	}
	for ; i < len(s.chunks); i++ {
		if hi != nil && bytes.Compare(s.chunks[i].lo, hi) >= 0 {
			return nil
		}
		if s.chunks[i].d.Count == 0 {
			continue
		}
		es, ps, err := s.chunkEntries(ctx, i)
		if err != nil {
			return err
		}
		for j := range es {
			if lo != nil && bytes.Compare(ps[j], lo) < 0 {
				continue
			}
			if hi != nil && bytes.Compare(ps[j], hi) >= 0 {
				return nil
			}
			if !fn(es[j], ps[j]) {
				return nil
			}
		}
	}
	return nil
}

func (s *indexSnapshot) Entries(ctx context.Context, lo, hi []byte, limit int) ([]merkle.Entry, error) {
	if err := s.loadChunks(ctx); err != nil {
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
	found, err := s.t.lookup(ctx, s.tx, keys, "")
	if err != nil {
		return nil, fmt.Errorf("read rows of %s: %w", s.t.cfg.Table, err)
	}
	out := make([]reconcile.Row, len(keys))
	for i, k := range keys {
		if r, ok := found[string(k)]; ok && !r.Entry().Expired(s.now) {
			out[i] = r
		}
	}
	return out, nil
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
