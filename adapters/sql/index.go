package sql

import (
	"bytes"
	"context"
	dbsql "database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/zeebo/blake3"

	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// Maintained mode
//
// `reconcile index install` builds, in the table's own database, one entry per row
// (_ent) and the entries' digests cut into content-defined chunks of about ChunkTarget
// entries (_chunk: first position, count, sum), plus triggers that log the key of every
// row written (_log). A session first catches up: it reads the logged keys, re-reads
// those rows, and moves their entries and chunk sums; then it answers from the index:
// whole chunks from their sums (read once per session, lazily), and only the chunks its
// ranges cut into from their entries. A run with d differences reads the chunk sums, what
// changed since the last run, and about one chunk per difference on each side.
//
// A chunk starts at every entry whose position hashes to a multiple of ChunkTarget: cuts
// depend on positions only, so two copies with the same rows cut in the same places, and
// the session's bounds (taken from one side's chunk starts) fall on the other side's chunk
// starts too, where digests need no entry reads.

// ChunkTarget is the mean number of entries in a chunk.
const ChunkTarget = 32

// chunkStart reports whether pos starts a chunk.
func chunkStart(pos []byte) bool {
	h := blake3.Sum256(pos)
	return binary.BigEndian.Uint16(h[:2])%ChunkTarget == 0
}

// IndexStatus says what `index verify` found.
type IndexStatus struct {
	Entries    int // rows in the table (live or expired)
	Missing    int // rows with no entry, or an entry that is not theirs
	Extra      int // entries of rows that are gone
	BadChunks  int // chunk sums that do not add up
	RootOK     bool
	CaughtUp   int // logged writes applied before the check
	Triggers   bool
	IdentityOK bool
}

// OK reports whether the index matched the table.
func (s IndexStatus) OK() bool {
	return s.Missing == 0 && s.Extra == 0 && s.BadChunks == 0 && s.RootOK && s.Triggers && s.IdentityOK
}

// InstallIndex creates the maintained index and builds it from one read of the table. An
// existing index is removed first (install again to rebuild).
func (t *Table) InstallIndex(ctx context.Context) (int, error) {
	if t.ReadOnly {
		return 0, reconcile.ErrReadOnly
	}
	n := t.indexNames()
	if err := t.UninstallIndex(ctx); err != nil {
		return 0, err
	}
	if err := t.execAll(ctx, t.createIndexDDL(n)); err != nil {
		t.UninstallIndex(ctx)
		return 0, fmt.Errorf("install the index of %s: %w (nothing is left installed)", t.cfg.Table, err)
	}
	count, err := t.buildIndex(ctx, n)
	if err != nil {
		t.UninstallIndex(ctx)
		return 0, fmt.Errorf("build the index of %s: %w (nothing is left installed)", t.cfg.Table, err)
	}
	return count, nil
}

// UninstallIndex drops every object InstallIndex creates; it is not an error if there
// are none.
func (t *Table) UninstallIndex(ctx context.Context) error {
	if err := t.execAll(ctx, t.dropIndexDDL(t.indexNames())); err != nil {
		return fmt.Errorf("remove the index of %s: %w", t.cfg.Table, err)
	}
	return nil
}

func (t *Table) execAll(ctx context.Context, stmts []string) error {
	for _, s := range stmts {
		if _, err := t.db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", firstWords(s), t.d.dbErr(err))
		}
	}
	return nil
}

func firstWords(s string) string {
	f := strings.Fields(s)
	return strings.Join(f[:min(4, len(f))], " ")
}

// indexEntry is one _ent row.
type indexEntry struct {
	pos []byte
	e   merkle.Entry
	h   merkle.Hash
}

func (t *Table) newIndexEntry(r reconcile.Row) indexEntry {
	e := r.Entry()
	return indexEntry{pos: e.Position(t.ordering), e: e, h: e.Hash()}
}

