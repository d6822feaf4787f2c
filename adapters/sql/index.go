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
	"time"

	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// Maintained mode
//
// `reconcile index install` builds, in the table's own database, one entry per row
// (_ent), the entries' digests cut into content-defined chunks of about ChunkTarget
// entries (_chunk: first position, count, sum) and the chunks grouped into superchunks of
// about SuperTarget entries (_super), plus triggers that log the key of every row written
// (_log). A session first catches up: it reads the logged keys, re-reads those rows, and
// moves their entries and the sums above them; then it answers from the index: whole
// superchunks and chunks from their sums, read lazily (the superchunks once, the chunks of
// a superchunk when a range ends inside it), and entries only of the chunks its ranges
// end in. A run with d differences reads the superchunk sums, what changed since the last
// run, and about one superchunk's chunk sums and one chunk's entries per difference on
// each side.
//
// A chunk starts at every entry whose EntryHash begins with a byte below 0x10, a
// superchunk at every one whose EntryHash begins with 0x00 (so every superchunk start is
// a chunk start). Cuts depend on the entries only, so two copies with the same rows cut in
// the same places, and bounds taken from one side's chunk starts fall on the other side's
// chunk starts too, where digests need no entry reads.

// ChunkTarget and SuperTarget are the mean number of entries in a chunk and a superchunk.
const (
	ChunkTarget = 16
	SuperTarget = 256
)

// chunkStart reports whether the entry with EntryHash h starts a chunk.
func chunkStart(h merkle.Hash) bool { return h[0] < 0x10 }

// superStart reports whether the entry with EntryHash h starts a superchunk.
func superStart(h merkle.Hash) bool { return h[0] == 0 }

// IndexStatus says what `index verify` found.
type IndexStatus struct {
	Entries   int // rows in the table (live or expired)
	Missing   int // rows with no entry, or an entry that is not theirs
	Extra     int // entries of rows that are gone
	BadChunks int // chunk sums that do not add up
	RootOK    bool
	CaughtUp  int // logged writes applied before the check
	// Pending counts the rows written after the catch-up, in the check's snapshot still
	// in the log (the next catch-up applies them): not compared, since the index does not
	// hold them yet.
	Pending    int
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
	if t.view {
		return 0, fmt.Errorf("%s is a view: it has no triggers to keep an index current; sessions read it whole (mode=scan, the default for a view)", t.cfg.Table)
	}
	n := t.indexNames()
	if err := t.UninstallIndex(ctx); err != nil {
		return 0, err
	}
	err := t.execAll(ctx, t.createIndexDDL(n))
	if err != nil {
		err = fmt.Errorf("install the index of %s: %w", t.cfg.Table, err)
	}
	count := 0
	if err == nil {
		if afterIndexDDL != nil {
			afterIndexDDL()
		}
		count, err = t.buildIndex(ctx, n)
		if err != nil {
			err = fmt.Errorf("build the index of %s: %w", t.cfg.Table, err)
		}
	}
	if err != nil {
		return 0, t.removeHalfInstall(ctx, err)
	}
	return count, nil
}

// afterIndexDDL, when set (by tests), runs after InstallIndex has created the index's
// tables and triggers and before it builds the index.
var afterIndexDDL func()