// buildIndex fills _ent, _chunk and _meta from a snapshot read of the table. Writes logged
// while it runs are applied by the next catch-up.
func (t *Table) buildIndex(ctx context.Context, n indexNames) (int, error) {
	ident, err := t.identity(ctx, t.db)
	if err != nil {
		return 0, err
	}
	rtx, _, err := t.d.beginRead(ctx, t.db)
	if err != nil {
		return 0, err
	}
	var all []indexEntry
	err = t.scanTx(ctx, rtx, func(r reconcile.Row) error {
		all = append(all, t.newIndexEntry(r))
		return nil
	})
	rtx.Rollback()
	if err != nil {
		return 0, err
	}
	sort.Slice(all, func(i, j int) bool { return bytes.Compare(all[i].pos, all[j].pos) < 0 })
	tx, err := t.d.beginWrite(ctx, t.db)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	const batch = 500
	for i := 0; i < len(all); i += batch {
		part := all[i:min(i+batch, len(all))]
		var ps []string
		var args []any
		for _, ie := range part {
			ps = append(ps, "("+t.params(len(args), 5)+")")
			args = append(args, ie.e.Key, ie.pos, ie.h[:], ie.e.ValueHash[:], ie.e.ExpiresAt)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+n.ent+" (k, pos, h, vh, exp) VALUES "+strings.Join(ps, ", "), args...); err != nil {
			return 0, fmt.Errorf("write index entries: %w", t.d.dbErr(err))
		}
	}
	chunks := []*chunkRow{{lo: []byte{}}}
	var root merkle.Digest
	for _, ie := range all {
		if chunkStart(ie.pos) {
			chunks = append(chunks, &chunkRow{lo: ie.pos})
		}
		c := chunks[len(chunks)-1]
		c.d = c.d.Add(one(ie.h))
		root = root.Add(one(ie.h))
	}
	for i := 0; i < len(chunks); i += batch {
		part := chunks[i:min(i+batch, len(chunks))]
		var ps []string
		var args []any
		for _, c := range part {
			ps = append(ps, "("+t.params(len(args), 3)+")")
			args = append(args, c.lo, int64(c.d.Count), c.d.Sum[:])
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+n.chunk+" (lo, n, s) VALUES "+strings.Join(ps, ", "), args...); err != nil {
			return 0, fmt.Errorf("write index chunks: %w", t.d.dbErr(err))
		}
	}
	_, err = tx.ExecContext(ctx, "INSERT INTO "+n.meta+" (id, schema_fp, ident, stale, n, s) VALUES ("+t.params(0, 6)+")",
		1, t.metaSchema(), ident, 0, int64(root.Count), root.Sum[:])
	if err != nil {
		return 0, fmt.Errorf("write index meta: %w", t.d.dbErr(err))
	}
	if err := tx.Commit(); err != nil {
		return 0, t.d.dbErr(err)
	}
	return len(all), nil
}

// metaSchema is what the index was built for: the schema, the ordering, the version and
// expiry columns. A session for other columns must not use it.
func (t *Table) metaSchema() string {
	s := t.schema + " ordering=" + t.ordering.String()
	if t.verCol != nil {
		s += " version=" + t.verCol.Name
	}
	if t.expCol != nil {
		s += " expires=" + t.expCol.Name
	}
	return s
}

// params returns n placeholders after the first `after` arguments, untyped (the index's
// own columns need no casts).
func (t *Table) params(after, n int) string {
	ps := make([]string, n)
	for i := range ps {
		if t.cfg.Dialect == "postgres" {
			ps[i] = fmt.Sprintf("$%d", after+i+1)
		} else {
			ps[i] = "?"
		}
	}
	return strings.Join(ps, ", ")
}

// p is the i-th (1-based) untyped placeholder.
func (t *Table) p(i int) string {
	if t.cfg.Dialect == "postgres" {
		return fmt.Sprintf("$%d", i)
	}
	return "?"
}

// chunkRow is one _chunk row: the chunk's first position and the digest of its entries.
type chunkRow struct {
	lo    []byte
	d     merkle.Digest
	dirty bool
}

// staleError is returned when the index cannot be trusted.
func staleError(table, why string) error {
	return fmt.Errorf("the maintained index of %s is stale: %s; rebuild it with `reconcile index install`, or use mode=scan", table, why)
}

// catchUp checks that the index can be trusted, then applies the logged writes, all in one
// write transaction that locks the meta row (catch-ups do not overlap).
func (t *Table) catchUp(ctx context.Context) (int, error) {
	n := t.indexNames()
	tx, err := t.d.beginWrite(ctx, t.db)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	var schema, ident string
	var stale int
	rs, err := tx.QueryContext(ctx, "SELECT schema_fp, ident, stale FROM "+n.meta+" WHERE id = 1"+t.d.forUpdate())
	if err != nil {
		return 0, t.d.dbErr(err)
	}
	found := rs.Next()
	if found {
		err = rs.Scan(&schema, &ident, &stale)
	}
	rs.Close()
	if err != nil {
		return 0, err
	}
	if !found {
		return 0, staleError(t.cfg.Table, "its meta row is missing (an install that did not finish?)")
	}
	if schema != t.metaSchema() {
		return 0, fmt.Errorf("the maintained index of %s was built for %q, this endpoint is %q: install it again for these columns, or use mode=scan", t.cfg.Table, schema, t.metaSchema())
	}
	if stale != 0 {
		return 0, staleError(t.cfg.Table, "the table was truncated since the index was built")
	}
	if ok, err := t.triggersInstalled(ctx, tx); err != nil {
		return 0, err
	} else if !ok {
		return 0, staleError(t.cfg.Table, "its triggers are missing or disabled (was the table recreated or restored?)")
	}
	if id, err := t.identity(ctx, tx); err != nil {
		return 0, err
	} else if id != ident {
		return 0, staleError(t.cfg.Table, fmt.Sprintf("the table is not the one indexed (identity %s, indexed %s): it was recreated, restored or truncated", id, ident))
	}
	c := &catchup{t: t, n: n, tx: tx}
	total := 0
	for {
		applied, more, err := c.step(ctx)
		if err != nil {
			return 0, fmt.Errorf("catch up the index of %s: %w", t.cfg.Table, err)
		}
		total += applied
		if !more {
			break
		}
	}
	if err := c.flush(ctx); err != nil {
		return 0, fmt.Errorf("catch up the index of %s: %w", t.cfg.Table, err)
	}
	if err := tx.Commit(); err != nil {
		return 0, t.d.dbErr(err)
	}
	return total, nil
}

// catchup is one catch-up transaction: the chunks, loaded on first need and kept in
// memory, and the root.
type catchup struct {
	t      *Table
	n      indexNames
	tx     *dbsql.Tx
	chunks []*chunkRow // nil until loaded
	gone   [][]byte    // chunks merged away
	root   *merkle.Digest
}

const logBatch = 2000

// step applies up to logBatch logged writes; more reports whether the log may hold more.
func (c *catchup) step(ctx context.Context) (applied int, more bool, err error) {
	t := c.t
	var names []string
	for _, k := range t.keyCols {
		names = append(names, t.d.quote(k.Name))
	}
	rs, err := c.tx.QueryContext(ctx, "SELECT seq, "+strings.Join(names, ", ")+" FROM "+c.n.log+" ORDER BY seq LIMIT "+fmt.Sprint(logBatch))
	if err != nil {
		return 0, false, t.d.dbErr(err)
	}
	var maxSeq int64
	var keys [][]byte
	seen := map[string]bool{}
	vals := make([]any, 1+len(t.keyCols))
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	rows := 0
	for rs.Next() {
		rows++
		if err := rs.Scan(ptrs...); err != nil {
			rs.Close()
			return 0, false, err
		}
		seq, err := toInt(vals[0])
		if err != nil {
			rs.Close()
			return 0, false, err
		}
		maxSeq = max(maxSeq, seq)
		ds := make([]Datum, len(t.keyCols))
		for i := range t.keyCols {
			if ds[i], err = t.keyCols[i].canon(vals[1+i]); err != nil {
				rs.Close()
				return 0, false, fmt.Errorf("logged key column %s: %v", t.keyCols[i].Name, err)
			}
		}
		k := AppendKey([]byte{}, ds)
		if !seen[string(k)] {
			seen[string(k)] = true
			keys = append(keys, k)
		}
	}
	if err := rs.Err(); err != nil {
		rs.Close()
		return 0, false, t.d.dbErr(err)
	}
	rs.Close()
	if rows == 0 {
		return 0, false, nil
	}
	cur, err := t.lookup(ctx, c.tx, keys, "")
	if err != nil {
		return 0, false, err
	}
	old, err := c.entries(ctx, keys)
	if err != nil {
		return 0, false, err
	}
	for _, k := range keys {
		o, hadOld := old[string(k)]
		r, hasNew := cur[string(k)]
		var ne indexEntry
		if hasNew {
			ne = t.newIndexEntry(r)
			if hadOld && o.h == ne.h && bytes.Equal(o.pos, ne.pos) {
				continue
			}
		} else if !hadOld {
			continue
		}
		if err := c.loadChunks(ctx); err != nil {
			return 0, false, err
		}
		if hadOld {
			if err := c.remove(ctx, o); err != nil {
				return 0, false, err
			}
		}
		if hasNew {
			if err := c.add(ctx, ne); err != nil {
				return 0, false, err
			}
		}
		applied++
	}
	if _, err := c.tx.ExecContext(ctx, "DELETE FROM "+c.n.log+" WHERE seq <= "+t.p(1), maxSeq); err != nil {
		return 0, false, t.d.dbErr(err)
	}
	return applied, rows == logBatch, nil
}