// removeHalfInstall removes what a failed InstallIndex made, also when the failure is ctx
// ending (an interrupt): left behind, its triggers would log every write to the table
// with no index to fold the log into. It says whether that worked.
func (t *Table) removeHalfInstall(ctx context.Context, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := t.UninstallIndex(ctx); err != nil {
		return fmt.Errorf("%w; removing the half-made index failed too (%v): run `reconcile index uninstall` (or install again), or its triggers log every write to the table", cause, err)
	}
	return fmt.Errorf("%w (nothing is left installed)", cause)
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
	if err := t.insertEntries(ctx, tx, n, all); err != nil {
		return 0, err
	}
	chunks := []*chunkRow{{lo: []byte{}, sup: true}}
	var root merkle.Digest
	for _, ie := range all {
		if chunkStart(ie.h) {
			chunks = append(chunks, &chunkRow{lo: ie.pos, sup: superStart(ie.h)})
		}
		c := chunks[len(chunks)-1]
		c.d = c.d.Add(one(ie.h))
		root = root.Add(one(ie.h))
	}
	if err := t.insertChunks(ctx, tx, n, chunks); err != nil {
		return 0, err
	}
	if err := t.insertSupers(ctx, tx, n, supersOf(chunks)); err != nil {
		return 0, err
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

// chunkRow is one _chunk (or _super) row: the first position, the digest of the entries,
// and (chunks) whether the chunk starts a superchunk. The first chunk and superchunk
// start at the empty position.
type chunkRow struct {
	lo   []byte
	d    merkle.Digest
	sup  bool
	prev []byte // superchunks: the start of the last chunk before lo (nil: none)
}

// rowChanges compares the rows of an index level before and after a change, by their
// first positions: del are the starts of the rows that changed or went, ins the rows that
// changed or came. Rows that same finds equal are left alone.
func rowChanges(before, after []*chunkRow, same func(o, n *chunkRow) bool) (del [][]byte, ins []*chunkRow) {
	was := make(map[string]*chunkRow, len(before))
	for _, r := range before {
		was[string(r.lo)] = r
	}
	for _, r := range after {
		o, ok := was[string(r.lo)]
		delete(was, string(r.lo))
		if ok && same(o, r) {
			continue
		}
		if ok {
			del = append(del, r.lo)
		}
		ins = append(ins, r)
	}
	for lo := range was {
		del = append(del, []byte(lo))
	}
	return del, ins
}

func sameChunk(o, n *chunkRow) bool { return o.d == n.d && o.sup == n.sup }
func sameSuper(o, n *chunkRow) bool { return o.d == n.d && bytes.Equal(o.prev, n.prev) }

// supersOf groups chunks (consecutive ones, in order, the first starting a superchunk)
// into superchunks.
func supersOf(chunks []*chunkRow) []*chunkRow {
	var out []*chunkRow
	for i, c := range chunks {
		if c.sup || len(out) == 0 {
			s := &chunkRow{lo: c.lo}
			if i > 0 && len(chunks[i-1].lo) > 0 { // the empty position is no cut entry
				s.prev = chunks[i-1].lo
			}
			out = append(out, s)
		}
		s := out[len(out)-1]
		s.d = s.d.Add(c.d)
	}
	return out
}

// insertMany inserts rows (each one value per column of cols) into table, keyBatch rows
// a statement.
func (t *Table) insertMany(ctx context.Context, q querier, table, cols string, rows [][]any) error {
	for i := 0; i < len(rows); i += keyBatch {
		part := rows[i:min(i+keyBatch, len(rows))]
		ps := make([]string, len(part))
		var args []any
		for j, r := range part {
			ps[j] = "(" + t.params(len(args), len(r)) + ")"
			args = append(args, r...)
		}
		if _, err := q.ExecContext(ctx, "INSERT INTO "+table+" ("+cols+") VALUES "+strings.Join(ps, ", "), args...); err != nil {
			return t.d.dbErr(err)
		}
	}
	return nil
}

func (t *Table) insertEntries(ctx context.Context, q querier, n indexNames, es []indexEntry) error {
	rows := make([][]any, len(es))
	for i, ie := range es {
		rows[i] = []any{ie.e.Key, ie.pos, ie.h[:], ie.e.ValueHash[:], ie.e.ExpiresAt}
	}
	if err := t.insertMany(ctx, q, n.ent, "k, pos, h, vh, exp", rows); err != nil {
		return fmt.Errorf("write index entries: %w", err)
	}
	return nil
}

func (t *Table) insertChunks(ctx context.Context, q querier, n indexNames, cs []*chunkRow) error {
	rows := make([][]any, len(cs))
	for i, c := range cs {
		sup := 0
		if c.sup {
			sup = 1
		}
		rows[i] = []any{c.lo, int64(c.d.Count), c.d.Sum[:], sup}
	}
	if err := t.insertMany(ctx, q, n.chunk, "lo, n, s, sup", rows); err != nil {
		return fmt.Errorf("write index chunks: %w", err)
	}
	return nil
}

func (t *Table) insertSupers(ctx context.Context, q querier, n indexNames, ss []*chunkRow) error {
	rows := make([][]any, len(ss))
	for i, c := range ss {
		rows[i] = []any{c.lo, int64(c.d.Count), c.d.Sum[:], c.prev}
	}
	if err := t.insertMany(ctx, q, n.super, "lo, n, s, prev", rows); err != nil {
		return fmt.Errorf("write index superchunks: %w", err)
	}
	return nil
}

// deleteRows deletes the rows of table whose column col is one of vals.
func (t *Table) deleteRows(ctx context.Context, q querier, table, col string, vals [][]byte) error {
	return deleteIn(ctx, t, q, table, col, vals)
}

// deleteIn deletes the rows of table whose column col is one of vals, keyBatch a statement.
func deleteIn[V any](ctx context.Context, t *Table, q querier, table, col string, vals []V) error {
	for i := 0; i < len(vals); i += keyBatch {
		part := vals[i:min(i+keyBatch, len(vals))]
		args := make([]any, len(part))
		for j, v := range part {
			args[j] = v
		}
		if _, err := q.ExecContext(ctx, "DELETE FROM "+table+" WHERE "+col+" IN ("+t.params(0, len(part))+")", args...); err != nil {
			return t.d.dbErr(err)
		}
	}
	return nil
}

// staleError is returned when the index cannot be trusted.
func staleError(table, why string) error {
	return fmt.Errorf("the maintained index of %s is stale: %s; rebuild it with `reconcile index install`, or use mode=scan", table, why)
}

// catchUp checks that the index can be trusted, then applies the logged writes, all in one
// write transaction that locks the meta row (catch-ups do not overlap). A log with nothing
// in it needs no write: then the checks run as plain reads, so sessions on a quiet table
// take no lock, and a user who may only read the table and its index tables can run them.
func (t *Table) catchUp(ctx context.Context) (int, error) {
	n := t.indexNames()
	var one int
	switch err := t.db.QueryRowContext(ctx, "SELECT 1 FROM "+n.log+" LIMIT 1").Scan(&one); {
	case errors.Is(err, dbsql.ErrNoRows):
		return 0, t.checkIndex(ctx, t.db, "")
	case err != nil:
		return 0, t.d.dbErr(err)
	}
	total, err := t.catchUpLogged(ctx)
	if err != nil && t.d.denied(err) {
		return 0, fmt.Errorf("%w: applying the writes logged since the last session to the maintained index of %s needs INSERT, UPDATE and DELETE on its tables (%s_*): grant them to this user, let a session of a user who has them run first, or use mode=scan", err, t.cfg.Table, n.prefix)
	}
	return total, err
}

// checkIndex reads the meta row (with lock, the suffix that locks it) and checks that the
// index was built for this endpoint and can be trusted: not stale, triggers in place, the
// table the one indexed.
func (t *Table) checkIndex(ctx context.Context, q querier, lock string) error {
	n := t.indexNames()
	var schema, ident string
	var stale int
	rs, err := q.QueryContext(ctx, "SELECT schema_fp, ident, stale FROM "+n.meta+" WHERE id = 1"+lock)
	if err != nil {
		return t.d.dbErr(err)
	}
	found := rs.Next()
	if found {
		err = rs.Scan(&schema, &ident, &stale)
	}
	rs.Close()
	if err != nil {
		return err
	}
	if !found {
		return staleError(t.cfg.Table, "its meta row is missing: an install is running now, or one did not finish (was it killed?), in which case its triggers log every write to the table until you install it again or run `reconcile index uninstall`")
	}
	if schema != t.metaSchema() {
		return fmt.Errorf("the maintained index of %s was built for %q, this endpoint is %q: install it again for these columns, or use mode=scan", t.cfg.Table, schema, t.metaSchema())
	}
	if stale != 0 {
		return staleError(t.cfg.Table, "the table was truncated since the index was built")
	}
	if ok, err := t.triggersInstalled(ctx, q); err != nil {
		return err
	} else if !ok {
		return staleError(t.cfg.Table, t.triggerProblem(ctx, q))
	}
	if id, err := t.identity(ctx, q); err != nil {
		return err
	} else if id != ident {
		return staleError(t.cfg.Table, fmt.Sprintf("the table is not the one indexed (identity %s, indexed %s): it was recreated, restored or truncated", id, ident))
	}
	return nil
}

// loggedKeys returns the keys the index log holds, in q's snapshot.
func (t *Table) loggedKeys(ctx context.Context, q querier, n indexNames) (map[string]bool, error) {
	var names []string
	for _, k := range t.keyCols {
		names = append(names, t.d.quote(k.Name))
	}
	rs, err := q.QueryContext(ctx, "SELECT "+strings.Join(names, ", ")+" FROM "+n.log)
	if err != nil {
		return nil, t.d.dbErr(err)
	}
	defer rs.Close()
	keys := map[string]bool{}
	vals := make([]any, len(t.keyCols))
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rs.Next() {
		if err := rs.Scan(ptrs...); err != nil {
			return nil, err
		}
		ds := make([]Datum, len(t.keyCols))
		for i := range t.keyCols {
			if ds[i], err = t.keyCols[i].canon(vals[i]); err != nil {
				return nil, fmt.Errorf("logged key column %s: %v", t.keyCols[i].Name, err)
			}
		}
		keys[string(AppendKey(nil, ds))] = true
	}
	return keys, t.d.dbErr(rs.Err())
}

// catchUpLogged applies the logged writes in one write transaction that locks the meta
// row, checking the index again under the lock.
func (t *Table) catchUpLogged(ctx context.Context) (int, error) {
	n := t.indexNames()
	tx, err := t.d.beginWrite(ctx, t.db)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	if err := t.checkIndex(ctx, tx, t.d.forUpdate()); err != nil {
		return 0, err
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
	orig   []*chunkRow // copies of the chunks as loaded, to write only what changed
	// The partial path (index_catchup.go): the root as read from the meta row and kept up
	// to date, and whether the partial path wrote anything (flush then writes the root).
	root         merkle.Digest
	rootLoaded   bool
	partialDirty bool
	// lastSeq is the highest log sequence number read so far, once readLog.
	readLog bool
	lastSeq int64
}

const logBatch = 10000

// step applies up to logBatch logged writes; more reports whether the log may hold more.
func (c *catchup) step(ctx context.Context) (applied int, more bool, err error) {
	t := c.t
	var names []string
	for _, k := range t.keyCols {
		names = append(names, t.d.quote(k.Name))
	}
	// Past the rows this catch-up has read: those it deleted are dead index entries to
	// PostgreSQL and InnoDB until it commits, and reading past them again each step made
	// a catch-up of 900,000 writes quadratic.
	where, args := "", []any(nil)
	if c.readLog {
		where, args = " WHERE seq > "+t.p(1), []any{c.lastSeq}
	}
	rs, err := c.tx.QueryContext(ctx, "SELECT seq, "+strings.Join(names, ", ")+" FROM "+c.n.log+where+" ORDER BY seq LIMIT "+fmt.Sprint(logBatch), args...)
	if err != nil {
		return 0, false, t.d.dbErr(err)
	}
	var seqs []int64
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
		seqs = append(seqs, seq)
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
	c.readLog, c.lastSeq = true, seqs[len(seqs)-1]
	if t.afterLogRead != nil {
		t.afterLogRead()
	}
	cur, err := t.lookup(ctx, c.tx, keys, "")
	if err != nil {
		return 0, false, err
	}
	old, err := c.entries(ctx, keys)
	if err != nil {
		return 0, false, err
	}
	var removes, adds []indexEntry
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
		if hadOld {
			removes = append(removes, o)
		}
		if hasNew {
			adds = append(adds, ne)
		}
		applied++
	}
	if err := c.apply(ctx, removes, adds); err != nil {
		return 0, false, err
	}
	// Exactly the rows read: a writer's log row takes its number when written, not when
	// its transaction commits, so a row numbered below the last one read may have
	// committed since; it stays for the next catch-up (TestCatchUpKeepsLateCommits).
	if err := deleteIn(ctx, t, c.tx, c.n.log, "seq", seqs); err != nil {
		return 0, false, err
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
	c.orig = make([]*chunkRow, len(cs))
	for i, ch := range cs {
		cp := *ch
		c.orig[i] = &cp
	}
	return nil
}

// readChunks reads every _chunk row in position order.
func (t *Table) readChunks(ctx context.Context, q querier, n indexNames) ([]*chunkRow, error) {
	cs, err := t.readLevel(ctx, q, n.chunk, nil, nil)
	if err == nil && (len(cs) == 0 || len(cs[0].lo) != 0) {
		err = errors.New("the index has no first chunk: run `reconcile index install` to rebuild")
	}
	return cs, err
}

// readLevel reads the rows of a _chunk or _super table in [lo, hi) (nil hi: to the end),
// in position order.
func (t *Table) readLevel(ctx context.Context, q querier, table string, lo, hi []byte) ([]*chunkRow, error) {
	where := ""
	var args []any
	if lo != nil {
		where = "lo >= " + t.p(1)
		args = append(args, lo)
		if hi != nil {
			where += " AND lo < " + t.p(2)
			args = append(args, hi)
		}
	}
	return t.readWhere(ctx, q, table, where, args)
}

// span is a range [lo, hi) of an index table's position column (nil hi: to the end).
type span struct{ lo, hi []byte }

// spansQuery is one statement that reads cols of the rows of table whose position column
// col lies in any of spans, in col order. PostgreSQL takes the spans as two arrays in a
// lateral join, an index scan each: it plans a UNION ALL of many range scans slowly
// (milliseconds a branch), and a plain join as a scan of the whole table. MySQL and
// MariaDB take an OR of ranges, which their range optimizer reads as one multi-range index
// scan (a UNION ALL of 128 branches was slower than 128 statements there). SQLite, in
// process, takes a UNION ALL of range scans.
func (t *Table) spansQuery(table, cols, col string, spans []span) (string, []any) {
	var args []any
	var sel []string
	scan := func(lo, hi []byte) string {
		args = append(args, lo)
		q := "SELECT " + cols + " FROM " + table + " WHERE " + col + " >= " + t.p(len(args))
		if hi != nil {
			args = append(args, hi)
			q += " AND " + col + " < " + t.p(len(args))
		}
		return q
	}
	if t.cfg.Dialect == "postgres" && len(spans) > 1 {
		var los, his [][]byte
		var open []byte // the span that runs to the end, if any
		for _, sp := range spans {
			if sp.hi == nil {
				open = sp.lo
				continue
			}
			los, his = append(los, sp.lo), append(his, sp.hi)
		}
		args = []any{los, his}
		sel = append(sel, "SELECT e.* FROM unnest($1::bytea[], $2::bytea[]) AS r(lo, hi) CROSS JOIN LATERAL ("+
			"SELECT "+cols+" FROM "+table+" WHERE "+col+" >= r.lo AND "+col+" < r.hi ORDER BY "+col+") e")
		if open != nil {
			sel = append(sel, scan(open, nil))
		}
	} else if t.cfg.Dialect == "mysql" && len(spans) > 1 {
		var or []string
		for _, sp := range spans {
			args = append(args, sp.lo)
			c := col + " >= " + t.p(len(args))
			if sp.hi != nil {
				args = append(args, sp.hi)
				c = "(" + c + " AND " + col + " < " + t.p(len(args)) + ")"
			}
			or = append(or, c)
		}
		sel = append(sel, "SELECT "+cols+" FROM "+table+" WHERE "+strings.Join(or, " OR "))
	} else {
		for _, sp := range spans {
			sel = append(sel, scan(sp.lo, sp.hi))
		}
	}
	return strings.Join(sel, " UNION ALL ") + " ORDER BY " + col, args
}

// readWhere reads the rows of a _chunk or _super table matching where ("" for all), in
// position order.
func (t *Table) readWhere(ctx context.Context, q querier, table, where string, args []any) ([]*chunkRow, error) {
	cols := "lo, n, s"
	isChunk := table == t.indexNames().chunk
	if isChunk {
		cols += ", sup"
	} else {
		cols += ", prev"
	}
	query := "SELECT " + cols + " FROM " + table
	if where != "" {
		query += " WHERE " + where
	}
	return t.readRows(ctx, q, isChunk, query+" ORDER BY lo", args)
}

// readRows runs a query returning (lo, n, s, sup) rows of _chunk (isChunk) or (lo, n, s,
// prev) rows of _super.
func (t *Table) readRows(ctx context.Context, q querier, isChunk bool, query string, args []any) ([]*chunkRow, error) {
	rs, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, t.d.dbErr(err)
	}
	defer rs.Close()
	// Rows come by the ten thousand (a session reads every chunk sum): the bytes are read
	// raw and copied into shared blocks, and the rows allocated in blocks too.
	var out []*chunkRow
	var rows []chunkRow
	var arena []byte
	keep := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		if len(arena)+len(b) > cap(arena) {
			arena = make([]byte, 0, max(64<<10, len(b)))
		}
		arena = append(arena, b...)
		return arena[len(arena)-len(b) : len(arena) : len(arena)]
	}
	var lo, s, prev dbsql.RawBytes
	var cnt, sup int64
	dest := []any{&lo, &cnt, &s, &sup}
	if !isChunk {
		dest[3] = &prev
	}
	for rs.Next() {
		prev = nil
		if err := rs.Scan(dest...); err != nil {
			return nil, err
		}
		if len(s) != 32 || cnt < 0 {
			return nil, errors.New("malformed index chunk: run `reconcile index install` to rebuild")
		}
		if len(rows) == cap(rows) {
			rows = make([]chunkRow, 0, 1024)
		}
		rows = append(rows, chunkRow{lo: keep(lo), sup: sup != 0 || len(lo) == 0, prev: keep(prev)})
		c := &rows[len(rows)-1]
		if c.lo == nil {
			c.lo = []byte{}
		}
		c.d.Count = uint64(cnt)
		copy(c.d.Sum[:], s)
		out = append(out, c)
	}
	return out, t.d.dbErr(rs.Err())
}

// one is the digest of the single entry whose hash is h.
func one(h merkle.Hash) merkle.Digest { return merkle.Digest{Count: 1, Sum: h} }

// chunkOf returns the index of the chunk holding pos.
func chunkOf(cs []*chunkRow, pos []byte) int {
	return sort.Search(len(cs), func(i int) bool { return bytes.Compare(cs[i].lo, pos) > 0 }) - 1
}

// apply moves the entries of one batch of changed rows: the old entries go, the new ones
// come, in two bulk statements each; then the chunk sums follow in memory (rechunk). Only
// the pieces a new chunk start cuts off need their entries summed again.
func (c *catchup) apply(ctx context.Context, removes, adds []indexEntry) error {
	if len(removes)+len(adds) == 0 {
		return nil
	}
	if partial, err := c.partialWorthIt(ctx, len(removes)+len(adds)); err != nil {
		return err
	} else if partial {
		return c.applyPartial(ctx, removes, adds)
	}
	if err := c.loadChunks(ctx); err != nil {
		return err
	}
	if err := c.moveEntries(ctx, removes, adds); err != nil {
		return err
	}
	out, _, err := c.rechunk(ctx, c.chunks, nil, nil, removes, adds)
	if err != nil {
		return err
	}
	c.chunks = out
	return nil
}

// moveEntries deletes the _ent rows of removes and inserts those of adds, in bulk.
func (c *catchup) moveEntries(ctx context.Context, removes, adds []indexEntry) error {
	keys := make([][]byte, len(removes))
	for i, ie := range removes {
		keys[i] = ie.e.Key
	}
	if err := c.t.deleteRows(ctx, c.tx, c.n.ent, "k", keys); err != nil {
		return err
	}
	return c.t.insertEntries(ctx, c.tx, c.n, adds)
}

// flush writes the chunks and superchunks that changed, and the root.
func (c *catchup) flush(ctx context.Context) error {
	if c.chunks == nil {
		if !c.partialDirty {
			return nil
		}
		_, err := c.tx.ExecContext(ctx, "UPDATE "+c.n.meta+" SET n = "+c.t.p(1)+", s = "+c.t.p(2)+" WHERE id = 1", int64(c.root.Count), c.root.Sum[:])
		return c.t.d.dbErr(err)
	}
	t := c.t
	var root merkle.Digest
	for _, ch := range c.chunks {
		root = root.Add(ch.d)
	}
	del, rows := rowChanges(c.orig, c.chunks, sameChunk)
	if err := t.deleteRows(ctx, c.tx, c.n.chunk, "lo", del); err != nil {
		return err
	}
	if err := t.insertChunks(ctx, c.tx, c.n, rows); err != nil {
		return err
	}
	// Superchunks: recomputed from the chunks, written where they changed.
	old, err := t.readLevel(ctx, c.tx, c.n.super, nil, nil)
	if err != nil {
		return err
	}
	del, rows = rowChanges(old, supersOf(c.chunks), sameSuper)
	if err := t.deleteRows(ctx, c.tx, c.n.super, "lo", del); err != nil {
		return err
	}
	if err := t.insertSupers(ctx, c.tx, c.n, rows); err != nil {
		return err
	}
	_, err = c.tx.ExecContext(ctx, "UPDATE "+c.n.meta+" SET n = "+t.p(1)+", s = "+t.p(2)+" WHERE id = 1", int64(root.Count), root.Sum[:])
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
	if t.afterVerifyCatchUp != nil {
		t.afterVerifyCatchUp()
	}
	n := t.indexNames()
	tx, _, err := t.d.beginRead(ctx, t.db)
	if err != nil {
		return st, err
	}
	defer tx.Rollback()
	// In one snapshot the table is the index plus the writes still in the log: the rows
	// under the log's keys are left out of the comparison (a table being written would
	// otherwise look broken).
	pending, err := t.loggedKeys(ctx, tx, n)
	if err != nil {
		return st, err
	}
	st.Pending = len(pending)
	want := map[string]indexEntry{}
	err = t.scanTx(ctx, tx, func(r reconcile.Row) error {
		ie := t.newIndexEntry(r)
		if !pending[string(ie.e.Key)] {
			want[string(ie.e.Key)] = ie
		}
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
		case pending[string(ie.e.Key)]:
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
	startHash := map[string]merkle.Hash{}
	for _, ie := range got {
		i := chunkOf(chunks, ie.pos)
		sums[i] = sums[i].Add(one(ie.h))
		root = root.Add(one(ie.h))
		if chunkStart(ie.h) {
			startHash[string(ie.pos)] = ie.h
			if !bytes.Equal(chunks[i].lo, ie.pos) {
				st.BadChunks++ // a chunk should start here
			}
		}
	}
	for i, c := range chunks {
		h, isStart := startHash[string(c.lo)]
		if c.d != sums[i] || (i > 0 && (!isStart || c.sup != superStart(h))) {
			st.BadChunks++
		}
	}
	supers, err := t.readLevel(ctx, tx, n.super, nil, nil)
	if err != nil {
		return st, err
	}
	wantSupers := supersOf(chunks)
	if len(wantSupers) != len(supers) {
		st.BadChunks++
	} else {
		for i := range wantSupers {
			if !bytes.Equal(wantSupers[i].lo, supers[i].lo) || wantSupers[i].d != supers[i].d || !bytes.Equal(wantSupers[i].prev, supers[i].prev) {
				st.BadChunks++
			}
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