// entries reads the _ent rows of keys.
func (c *catchup) entries(ctx context.Context, keys [][]byte) (map[string]indexEntry, error) {
	t := c.t
	out := map[string]indexEntry{}
	for len(keys) > 0 {
		part := keys[:min(len(keys), keyBatch)]
		keys = keys[len(part):]
		args := make([]any, len(part))
		for i, k := range part {
			args[i] = k
		}
		rs, err := c.tx.QueryContext(ctx, "SELECT k, pos, h, vh, exp FROM "+c.n.ent+" WHERE k IN ("+t.params(0, len(part))+")", args...)
		if err != nil {
			return nil, t.d.dbErr(err)
		}
		for rs.Next() {
			ie, err := t.scanEntry(rs)
			if err != nil {
				rs.Close()
				return nil, err
			}
			out[string(ie.e.Key)] = ie
		}
		err = rs.Err()
		rs.Close()
		if err != nil {
			return nil, t.d.dbErr(err)
		}
	}
	return out, nil
}

// scanEntry reads one (k, pos, h, vh, exp) row.
func (t *Table) scanEntry(rs *dbsql.Rows) (indexEntry, error) {
	var ie indexEntry
	var k, pos, h, vh []byte
	var exp int64
	if err := rs.Scan(&k, &pos, &h, &vh, &exp); err != nil {
		return ie, err
	}
	if len(h) != 32 || len(vh) != 32 {
		return ie, errors.New("index entry with a malformed hash: run `reconcile index install` to rebuild")
	}
	if k == nil {
		k = []byte{}
	}
	ie.pos = pos
	ie.e = merkle.Entry{Key: k, ExpiresAt: exp}
	if t.ordering == merkle.VersionOrder {
		if len(pos) < 8 {
			return ie, errors.New("index entry with a malformed position: run `reconcile index install` to rebuild")
		}
		ie.e.Version = binary.BigEndian.Uint64(pos)
	}
	copy(ie.e.ValueHash[:], vh)
	copy(ie.h[:], h)
	return ie, nil
}

func (c *catchup) loadChunks(ctx context.Context) error {
	if c.chunks != nil {
		return nil
	}
	cs, err := c.t.readChunks(ctx, c.tx, c.n)
	if err != nil {
		return err
	}
	c.chunks = cs
	var root merkle.Digest
	for _, ch := range cs {
		root = root.Add(ch.d)
	}
	c.root = &root
	return nil
}

// readChunks reads every _chunk row in position order.
func (t *Table) readChunks(ctx context.Context, q querier, n indexNames) ([]*chunkRow, error) {
	rs, err := q.QueryContext(ctx, "SELECT lo, n, s FROM "+n.chunk+" ORDER BY lo")
	if err != nil {
		return nil, t.d.dbErr(err)
	}
	defer rs.Close()
	var out []*chunkRow
	for rs.Next() {
		var lo, s []byte
		var cnt int64
		if err := rs.Scan(&lo, &cnt, &s); err != nil {
			return nil, err
		}
		if len(s) != 32 || cnt < 0 {
			return nil, errors.New("malformed index chunk: run `reconcile index install` to rebuild")
		}
		if lo == nil {
			lo = []byte{}
		}
		c := &chunkRow{lo: lo}
		c.d.Count = uint64(cnt)
		copy(c.d.Sum[:], s)
		out = append(out, c)
	}
	if err := rs.Err(); err != nil {
		return nil, t.d.dbErr(err)
	}
	if len(out) == 0 || len(out[0].lo) != 0 {
		return nil, errors.New("the index has no first chunk: run `reconcile index install` to rebuild")
	}
	return out, nil
}

// one is the digest of the single entry whose hash is h.
func one(h merkle.Hash) merkle.Digest { return merkle.Digest{Count: 1, Sum: h} }

// chunkOf returns the index of the chunk holding pos.
func chunkOf(cs []*chunkRow, pos []byte) int {
	return sort.Search(len(cs), func(i int) bool { return bytes.Compare(cs[i].lo, pos) > 0 }) - 1
}

func (c *catchup) remove(ctx context.Context, ie indexEntry) error {
	t := c.t
	if _, err := c.tx.ExecContext(ctx, "DELETE FROM "+c.n.ent+" WHERE k = "+t.p(1), ie.e.Key); err != nil {
		return t.d.dbErr(err)
	}
	i := chunkOf(c.chunks, ie.pos)
	ch := c.chunks[i]
	ch.d = ch.d.Sub(one(ie.h))
	ch.dirty = true
	*c.root = c.root.Sub(one(ie.h))
	if i > 0 && bytes.Equal(ch.lo, ie.pos) { // the chunk's first entry goes: merge into the previous
		prev := c.chunks[i-1]
		prev.d = prev.d.Add(ch.d)
		prev.dirty = true
		c.gone = append(c.gone, ch.lo)
		c.chunks = append(c.chunks[:i], c.chunks[i+1:]...)
	}
	return nil
}

func (c *catchup) add(ctx context.Context, ie indexEntry) error {
	t := c.t
	_, err := c.tx.ExecContext(ctx, "INSERT INTO "+c.n.ent+" (k, pos, h, vh, exp) VALUES ("+t.params(0, 5)+")",
		ie.e.Key, ie.pos, ie.h[:], ie.e.ValueHash[:], ie.e.ExpiresAt)
	if err != nil {
		return fmt.Errorf("index entry of %s: %w", reconcile.PrintableKey(ie.e.Key), t.d.dbErr(err))
	}
	*c.root = c.root.Add(one(ie.h))
	i := chunkOf(c.chunks, ie.pos)
	ch := c.chunks[i]
	ch.d = ch.d.Add(one(ie.h))
	ch.dirty = true
	if !chunkStart(ie.pos) {
		return nil
	}
	// ie starts a new chunk: what of ch lies at or after it moves there.
	q := "SELECT h FROM " + c.n.ent + " WHERE pos >= " + t.p(1)
	args := []any{ie.pos}
	if i+1 < len(c.chunks) {
		q += " AND pos < " + t.p(2)
		args = append(args, c.chunks[i+1].lo)
	}
	rs, err := c.tx.QueryContext(ctx, q, args...)
	if err != nil {
		return t.d.dbErr(err)
	}
	nc := &chunkRow{lo: ie.pos, dirty: true}
	for rs.Next() {
		var h []byte
		if err := rs.Scan(&h); err != nil {
			rs.Close()
			return err
		}
		var hh merkle.Hash
		copy(hh[:], h)
		nc.d = nc.d.Add(one(hh))
	}
	err = rs.Err()
	rs.Close()
	if err != nil {
		return t.d.dbErr(err)
	}
	ch.d = ch.d.Sub(nc.d)
	c.chunks = append(c.chunks[:i+1], append([]*chunkRow{nc}, c.chunks[i+1:]...)...)
	// A chunk merged away earlier in this catch-up and started again now is rewritten.
	for j, g := range c.gone {
		if bytes.Equal(g, ie.pos) {
			c.gone = append(c.gone[:j], c.gone[j+1:]...)
			break
		}
	}
	return nil
}

// flush writes the changed chunks and the root.
func (c *catchup) flush(ctx context.Context) error {
	if c.chunks == nil {
		return nil
	}
	t := c.t
	for _, lo := range c.gone {
		if _, err := c.tx.ExecContext(ctx, "DELETE FROM "+c.n.chunk+" WHERE lo = "+t.p(1), lo); err != nil {
			return t.d.dbErr(err)
		}
	}
	for _, ch := range c.chunks {
		if !ch.dirty {
			continue
		}
		if _, err := c.tx.ExecContext(ctx, "DELETE FROM "+c.n.chunk+" WHERE lo = "+t.p(1), ch.lo); err != nil {
			return t.d.dbErr(err)
		}
		if _, err := c.tx.ExecContext(ctx, "INSERT INTO "+c.n.chunk+" (lo, n, s) VALUES ("+t.params(0, 3)+")", ch.lo, int64(ch.d.Count), ch.d.Sum[:]); err != nil {
			return t.d.dbErr(err)
		}
	}
	_, err := c.tx.ExecContext(ctx, "UPDATE "+c.n.meta+" SET n = "+t.p(1)+", s = "+t.p(2)+" WHERE id = 1", int64(c.root.Count), c.root.Sum[:])
	return t.d.dbErr(err)
}

// VerifyIndex catches the index up, then rebuilds it in memory from one read of the table
// and compares: every entry, every chunk sum and the root. Writes that land between the
// catch-up and the read show as differences; verify a quiet table, or run it twice.
func (t *Table) VerifyIndex(ctx context.Context) (IndexStatus, error) {
	var st IndexStatus
	installed, err := t.indexInstalled(ctx)
	if err != nil {
		return st, err
	}
	if !installed {
		return st, fmt.Errorf("table %s has no maintained index: run `reconcile index install` first", t.cfg.Table)
	}
	if st.CaughtUp, err = t.catchUp(ctx); err != nil {
		return st, err
	}
	st.Triggers, st.IdentityOK = true, true // catchUp checked both
	n := t.indexNames()
	tx, _, err := t.d.beginRead(ctx, t.db)
	if err != nil {
		return st, err
	}
	defer tx.Rollback()
	want := map[string]indexEntry{}
	err = t.scanTx(ctx, tx, func(r reconcile.Row) error {
		ie := t.newIndexEntry(r)
		want[string(ie.e.Key)] = ie
		return nil
	})
	if err != nil {
		return st, err
	}
	st.Entries = len(want)
	rs, err := tx.QueryContext(ctx, "SELECT k, pos, h, vh, exp FROM "+n.ent+" ORDER BY pos")
	if err != nil {
		return st, t.d.dbErr(err)
	}
	var got []indexEntry
	for rs.Next() {
		ie, err := t.scanEntry(rs)
		if err != nil {
			rs.Close()
			return st, err
		}
		got = append(got, ie)
		w, ok := want[string(ie.e.Key)]
		switch {
		case !ok:
			st.Extra++
		case w.h != ie.h || !bytes.Equal(w.pos, ie.pos) || w.e.ExpiresAt != ie.e.ExpiresAt || w.e.ValueHash != ie.e.ValueHash:
			st.Missing++
			delete(want, string(ie.e.Key))
		default:
			delete(want, string(ie.e.Key))
		}
	}
	err = rs.Err()
	rs.Close()
	if err != nil {
		return st, t.d.dbErr(err)
	}
	st.Missing += len(want)
	chunks, err := t.readChunks(ctx, tx, n)
	if err != nil {
		return st, err
	}
	sums := make([]merkle.Digest, len(chunks))
	var root merkle.Digest
	for _, ie := range got {
		i := chunkOf(chunks, ie.pos)
		sums[i] = sums[i].Add(one(ie.h))
		root = root.Add(one(ie.h))
		if chunkStart(ie.pos) && !bytes.Equal(chunks[i].lo, ie.pos) {
			st.BadChunks++ // a chunk should start here
		}
	}
	for i, c := range chunks {
		if c.d != sums[i] || (i > 0 && !chunkStart(c.lo)) {
			st.BadChunks++
		}
	}
	var cnt int64
	var sum []byte
	if err := tx.QueryRowContext(ctx, "SELECT n, s FROM "+n.meta+" WHERE id = 1").Scan(&cnt, &sum); err != nil {
		return st, t.d.dbErr(err)
	}
	st.RootOK = uint64(cnt) == root.Count && bytes.Equal(sum, root.Sum[:])
	return st, nil
}
