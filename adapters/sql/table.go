// Package sql serves one table of PostgreSQL, MySQL/MariaDB or SQLite as a reconcile
// endpoint.
//
// A row's key is the order-preserving encoding of its key columns (AppendKey), its value
// the canonical encoding of its value columns (AppendValue): one encoding by logical type,
// computed in Go from what the driver returns, so the same logical row hashes the same in
// every engine and in a key-value store (docs/canonical.md). The table's own types come
// from the catalog.
//
// Sessions are served in scan mode: one streaming read of the table in a consistent
// snapshot, hashed in Go, indexed in memory (merkle.Sorted).
//
// Writes (Apply) run in one transaction: the rows of the batch are locked and compared
// with what the session saw; each change then updates, inserts or deletes one row.
package sql

import (
	"bytes"
	"context"
	dbsql "database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/url"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// Table is one SQL table as an endpoint. It is safe for concurrent use.
type Table struct {
	cfg      Config
	d        dialect
	db       *dbsql.DB
	keyCols  []Column
	verCol   *Column
	expCol   *Column
	valCols  []Column // sorted by name
	schema   string
	ordering merkle.Ordering
	name     string // quoted table name
	// soleUnique marks a table whose key is its only unique index; upserts, set once
	// (upsertsOnce), whether MySQL may update its rows with an upsert (mysqlUpserts).
	soleUnique  bool
	upsertsOnce sync.Once
	upserts     bool
	// stmtBytes bounds the row values one multi-row statement carries: maxBytesPerStatement,
	// or a quarter of a MySQL server's smaller max_allowed_packet.
	stmtBytes int
	// maxPacket is a MySQL server's max_allowed_packet (0: not MySQL, or unknown): a row
	// larger than it cannot be written in any statement, and Apply refuses it at once.
	maxPacket int
	// view marks a view (or materialized view) read with a key= no constraint makes
	// unique: every read that sees all rows checks that no key repeats.
	view bool
	// seqCols indexes (into allCols) the written columns that take their default from a
	// sequence (Column.Sequence): a write moves those sequences (advanceSequences).
	seqCols []int

	// ReadOnly makes Apply and Write refuse.
	ReadOnly bool

	// partialSteps counts catch-up steps that took the partial path (tests look), and
	// partialEvery, when set, replaces the entries per change below which it is taken.
	partialSteps atomic.Int64
	partialEvery int
	// afterLogRead, when set, runs after a catch-up step has read its batch of the log
	// (tests commit a writer there); afterVerifyCatchUp after VerifyIndex's catch-up.
	afterLogRead, afterVerifyCatchUp func()
}

var (
	_ reconcile.Endpoint         = (*Table)(nil)
	_ reconcile.KeyFormatter     = (*Table)(nil)
	_ reconcile.VersionFormatter = (*Table)(nil)
)

// FormatKey renders a key as its columns, for reports and messages: id=18, or
// region="eu", id=7 for a composite key (text quoted, bytes as 0x-hex); "" when the bytes
// are no key of this table.
func (t *Table) FormatKey(k []byte) string { return keyColumns(t.keyCols).FormatKey(k) }

// VersionFormat is reconcile.VersionUnixNano where the version column is a timestamp,
// else "": it tells a peer without the table (a client of `reconcile serve`) how to show
// the versions.
func (t *Table) VersionFormat() string {
	if t.verCol != nil && t.verCol.Class == Timestamp {
		return reconcile.VersionUnixNano
	}
	return ""
}

// FormatVersion renders a version of a timestamp version column as its time in UTC
// (RFC 3339); "" where the versions are integers.
func (t *Table) FormatVersion(v uint64) string {
	return reconcile.FormatVersionAs(t.VersionFormat(), v)
}

// KeyFormat describes the table's key to a peer that formats keys without the table (a
// client of `reconcile serve`, see docs/http.md): "sql/1 " and each key column's
// query-escaped name and class, "sql/1 tenant:text,id:int". KeyFormatterFor reads it.
func (t *Table) KeyFormat() string {
	var b strings.Builder
	b.WriteString(keyFormatPrefix)
	for i, c := range t.keyCols {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(url.QueryEscape(c.Name) + ":" + c.Class.String())
	}
	return b.String()
}

const keyFormatPrefix = "sql/1 "

// maxKeyFormat bounds a key format read from a peer.
const maxKeyFormat = 4096

// KeyFormatterFor returns the formatter of the keys a KeyFormat describes, as the table's
// own FormatKey renders them; nil when format is not a KeyFormat (it comes from a peer).
func KeyFormatterFor(format string) reconcile.KeyFormatter {
	rest, ok := strings.CutPrefix(format, keyFormatPrefix)
	if !ok || len(format) > maxKeyFormat || rest == "" {
		return nil
	}
	var cols keyColumns
	for _, part := range strings.Split(rest, ",") {
		name, class, ok := strings.Cut(part, ":")
		if !ok {
			return nil
		}
		n, err := url.QueryUnescape(name)
		if err != nil || n == "" {
			return nil
		}
		c := slices.Index(classNames[:], class)
		if c < 0 || Class(c) == Null {
			return nil
		}
		cols = append(cols, Column{Name: n, Class: Class(c)})
	}
	return cols
}

// keyColumns formats keys of these columns.
type keyColumns []Column

func (cols keyColumns) FormatKey(k []byte) string {
	ds, err := DecodeKey(k, cols)
	if err != nil {
		return ""
	}
	var b strings.Builder
	for i, d := range ds {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(cols[i].Name)
		b.WriteByte('=')
		switch d.Class {
		case Text:
			b.WriteString(strconv.Quote(d.Str))
		case Bytes:
			b.WriteString("0x" + hex.EncodeToString(d.Bytes))
		default:
			b.WriteString(d.String())
		}
	}
	return b.String()
}

// Open connects and reads the table's catalog: the columns and their classes, the key
// (which must be unique), the version and expiry columns. Every problem the catalog can
// show is reported here, before any session.
func Open(ctx context.Context, cfg Config) (*Table, error) {
	d, err := dialectFor(cfg.Dialect)
	if err != nil {
		return nil, err
	}
	if _, _, err := splitTable(cfg.Table); err != nil {
		return nil, err
	}
	db, err := d.connect(cfg.DSN)
	if err != nil {
		return nil, err
	}
	t := &Table{cfg: cfg, d: d, db: db, name: quoteTable(d, cfg.Table)}
	if err := t.load(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return t, nil
}

// comparableColumns lists the columns a columns= option can name: those not already used as
// the key, version or expiry, whose types reconcile compares.
func comparableColumns(cols []Column, used map[string]string) []string {
	var names []string
	for _, c := range cols {
		if role, ok := used[c.Name]; (!ok || role == "value") && c.Class != 0 {
			names = append(names, c.Name)
		}
	}
	return names
}

func (t *Table) load(ctx context.Context) error {
	if err := t.db.PingContext(ctx); err != nil {
		msg := dedupe(oneLine(t.d.dbErr(err).Error()))
		if errors.Is(err, syscall.ECONNREFUSED) {
			msg += " (is the server running, and listening at the URL's host and port?)"
		}
		return fmt.Errorf("connect to %s: %s", t.cfg.Dialect, msg)
	}
	cols, err := t.d.columns(ctx, t.db, t.cfg.Table)
	if err != nil {
		return err
	}
	byName := map[string]*Column{}
	var names []string
	for i := range cols {
		byName[cols[i].Name] = &cols[i]
		names = append(names, cols[i].Name)
	}
	find := func(role, name string) (*Column, error) {
		c, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("table %s has no column %q (%s); its columns: %s", t.cfg.Table, name, role, strings.Join(names, ", "))
		}
		return c, nil
	}
	uniques, err := t.d.uniqueKeys(ctx, t.db, t.cfg.Table)
	if err != nil {
		return err
	}
	keyNames := t.cfg.Key
	for _, n := range keyNames {
		if _, err := find("key", n); err != nil {
			return err // named before "not unique", which it would also be
		}
	}
	if len(keyNames) == 0 || !isUnique(keyNames, uniques) {
		if t.view, err = isView(ctx, t.d, t.db, t.cfg.Table); err != nil {
			return err
		}
	}
	switch {
	case len(keyNames) == 0 && t.view:
		return fmt.Errorf("%s is a view: name the columns that identify its rows with key=a,b (reconcile checks that no key repeats as it reads)", t.cfg.Table)
	case len(keyNames) == 0 && len(uniques) == 0:
		return fmt.Errorf("table %s has no primary key or unique constraint: name the key columns with key=a,b (and make them unique)", t.cfg.Table)
	case len(keyNames) == 0:
		keyNames = uniques[0] // PostgreSQL and MySQL list the primary key's index first
	case !t.view && !isUnique(keyNames, uniques):
		return fmt.Errorf("table %s: key %s is not unique (no primary key or unique constraint on exactly those columns): add one, or name a unique key", t.cfg.Table, strings.Join(keyNames, ","))
	}
	t.soleUnique = !t.view && len(uniques) == 1
	t.stmtBytes = maxBytesPerStatement
	if _, ok := t.d.(mysql); ok {
		var packet int
		if err := t.db.QueryRowContext(ctx, "SELECT @@max_allowed_packet").Scan(&packet); err == nil && packet > 0 {
			t.stmtBytes = min(t.stmtBytes, packet/4)
			t.maxPacket = packet
		}
	}
	used := map[string]string{}
	use := func(role, name string) (*Column, error) {
		c, err := find(role, name)
		if err != nil {
			return nil, err
		}
		if prev, ok := used[name]; ok {
			return nil, fmt.Errorf("column %s is named both as %s and as %s", name, prev, role)
		}
		used[name] = role
		if c.Class == 0 {
			return nil, fmt.Errorf("column %s has type %s, which reconcile cannot compare across engines; leave it out with columns=%s (see docs/canonical.md for the supported types)", name, c.Type, strings.Join(comparableColumns(cols, used), ","))
		}
		if role != "value" {
			c.role = role
			if c.Class == Decimal && integralDecimal(c.Type) {
				c.Class, c.Numeric = Int, true // an id bigint unsigned or numeric(10,0) is an integer key
			}
		}
		return c, nil
	}
	for _, n := range keyNames {
		c, err := use("key", n)
		if err != nil {
			return err
		}
		if !keyClassOK(c.Class) {
			return fmt.Errorf("key column %s is %s (%s): keys must be integers (decimals of scale 0 included), text, bytes, booleans, timestamps, dates or times", n, c.Class, c.Type)
		}
		t.keyCols = append(t.keyCols, *c)
	}
	t.ordering = merkle.KeyOrder
	if t.cfg.Version != "" {
		c, err := use("version", t.cfg.Version)
		if err != nil {
			return err
		}
		if c.Class != Int && c.Class != Timestamp {
			return fmt.Errorf("version column %s is %s (%s): it must be an integer or a timestamp", c.Name, c.Class, c.Type)
		}
		t.verCol, t.ordering = c, merkle.VersionOrder
	}
	if t.cfg.Expires != "" {
		c, err := use("expiry", t.cfg.Expires)
		if err != nil {
			return err
		}
		if c.Class != Int && c.Class != Timestamp {
			return fmt.Errorf("expiry column %s is %s (%s): it must be a timestamp or an integer of unix nanoseconds", c.Name, c.Class, c.Type)
		}
		t.expCol = c
	}
	var valNames []string
	for _, n := range t.cfg.Columns {
		if role, ok := used[n]; ok && role != "value" {
			continue // columns= may list the key, version and expiry columns too
		}
		valNames = append(valNames, n)
	}
	if len(t.cfg.Columns) == 0 {
		for _, c := range cols {
			if _, ok := used[c.Name]; !ok {
				valNames = append(valNames, c.Name)
			}
		}
	}
	for _, n := range valNames {
		c, err := use("value", n)
		if err != nil {
			return err
		}
		if c.Class == Decimal {
			setDecimalBounds(c, t.cfg.Dialect)
		}
		t.valCols = append(t.valCols, *c)
	}
	sort.Slice(t.valCols, func(i, j int) bool { return t.valCols[i].Name < t.valCols[j].Name })
	t.schema = schemaString(t.keyCols, t.valCols)
	for i, c := range t.allCols() {
		if c.Sequence != "" && !c.Generated {
			t.seqCols = append(t.seqCols, i)
		}
	}
	return nil
}

// oneLine joins a multi-line driver message (pgx lists every address it tried).
func oneLine(s string) string {
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.ReplaceAll(strings.Join(slices.DeleteFunc(lines, func(l string) bool { return l == "" }), "; "), ":; ", ": ")
}

// dedupe drops the parts of a "; "-separated message that an earlier part ends with: pgx
// reports each connection attempt (with TLS, then without, under sslmode=prefer), and
// they fail alike when nothing listens.
func dedupe(msg string) string {
	var kept []string
	for _, p := range strings.Split(msg, "; ") {
		if !slices.ContainsFunc(kept, func(k string) bool { return strings.HasSuffix(k, p) }) {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, "; ")
}

func isUnique(key []string, uniques [][]string) bool {
	for _, u := range uniques {
		if len(u) == len(key) {
			a, b := slices.Clone(u), slices.Clone(key)
			slices.Sort(a)
			slices.Sort(b)
			if slices.Equal(a, b) {
				return true
			}
		}
	}
	return false
}

// schemaString is the schema fingerprint sessions compare: the key's classes and the
// value columns' names and classes in name order. Engines' type names do not appear, so a
// PostgreSQL text column and a MariaDB VARCHAR compare.
func schemaString(key, vals []Column) string {
	var b strings.Builder
	b.WriteString("sql/1 key=")
	for i, c := range key {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(c.Class.String())
	}
	b.WriteString(" columns=")
	for i, c := range vals {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(c.Name + ":" + c.Class.String())
		if c.Class == Native {
			b.WriteString("(" + c.NativeType + ")") // text[] pairs only with text[]
		}
	}
	return b.String()
}

// Schema returns the schema fingerprint (see reconcile.Info).
func (t *Table) Schema() string { return t.schema }

// Ordering returns the table's ordering: version order when a version column is named.
func (t *Table) Ordering() merkle.Ordering { return t.ordering }

// KeyColumns and ValueColumns describe the table's row encoding.
func (t *Table) KeyColumns() []Column   { return t.keyCols }
func (t *Table) ValueColumns() []Column { return t.valCols }

// Close closes the connection pool.
func (t *Table) Close() error { return t.db.Close() }

// selectList is the column list every row read uses: key columns, version, expiry, values.
func (t *Table) selectList() string {
	var names []string
	for _, c := range t.allCols() {
		n := t.d.quote(c.Name)
		if c.Class == Native {
			n += "::text" // its text output on every path, whatever the driver makes of it
		}
		if _, my := t.d.(mysql); my && c.Class == Float && c.Float32 {
			// MariaDB's text protocol writes a FLOAT with 6 significant digits (3.14159
			// for 3.1415927): widened to a double, exactly, it reads as stored.
			n = "CAST(" + n + " AS DOUBLE)"
		}
		names = append(names, n)
	}
	return strings.Join(names, ", ")
}

// allCols lists the columns a row read returns, in select-list order.
func (t *Table) allCols() []*Column {
	var cs []*Column
	for i := range t.keyCols {
		cs = append(cs, &t.keyCols[i])
	}
	if t.verCol != nil {
		cs = append(cs, t.verCol)
	}
	if t.expCol != nil {
		cs = append(cs, t.expCol)
	}
	for i := range t.valCols {
		cs = append(cs, &t.valCols[i])
	}
	return cs
}

// scanner reads rows of the select list into reconcile rows, reusing its buffers.
type scanner struct {
	t    *Table
	cols []*Column
	vals []any
	ptrs []any
	ds   []Datum
	// borrow makes a row's Key and Value the scanner's own buffers, valid until its next
	// row (whole-table scans, whose consumer keeps only what it copies); else each row
	// gets its own.
	borrow       bool
	keyB, valueB []byte
}

func (t *Table) newScanner() *scanner {
	s := &scanner{t: t, cols: t.allCols()}
	s.vals = make([]any, len(s.cols))
	s.ptrs = make([]any, len(s.cols))
	for i := range s.vals {
		s.ptrs[i] = &s.vals[i]
	}
	return s
}

// row scans the current row of rs.
func (s *scanner) row(rs *dbsql.Rows) (reconcile.Row, error) {
	if err := rs.Scan(s.ptrs...); err != nil {
		return reconcile.Row{}, err
	}
	return s.convert(s.vals)
}

// errBadVersion is a version column's NULL or negative value.
var errBadVersion = errors.New("versions must be set and not negative")

// convert builds a row from the driver's values of one select-list row.
func (s *scanner) convert(vals []any) (reconcile.Row, error) {
	return s.assemble(func(i int) (Datum, error) { return s.cols[i].canon(vals[i]) }, nil)
}

// assemble builds a row from the datums of one select-list row, which datum(i) returns
// for the i-th column (the Datum need not outlive the call: its bytes are copied). Value
// columns are encoded by appendValue where it is set (it appends what appendDatum makes
// of the column's datum, straight from the driver's bytes), else from their datums.
func (s *scanner) assemble(datum func(i int) (Datum, error), appendValue func(dst []byte, i int) ([]byte, error)) (reconcile.Row, error) {
	t := s.t
	var r reconcile.Row
	s.ds = s.ds[:0]
	i := 0
	for ; i < len(t.keyCols); i++ {
		d, err := datum(i)
		if err != nil {
			return r, fmt.Errorf("key column %s: %v", s.cols[i].Name, err)
		}
		if d.Class == Null {
			return r, fmt.Errorf("key column %s is NULL in a row: keys must not be NULL", s.cols[i].Name)
		}
		s.ds = append(s.ds, d)
	}
	if s.borrow {
		s.keyB = AppendKey(s.keyB[:0], s.ds)
		r.Key = s.keyB
		if r.Key == nil {
			r.Key = []byte{}
		}
	} else {
		r.Key = AppendKey([]byte{}, s.ds) // non-nil even when empty: nil means no row
	}
	// A column after the key that does not read makes the row a poison row (see
	// unreadable.go): the rest of the table reads on.
	fail := func(c *Column, err error) (reconcile.Row, error) {
		hint := ""
		if t.cfg.Dialect == "sqlite" && !errors.Is(err, errBadVersion) {
			// SQLite stores any value in any column of a table that is not STRICT.
			hint = ": SQLite kept a value its column's type does not describe; correct the row, or leave the column out with columns= on both sides (a column declared without a type, or ANY in a STRICT table, is read as what each value holds)"
		}
		r.Value = poisonValue(fmt.Errorf("row %s: column %s (%s): %v%s", reconcile.KeyText(r.Key, t), c.Name, c.Type, err, hint))
		return r, nil
	}
	if t.verCol != nil {
		d, err := datum(i)
		if err != nil {
			return fail(s.cols[i], err)
		}
		if d.Class == Null || d.Int < 0 {
			return fail(s.cols[i], fmt.Errorf("version %s: %w", d, errBadVersion))
		}
		r.Version = uint64(d.Int)
		i++
	}
	if t.expCol != nil {
		d, err := datum(i)
		if err != nil {
			return fail(s.cols[i], err)
		}
		r.ExpiresAt = d.Int // NULL: 0, never
		i++
	}
	if appendValue == nil {
		appendValue = func(dst []byte, i int) ([]byte, error) {
			d, err := datum(i)
			return appendDatum(dst, d), err
		}
	}
	var v []byte // a row of its own unless borrowed
	if s.borrow {
		v = s.valueB[:0]
	}
	for ; i < len(s.cols); i++ {
		var err error
		if v, err = appendValue(v, i); err != nil {
			return fail(s.cols[i], err)
		}
	}
	if s.borrow {
		s.valueB = v
	}
	r.Value = v
	return r, nil
}

// Open takes a snapshot of the table at now: from the maintained index where one is
// installed (and mode is not scan), else by one streaming read indexed in memory.
func (t *Table) Open(ctx context.Context, now int64) (reconcile.Snapshot, error) {
	indexed, err := t.useIndex(ctx)
	if err != nil {
		return nil, err
	}
	if indexed {
		return t.openIndex(ctx, now)
	}
	return t.openScan(ctx, now)
}

// IndexWarning says why sessions would not read an installed maintained index, "" when
// they would: a SQLite database outside WAL mode, where sessions scan (or, with
// mode=maintained, fail) although the triggers keep the index.
func (t *Table) IndexWarning(ctx context.Context) (string, error) {
	if t.cfg.Dialect != "sqlite" || t.cfg.Mode == "scan" {
		return "", nil
	}
	mode, wal, err := sqliteJournal(ctx, t.db)
	if err != nil || wal {
		return "", err
	}
	return fmt.Sprintf("this SQLite database is in %s mode, so sessions read it in scan mode, not from the index (which its triggers keep all the same): switch it to WAL once (PRAGMA journal_mode=WAL; it stays)", mode), nil
}

// useIndex decides between maintained and scan mode for one session.
func (t *Table) useIndex(ctx context.Context) (bool, error) {
	if t.cfg.Mode == "scan" {
		return false, nil
	}
	installed, err := t.indexInstalled(ctx)
	if err != nil {
		return false, err
	}
	if !installed {
		if t.cfg.Mode == "maintained" {
			return false, fmt.Errorf("table %s has no maintained index: run `reconcile index install` on this endpoint first, or use mode=scan", t.cfg.Table)
		}
		return false, nil
	}
	if t.cfg.Dialect == "sqlite" {
		// A maintained snapshot holds its read transaction for the session, which
		// SQLite allows beside writers only in WAL mode.
		mode, wal, err := sqliteJournal(ctx, t.db)
		if err != nil {
			return false, err
		}
		if !wal {
			if t.cfg.Mode == "maintained" {
				return false, fmt.Errorf("maintained mode on SQLite needs WAL mode (PRAGMA journal_mode=WAL); this database is in %s mode", mode)
			}
			return false, nil
		}
	}
	return true, nil
}

// openScan reads the whole table in one snapshot and indexes it in memory.
func (t *Table) openScan(ctx context.Context, now int64) (reconcile.Snapshot, error) {
	var (
		tx   *dbsql.Tx
		conn *dbsql.Conn
		keep = true
		err  error
	)
	if rr, ok := t.d.(rawReader); ok {
		conn, tx, err = rr.beginReadConn(ctx, t.db)
	} else {
		tx, keep, err = t.d.beginRead(ctx, t.db)
	}
	if err != nil {
		return nil, fmt.Errorf("open a read snapshot of %s: %w", t.cfg.Table, err)
	}
	snap := &snapshot{t: t, now: now}
	workers := runtime.GOMAXPROCS(0)
	parts := make([]*merkle.SortedBuilder, workers)
	var keys []map[string]bool // a view's keys, to find one that repeats
	if t.view {
		keys = make([]map[string]bool, workers)
	}
	for w := range parts {
		parts[w] = merkle.NewSortedBuilder(t.ordering)
		if t.view {
			keys[w] = map[string]bool{}
		}
	}
	err = t.scanParallel(ctx, tx, conn, workers, func(w int, r reconcile.Row) error {
		if t.view {
			if keys[w][string(r.Key)] {
				return t.errRepeatedKey(r.Key)
			}
			keys[w][string(r.Key)] = true
		}
		if e := r.Entry(); !e.Expired(now) {
			parts[w].Add(e) // copies the borrowed key
		}
		return nil
	})
	if err == nil && t.view {
		for w := 1; w < workers && err == nil; w++ {
			for k := range keys[w] {
				if keys[0][k] {
					err = t.errRepeatedKey([]byte(k))
					break
				}
				keys[0][k] = true
			}
		}
	}
	if err == nil && !keep {
		err = tx.Commit()
		tx = nil
	}
	if err != nil {
		if tx != nil {
			tx.Rollback()
		}
		if conn != nil {
			conn.Close()
		}
		return nil, err
	}
	snap.tx, snap.conn = tx, conn
	snap.SortedIndex = reconcile.SortedIndex{Sorted: merkle.BuildSorted(t.ordering, parts...)}
	snap.scanned = int64(snap.Len())
	root, _ := snap.Digest(nil, nil)
	snap.info = reconcile.Info{Ordering: t.ordering, Schema: t.schema, Root: root}
	return snap, nil
}

// scanTx streams every row of the table (expired ones included) in no particular order.
func (t *Table) scanTx(ctx context.Context, q querier, fn func(reconcile.Row) error) error {
	rs, err := q.QueryContext(ctx, "SELECT "+t.selectList()+" FROM "+t.name)
	if err != nil {
		return fmt.Errorf("read %s: %w", t.cfg.Table, t.d.dbErr(err))
	}
	defer rs.Close()
	sc := t.newScanner()
	for rs.Next() {
		r, err := sc.row(rs)
		if err != nil {
			return fmt.Errorf("read %s: %w", t.cfg.Table, err)
		}
		if t.ordering == merkle.KeyOrder {
			r.Version = 0
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rs.Err(); err != nil {
		return fmt.Errorf("read %s: %w", t.cfg.Table, t.d.dbErr(err))
	}
	return nil
}

// scanBatch is how many rows the reader hands a worker at a time.
const scanBatch = 512

// scanParallel streams every row of the table like scanTx, but converts and hands on rows
// in workers goroutines while the driver reads: fn(w, row) is called from worker w, in no
// particular order, with a row whose Key and Value are valid only during the call. The
// read runs in tx, or, where conn is set (a rawReader dialect's beginReadConn), through
// the dialect's own driver on conn, inside tx.
func (t *Table) scanParallel(ctx context.Context, tx *dbsql.Tx, conn *dbsql.Conn, workers int, fn func(w int, r reconcile.Row) error) error {
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan rowBatch, 2*workers)
	g, gctx := errgroup.WithContext(ctx)
	for w := range workers {
		g.Go(func() error {
			sc := t.newScanner()
			sc.borrow = true
			for b := range batches {
				err := b.each(sc, func(r reconcile.Row) error {
					if t.ordering == merkle.KeyOrder {
						r.Version = 0
					}
					return fn(w, r)
				})
				if err != nil {
					return err
				}
				b.release()
			}
			return nil
		})
	}
	send := func(b rowBatch) bool {
		select {
		case batches <- b:
			return true
		case <-gctx.Done():
			return false
		}
	}
	query := "SELECT " + t.selectList() + " FROM " + t.name
	var readErr error
	if rr, ok := t.d.(rawReader); ok && conn != nil {
		readErr = rr.readRaw(gctx, conn, query, t.allCols(), send)
	} else {
		readErr = readDriver(gctx, tx, query, len(t.allCols()), send)
	}
	close(batches)
	if err := g.Wait(); err != nil {
		return fmt.Errorf("read %s: %w", t.cfg.Table, err)
	}
	if readErr != nil {
		return fmt.Errorf("read %s: %w", t.cfg.Table, t.d.dbErr(readErr))
	}
	if err := parent.Err(); err != nil {
		// The reader stops sending when the context ends, which is no error of its own:
		// the rows read are not the table.
		return fmt.Errorf("read %s: %w", t.cfg.Table, err)
	}
	return nil
}

// rowBatch is rows a reader hands a scan worker, converted with the worker's scanner.
type rowBatch interface {
	each(sc *scanner, fn func(reconcile.Row) error) error
	// release tells the batch its rows are done with (the reader may reuse it).
	release()
}

// driverBatch is rows as database/sql returns them.
type driverBatch [][]any

func (driverBatch) release() {}

func (b driverBatch) each(sc *scanner, fn func(reconcile.Row) error) error {
	for _, vals := range b {
		r, err := sc.convert(vals)
		if err == nil {
			err = fn(r)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// readDriver runs query in q and sends its rows in batches of scanBatch until send
// returns false.
func readDriver(ctx context.Context, q querier, query string, ncols int, send func(rowBatch) bool) error {
	rs, err := q.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer rs.Close()
	batch := make(driverBatch, 0, scanBatch)
	for rs.Next() {
		vals := make([]any, ncols)
		ptrs := make([]any, ncols)
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			return err
		}
		batch = append(batch, vals)
		if len(batch) == scanBatch {
			if !send(batch) {
				return nil
			}
			batch = make(driverBatch, 0, scanBatch)
		}
	}
	if len(batch) > 0 && !send(batch) {
		return nil
	}
	return rs.Err()
}

// Scan calls fn for each row live at now in key order, until fn returns false. It reads
// the table in one transaction and sorts the keys in memory.
func (t *Table) Scan(ctx context.Context, now int64, fn func(reconcile.Row) bool) error {
	tx, _, err := t.d.beginRead(ctx, t.db)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var rows []reconcile.Row
	err = t.scanTx(ctx, tx, func(r reconcile.Row) error {
		if isPoison(r.Value) {
			return unreadableError(t.cfg.Table, r.Value)
		}
		if !r.Expired(now) {
			rows = append(rows, r)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Slice(rows, func(i, j int) bool { return string(rows[i].Key) < string(rows[j].Key) })
	if t.view {
		for i := 1; i < len(rows); i++ {
			if bytes.Equal(rows[i].Key, rows[i-1].Key) {
				return t.errRepeatedKey(rows[i].Key)
			}
		}
	}
	for _, r := range rows {
		if !fn(r) {
			break
		}
	}
	return nil
}

// querier is a *sql.Tx or *sql.DB.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*dbsql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (dbsql.Result, error)
}

// keyBatch is how many keys one lookup query names.
const keyBatch = 256

// lookup reads the rows under keys (all of them, expired included) and returns them by
// key. suffix is appended to the query (FOR UPDATE).
func (t *Table) lookup(ctx context.Context, q querier, keys [][]byte, suffix string) (map[string]reconcile.Row, error) {
	out := make(map[string]reconcile.Row, len(keys))
	sc := t.newScanner()
	for len(keys) > 0 {
		n := min(len(keys), keyBatch)
		var args []any
		var tuples []string
		for _, k := range keys[:n] {
			ds, err := DecodeKey(k, t.keyCols)
			if err != nil {
				continue // no row of this table can have that key
			}
			tuples = append(tuples, t.keyTuple(ds, &args))
		}
		keys = keys[n:]
		if len(tuples) == 0 {
			continue
		}
		query := "SELECT " + t.selectList() + " FROM " + t.name + " WHERE (" + t.keyList() + ") IN (" + strings.Join(tuples, ", ") + ")" + suffix
		rs, err := q.QueryContext(ctx, query, args...)
		if err != nil {
			return nil, t.d.dbErr(err)
		}
		for rs.Next() {
			r, err := sc.row(rs)
			if err != nil {
				rs.Close()
				return nil, err
			}
			if t.ordering == merkle.KeyOrder {
				r.Version = 0
			}
			out[string(r.Key)] = r
		}
		err = rs.Err()
		rs.Close()
		if err != nil {
			return nil, t.d.dbErr(err)
		}
	}
	return out, nil
}

// keyTuple is "(params)" for key datums ds, whose arguments it appends to args.
func (t *Table) keyTuple(ds []Datum, args *[]any) string {
	ps := make([]string, len(ds))
	for i, d := range ds {
		*args = append(*args, t.d.arg(d, &t.keyCols[i]))
		ps[i] = t.d.param(len(*args), &t.keyCols[i])
	}
	return "(" + strings.Join(ps, ", ") + ")"
}

func (t *Table) keyList() string {
	var names []string
	for _, c := range t.keyCols {
		names = append(names, t.d.quote(c.Name))
	}
	return strings.Join(names, ", ")
}

// snapshot is a scan-mode snapshot.
type snapshot struct {
	t   *Table
	now int64
	tx  *dbsql.Tx // nil once released (SQLite without WAL)
	// conn is the connection tx runs on, where the dialect is a rawReader; closed after tx.
	conn *dbsql.Conn
	reconcile.SortedIndex
	info    reconcile.Info
	scanned int64
}

func (s *snapshot) Info() reconcile.Info { return s.info }

// Rows reads the rows under keys in the snapshot's transaction. Where none could be kept
// open (SQLite outside WAL mode) it reads the current rows: one written since the scan
// reads unlike its entry, and a sync skips it as raced (reconcile.Snapshot.Rows).
func (s *snapshot) Rows(ctx context.Context, keys [][]byte) ([]reconcile.Row, error) {
	var q querier = s.tx
	if s.tx == nil {
		q = s.t.db
	}
	return s.t.liveRows(ctx, q, keys, s.now)
}

// liveRows is a snapshot's Rows (reconcile.Snapshot), read in q: the rows under keys
// live at now, in their order, a Row with a nil Key for a key with none; an unreadable
// row is refused (unreadable.go).
func (t *Table) liveRows(ctx context.Context, q querier, keys [][]byte, now int64) ([]reconcile.Row, error) {
	found, err := t.lookup(ctx, q, keys, "")
	if err != nil {
		return nil, fmt.Errorf("read rows of %s: %w", t.cfg.Table, err)
	}
	out := make([]reconcile.Row, len(keys))
	for i, k := range keys {
		r, ok := found[string(k)]
		if !ok || r.Expired(now) {
			continue
		}
		if isPoison(r.Value) {
			return nil, &reconcile.RowRefusedError{Index: i, Err: unreadableError(t.cfg.Table, r.Value)}
		}
		out[i] = r
	}
	return out, nil
}

func (s *snapshot) ReadStats() merkle.ReadStats {
	st := s.Stats()
	st.Entries += s.scanned // scan mode reads every row once
	return st
}

func (s *snapshot) Close() error {
	var err error
	if s.tx != nil {
		err = s.tx.Rollback()
		s.tx = nil
	}
	if s.conn != nil {
		if cerr := s.conn.Close(); err == nil {
			err = cerr
		}
		s.conn = nil
	}
	return err
}

// write is one decoded change: its key columns and, for a put, the other columns' datums
// in select-list order after the key (version, expiry, values).
type write struct {
	key  []Datum
	rest []Datum // nil: delete
	size int     // the row's value bytes (a bound on what a statement carries)
	i    int     // its change's index, in Apply
	raw  []byte  // the key's bytes
}

// decodeKey checks that a key to write fits the table and returns its datums.
func (t *Table) decodeKey(key []byte) ([]Datum, error) {
	kd, err := DecodeKey(key, t.keyCols)
	if err != nil {
		return nil, fmt.Errorf("key %s does not fit table %s: %v", reconcile.KeyText(key, t), t.cfg.Table, err)
	}
	for i, d := range kd {
		if err := t.checkTime(key, &t.keyCols[i], d); err != nil {
			return nil, err
		}
		if err := t.checkHoldable(key, &t.keyCols[i], d); err != nil {
			return nil, err
		}
	}
	return kd, nil
}

// decodeRow checks that r fits the table and returns the datums to write.
func (t *Table) decodeRow(r *reconcile.Row) ([]Datum, error) {
	if r.Tombstone {
		return nil, errors.New("tombstones are not stored in SQL tables")
	}
	if isPoison(r.Value) { // never sent; refused rather than written if it were
		return nil, fmt.Errorf("row %s is a row its source could not read, not a row to write", reconcile.KeyText(r.Key, t))
	}
	vals, err := DecodeValue(r.Value, t.valCols)
	if err != nil {
		return nil, fmt.Errorf("row %s does not fit table %s: %v", reconcile.KeyText(r.Key, t), t.cfg.Table, err)
	}
	for i, v := range vals {
		if err := t.checkTime(r.Key, &t.valCols[i], v); err != nil {
			return nil, err
		}
		if err := t.checkHoldable(r.Key, &t.valCols[i], v); err != nil {
			return nil, err
		}
	}
	if t.cfg.Dialect == "sqlite" {
		for i, v := range vals {
			if v.Class == Float && math.IsNaN(v.Float) {
				// SQLite would store NULL, and the row would differ from its source forever.
				return nil, fmt.Errorf("row %s: column %s is NaN, which SQLite cannot store (it keeps NULL instead): change the source row, or leave the column out with columns= on both sides", reconcile.KeyText(r.Key, t), t.valCols[i].Name)
			}
		}
	}
	var rest []Datum
	if t.verCol != nil {
		if t.verCol.Class == Int && r.Version > math.MaxInt64 {
			return nil, fmt.Errorf("row %s: version %d does not fit the signed 64-bit column %s", reconcile.KeyText(r.Key, t), r.Version, t.verCol.Name)
		}
		if t.verCol.Class == Timestamp && r.Version > math.MaxInt64 {
			return nil, fmt.Errorf("row %s: version %d is no timestamp in nanoseconds", reconcile.KeyText(r.Key, t), r.Version)
		}
		rest = append(rest, Datum{Class: t.verCol.Class, Int: int64(r.Version)})
	}
	if t.expCol != nil {
		if r.ExpiresAt == 0 {
			if !t.expCol.Nullable {
				return nil, fmt.Errorf("row %s never expires but expiry column %s is NOT NULL", reconcile.KeyText(r.Key, t), t.expCol.Name)
			}
			rest = append(rest, Datum{})
		} else {
			rest = append(rest, Datum{Class: t.expCol.Class, Int: r.ExpiresAt})
		}
	} else if r.ExpiresAt != 0 {
		return nil, fmt.Errorf("row %s expires but table %s has no expiry column (name one with expires=COLUMN)", reconcile.KeyText(r.Key, t), t.cfg.Table)
	}
	return append(rest, vals...), nil
}

// checkHoldable refuses a value the table's engine cannot store, naming the row (key) and
// column c, before a write sends it: a NUL character in PostgreSQL text (MariaDB and
// SQLite text hold it; PostgreSQL's error, "invalid byte sequence for encoding "UTF8":
// 0x00", named neither row nor column) and a float NaN or infinity in MySQL and MariaDB
// (whose error was "Out of range value for column").
func (t *Table) checkHoldable(key []byte, c *Column, d Datum) error {
	switch {
	case t.cfg.Dialect == "postgres" && d.Class == Text && strings.IndexByte(d.Str, 0) >= 0:
		return fmt.Errorf("row %s: column %s holds a NUL character (U+0000), which PostgreSQL text cannot store: change the source row, or leave the column out with columns= on both sides",
			reconcile.KeyText(key, t), c.Name)
	case t.cfg.Dialect == "mysql" && d.Class == Float && (math.IsNaN(d.Float) || math.IsInf(d.Float, 0)):
		return fmt.Errorf("row %s: column %s is %s, which MySQL and MariaDB cannot store (their floats have no NaN or infinities): change the source row, or leave the column out with columns= on both sides",
			reconcile.KeyText(key, t), c.Name, floatName(d.Float))
	case t.cfg.Dialect == "postgres" && d.Class == JSON && strings.EqualFold(c.Type, "jsonb") && jsonHasNUL(d.Str):
		return fmt.Errorf("row %s: column %s holds JSON with a NUL character (\\u0000) in a string, which PostgreSQL jsonb cannot store: change the source row, make the column json (which keeps it), or leave the column out with columns= on both sides",
			reconcile.KeyText(key, t), c.Name)
	case d.Class == Decimal:
		if why, widen := decimalMisfit(c, t.cfg.Dialect, d.Str); why != "" {
			return fmt.Errorf("row %s: column %s (%s) cannot hold %s: %s; %schange the source row, or leave the column out with columns= on both sides",
				reconcile.KeyText(key, t), c.Name, c.Type, clipDecimal(d.Str), why, widen)
		}
	}
	return nil
}

// jsonHasNUL reports whether JSON text holds the escape \u0000 (a NUL character in a
// string), not counting an escaped backslash followed by "u0000".
func jsonHasNUL(s string) bool {
	for i := strings.IndexByte(s, '\\'); i >= 0 && i+1 < len(s); {
		if s[i+1] == 'u' && strings.HasPrefix(s[i+2:], "0000") {
			return true
		}
		next := strings.IndexByte(s[i+2:], '\\')
		if next < 0 {
			return false
		}
		i += 2 + next
	}
	return false
}

// clipDecimal shortens a long decimal for a message, keeping its length.
func clipDecimal(v string) string {
	if len(v) <= 40 {
		return v
	}
	return fmt.Sprintf("%s… (%d characters)", v[:32], len(v))
}

// setDecimalBounds sets the precision, scale and unsigned of a Decimal column from its
// type: numeric(p,s) or decimal(p,s), numeric(p) and decimal(p) of scale 0, MySQL's
// decimal alone of precision 10 (its default). An unconstrained PostgreSQL numeric, a
// negative scale (PostgreSQL 15) and SQLite (which keeps decimals as text) get no bound.
func setDecimalBounds(c *Column, dialect string) {
	if dialect == "sqlite" {
		return
	}
	typ := strings.ToLower(c.Type)
	c.unsigned = dialect == "mysql" && strings.Contains(typ, "unsigned")
	args := strings.Trim(decimalArgs(typ), "()")
	if args == "" {
		if dialect == "mysql" {
			c.precision = 10
		}
		return
	}
	ps, ss, _ := strings.Cut(args, ",")
	p, err := strconv.Atoi(ps)
	if err != nil || p <= 0 {
		return
	}
	sc := 0
	if ss != "" {
		if sc, err = strconv.Atoi(ss); err != nil || sc < 0 || sc > p {
			return
		}
	}
	c.precision, c.scale = p, sc
}

// decimalMisfit says why the canonical decimal v does not fit column c of an engine
// (why empty: it fits), and how the column could be widened to hold it (a clause ending
// in "; ", or empty). A value with more fraction digits than the scale would be rounded
// by the engine, silently (PostgreSQL) or with a note (MySQL), and the copy would then
// differ from its source at every sync; too many integer digits are refused.
func decimalMisfit(c *Column, dialect, v string) (why, widen string) {
	switch v {
	case "NaN", "Infinity", "-Infinity":
		switch {
		case dialect == "mysql":
			return "MySQL and MariaDB decimals have no NaN or infinities", ""
		case v != "NaN" && c.precision > 0:
			return "PostgreSQL's numeric(p,s) holds no infinities", "widen the column to an unconstrained numeric, "
		}
		return "", ""
	}
	digits := v
	if strings.HasPrefix(digits, "-") {
		if c.unsigned {
			return "the column is unsigned", ""
		}
		digits = digits[1:]
	}
	if c.precision == 0 {
		return "", ""
	}
	intPart, frac, _ := strings.Cut(digits, ".")
	intDigits := len(intPart)
	if intPart == "0" {
		intDigits = 0
	}
	if len(frac) <= c.scale && intDigits <= c.precision-c.scale {
		return "", ""
	}
	if len(frac) > c.scale {
		why = fmt.Sprintf("it has %d digits after the point and the column keeps %d, so %s would round it and the copy would never equal its source", len(frac), c.scale, engineNames[dialect])
	} else {
		why = fmt.Sprintf("it has %d digits before the point and the column holds at most %d", intDigits, c.precision-c.scale)
	}
	s := max(c.scale, len(frac))
	p := max(c.precision-c.scale, intDigits) + s
	switch {
	case dialect == "postgres" && p <= 1000:
		widen = fmt.Sprintf("widen the column (ALTER TABLE … ALTER COLUMN %s TYPE numeric(%d,%d), or numeric for any), ", c.Name, p, s)
	case dialect == "postgres":
		widen = fmt.Sprintf("widen the column (ALTER TABLE … ALTER COLUMN %s TYPE numeric), ", c.Name)
	case p <= 65 && s <= 30 && c.unsigned:
		widen = fmt.Sprintf("widen the column (ALTER TABLE … MODIFY %s decimal(%d,%d) unsigned), ", c.Name, p, s)
	case p <= 65 && s <= 30:
		widen = fmt.Sprintf("widen the column (ALTER TABLE … MODIFY %s decimal(%d,%d)), ", c.Name, p, s)
	default:
		widen = "keep this column in PostgreSQL (MySQL's widest decimal is decimal(65,30)), "
	}
	return why, widen
}

// floatName names a NaN or an infinity as PostgreSQL writes it.
func floatName(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case f > 0:
		return "Infinity"
	}
	return "-Infinity"
}

// checkTime refuses a time the table's engine has no value for, naming the row (key) and
// column c, before a write sends it: the Time class spans MySQL's TIME, a duration of
// -838:59:59 to 838:59:59, while PostgreSQL's time is a time of day, 00:00:00 to
// 24:00:00, and its interval, which would hold more, is a native type that pairs with no
// MySQL column (docs/canonical.md). The engine's own error named neither. SQLite keeps
// any time as text.
func (t *Table) checkTime(key []byte, c *Column, d Datum) error {
	if d.Class != Time {
		return nil
	}
	switch t.cfg.Dialect {
	case "postgres":
		if d.Int < 0 || d.Int > int64(24*time.Hour) {
			return fmt.Errorf("row %s: column %s holds the time %s, which PostgreSQL's time (00:00:00 to 24:00:00, a time of day) cannot hold: a MySQL TIME may be negative or longer than a day; change the source row, keep this table in MySQL, MariaDB or SQLite, or leave the column out with columns= on both sides (an interval column would not pair with a time)",
				reconcile.KeyText(key, t), c.Name, formatTimeOfDay(d.Int))
		}
	case "mysql":
		if limit := int64(839 * time.Hour); d.Int <= -limit || d.Int >= limit {
			return fmt.Errorf("row %s: column %s holds the time %s, which MySQL's TIME (-838:59:59 to 838:59:59) cannot hold: change the source row, or leave the column out with columns= on both sides",
				reconcile.KeyText(key, t), c.Name, formatTimeOfDay(d.Int))
		}
	}
	return nil
}

// statements holds the write statements of one transaction.
type statements struct {
	update, insert string
	// insertNames and insertCols are the columns an INSERT writes (all but Generated), in
	// insertArgs' order, quoted and as columns.
	insertNames []string
	insertCols  []*Column
	// keyNames are the key columns, quoted.
	keyNames []string
}

// statements builds the write statements. Columns the engine computes (Generated) are
// never written: INSERT leaves them out, UPDATE does not set them, and only the key
// columns (all of them) pick the row to update or delete.
func (t *Table) statements() statements {
	cols := t.allCols()
	nk := len(t.keyCols)
	var st statements
	var names, params []string
	for _, c := range cols {
		if !c.Generated {
			names = append(names, t.d.quote(c.Name))
			params = append(params, t.d.param(len(params)+1, c))
			st.insertCols = append(st.insertCols, c)
		}
	}
	st.insertNames = names
	for _, c := range cols[:nk] {
		st.keyNames = append(st.keyNames, t.d.quote(c.Name))
	}
	st.insert = t.d.insertNew(t.name, names, params)
	// UPDATE binds the written non-key columns first, then the key.
	var sets, where []string
	for _, c := range cols[nk:] {
		if !c.Generated {
			sets = append(sets, t.d.quote(c.Name)+" = "+t.d.param(len(sets)+1, c))
		}
	}
	for i, c := range cols[:nk] {
		where = append(where, t.d.quote(c.Name)+" = "+t.d.param(len(sets)+i+1, c))
	}
	if len(sets) == 0 { // a table of key columns only
		sets = []string{t.d.quote(cols[0].Name) + " = " + t.d.quote(cols[0].Name)}
	}
	st.update = "UPDATE " + t.name + " SET " + strings.Join(sets, ", ") + " WHERE " + strings.Join(where, " AND ")
	return st
}

// bind appends the arguments of datums ds for columns cols, leaving out the columns the
// engine computes when written is set.
func (t *Table) bind(args []any, ds []Datum, cols []*Column, written bool) []any {
	for i, d := range ds {
		if !written || !cols[i].Generated {
			args = append(args, t.d.arg(d, cols[i]))
		}
	}
	return args
}

// insertArgs and updateArgs bind the parameters of statements' insert and update for a
// row's key and its other columns (rest, as decodeRow makes them); insertArgs' are also
// a row's in a multi-row statement (insertStatement).
func (t *Table) insertArgs(key, rest []Datum) []any {
	cols := t.allCols()
	return t.bind(t.bind(nil, key, cols, true), rest, cols[len(key):], true)
}

func (t *Table) updateArgs(key, rest []Datum) []any {
	cols := t.allCols()
	return t.bind(t.bind(nil, rest, cols[len(key):], true), key, cols, false)
}

// sequenceHigh holds, by index into allCols, the largest value a transaction wrote to
// each column that takes its default from a sequence. Before the commit the sequences
// move past them (advanceSequences), so that a replica that also takes inserts of its own
// (a promoted replica, say) does not hand out ids the source has already used.
type sequenceHigh map[int]int64

// noteSequences records a written row's values (key and rest, as insertArgs takes them).
func (t *Table) noteSequences(h sequenceHigh, key, rest []Datum) {
	for _, i := range t.seqCols {
		var d Datum
		if i < len(key) {
			d = key[i]
		} else {
			d = rest[i-len(key)]
		}
		if v, ok := h[i]; d.Class == Int && (!ok || d.Int > v) {
			h[i] = d.Int
		}
	}
}

// advanceSequences moves each sequence of h past its column's largest written value
// (PostgreSQL only: no other engine sets Column.Sequence; MySQL and SQLite move their
// AUTO_INCREMENT counters themselves).
func (t *Table) advanceSequences(ctx context.Context, tx *dbsql.Tx, h sequenceHigh) error {
	cols := t.allCols()
	for i, v := range h {
		if _, err := tx.ExecContext(ctx, pgAdvanceSequence, cols[i].Sequence, v); err != nil {
			return fmt.Errorf("move sequence %s of %s past %d: %w", cols[i].Sequence, t.cfg.Table, v, t.d.dbErr(err))
		}
	}
	return nil
}

// Apply writes changes in one transaction, each conditional on the row the session saw.
func (t *Table) Apply(ctx context.Context, now int64, changes []reconcile.Change) ([]reconcile.Outcome, error) {
	if t.ReadOnly {
		return nil, reconcile.ErrReadOnly
	}
	ws := make([]write, len(changes))
	keys := make([][]byte, len(changes))
	for i, c := range changes {
		// A key or row the table cannot take is refused for itself: the rest of the
		// batch may still be written.
		kd, err := t.decodeKey(c.Key)
		if err != nil {
			return nil, &reconcile.RowRefusedError{Index: i, Err: err}
		}
		ws[i].key, ws[i].i, ws[i].raw, keys[i] = kd, i, c.Key, c.Key
		if c.Put != nil {
			ws[i].size = len(c.Put.Value)
			if t.maxPacket > 0 && ws[i].size > t.maxPacket {
				return nil, &reconcile.RowRefusedError{Index: i, Err: fmt.Errorf("row %s is %d bytes: %s", reconcile.KeyText(c.Key, t), ws[i].size, maxPacketHint)}
			}
			if ws[i].rest, err = t.decodeRow(c.Put); err != nil {
				return nil, &reconcile.RowRefusedError{Index: i, Err: err}
			}
		}
	}
	tx, err := t.d.beginWrite(ctx, t.db)
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", t.cfg.Table, err)
	}
	defer tx.Rollback()
	cur, err := t.lookup(ctx, tx, keys, t.d.forUpdate())
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", t.cfg.Table, err)
	}
	st := t.statements()
	out := make([]reconcile.Outcome, len(changes))
	high := sequenceHigh{}
	// Deletes, updates and inserts are gathered and sent many rows a statement (deleteKeys,
	// updateAll, insertAll): a new replica's rows are nearly all inserts, and one
	// statement a row cost a round trip each.
	var deletes, inserts []int
	var updates []write
	for i, c := range changes {
		row, exists := cur[string(c.Key)]
		var have *merkle.Entry
		if exists {
			if e := row.Entry(); !e.Expired(now) {
				have = &e
			}
		}
		if c.InPlace(have, t.ordering) {
			continue // Applied: the row is already what the change would write
		}
		if !merkle.SameEntry(have, c.Expect) {
			out[i] = reconcile.Raced
			continue
		}
		w := ws[i]
		switch {
		case c.Put == nil:
			if exists {
				deletes = append(deletes, i)
			}
		case exists:
			updates = append(updates, w)
			t.noteSequences(high, w.key, w.rest)
		default:
			inserts = append(inserts, i)
		}
	}
	dels := make([]write, len(deletes))
	for n, i := range deletes {
		dels[n] = ws[i]
	}
	if err := t.deleteKeys(ctx, tx, dels); err != nil {
		return nil, err
	}
	if err := t.updateAll(ctx, tx, st, updates); err != nil {
		return nil, err
	}
	ins := make([]write, len(inserts))
	for n, i := range inserts {
		ins[n] = ws[i]
	}
	err = t.insertAll(ctx, tx, st, ins, func(part []write) error {
		for _, w := range part {
			if err := t.insertRow(ctx, tx, st, w, &out[w.i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, w := range ins {
		if out[w.i] == reconcile.Applied {
			t.noteSequences(high, w.key, w.rest)
		}
	}
	if err := t.advanceSequences(ctx, tx, high); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("commit to %s: %w", t.cfg.Table, t.d.dbErr(err))
	}
	return out, nil
}

// maxRowsPerStatement and maxBytesPerStatement bound the rows one multi-row INSERT or
// DELETE carries: under every engine's limit on a statement's parameters (SQLite's is
// 32766) and well under MySQL's max_allowed_packet.
const (
	maxRowsPerStatement   = 500
	maxParamsPerStatement = 30000
	maxBytesPerStatement  = 4 << 20
)

// deleteKeys deletes the rows under the keys of ws, many a statement.
func (t *Table) deleteKeys(ctx context.Context, tx *dbsql.Tx, ws []write) error {
	per := max(1, min(maxRowsPerStatement, maxParamsPerStatement/len(t.keyCols)))
	for len(ws) > 0 {
		chunk := ws[:min(len(ws), per)]
		ws = ws[len(chunk):]
		var args []any
		tuples := make([]string, len(chunk))
		for n, w := range chunk {
			tuples[n] = t.keyTuple(w.key, &args)
		}
		query := "DELETE FROM " + t.name + " WHERE (" + t.keyList() + ") IN (" + strings.Join(tuples, ", ") + ")"
		if _, err := tx.ExecContext(ctx, query, args...); err != nil {
			what := fmt.Sprintf("%d rows", len(chunk))
			if len(chunk) == 1 {
				what = reconcile.KeyText(chunk[0].raw, t)
			}
			return fmt.Errorf("delete %s from %s: %w", what, t.cfg.Table, t.d.dbErr(err))
		}
	}
	return nil
}

// updateAll rewrites the rows ws, which the transaction's lookup found and locked: many a
// statement where updateMany has a statement for the table, else one UPDATE a row.
func (t *Table) updateAll(ctx context.Context, tx *dbsql.Tx, st statements, ws []write) error {
	one := func(part []write) error {
		for _, w := range part {
			if _, err := tx.ExecContext(ctx, st.update, t.updateArgs(w.key, w.rest)...); err != nil {
				return fmt.Errorf("update %s in %s: %w", reconcile.KeyText(w.raw, t), t.cfg.Table, t.d.dbErr(err))
			}
		}
		return nil
	}
	if len(ws) < 2 {
		return one(ws)
	}
	stmt, wrote := t.updateMany(ctx, tx, st)
	if stmt == nil {
		return one(ws)
	}
	return t.writeAll(ctx, tx, st, ws, stmt, wrote, one)
}

// updateMany returns the statement that rewrites the existing rows whose "(params)", in
// insertArgs' order, are rows, and what it reports affected when it wrote them all. In
// PostgreSQL and SQLite it is UPDATE … FROM (VALUES …) AS v, which fires the table's
// update triggers as one UPDATE a row does. MySQL has no such statement; there it is
// INSERT … ON DUPLICATE KEY UPDATE, which counts 2 a changed row and 0 one it leaves as
// it was (the rows exist, locked by the lookup, so it inserts none), where the key is the
// table's only unique index (else a row colliding on another would be the one updated)
// and no BEFORE INSERT trigger would run for rows that are not inserted (mysqlUpserts);
// elsewhere it is mysqlUpdateJoin's UPDATE, a third slower in BenchmarkApplyNewRows.
// Nil where the table has nothing to set.
func (t *Table) updateMany(ctx context.Context, tx *dbsql.Tx, st statements) (func(rows []string) string, affected) {
	nk := len(st.keyNames)
	if len(st.insertNames) <= nk || !slices.Equal(st.insertNames[:nk], st.keyNames) {
		return nil, nil
	}
	cols := strings.Join(st.insertNames, ", ")
	if !t.d.updateFromValues() {
		if !t.mysqlUpserts(ctx, tx) {
			return t.mysqlUpdateJoin(st)
		}
		var sets []string
		for _, name := range st.insertNames[nk:] {
			sets = append(sets, name+" = VALUES("+name+")")
		}
		onDup := " ON DUPLICATE KEY UPDATE " + strings.Join(sets, ", ")
		return func(rows []string) string {
				return "INSERT INTO " + t.name + " (" + cols + ") VALUES " + strings.Join(rows, ", ") + onDup
			}, func(n int64, rows int) bool {
				return n >= 0 && n <= 2*int64(rows) && n%2 == 0
			}
	}
	var sets, where []string
	for j, name := range st.insertNames {
		v := "v.column" + strconv.Itoa(j+1)
		if j < nk {
			where = append(where, t.name+"."+name+" = "+v)
		} else {
			sets = append(sets, name+" = "+v)
		}
	}
	set, cond := strings.Join(sets, ", "), strings.Join(where, " AND ")
	return func(rows []string) string {
		return "UPDATE " + t.name + " SET " + set + " FROM (VALUES " + strings.Join(rows, ", ") + ") AS v WHERE " + cond
	}, eachOnce
}

// mysqlUpdateJoin is updateMany's statement for a MySQL table that INSERT … ON DUPLICATE
// KEY UPDATE may not update: UPDATE t JOIN (SELECT … UNION ALL SELECT …) AS v, which
// fires update triggers only, as one UPDATE a row does, and counts the rows it changes
// (the rows exist, locked by the lookup, so any count up to theirs is all of them).
func (t *Table) mysqlUpdateJoin(st statements) (func(rows []string) string, affected) {
	// A MySQL param is "?" (mysql.param), so a row's "(?, ?)" is a SELECT list as it
	// stands; the first row names the columns.
	nk := len(st.keyNames)
	var first, on, sets []string
	for j, name := range st.insertNames {
		v := "rc_v.rc_c" + strconv.Itoa(j+1)
		first = append(first, "? AS rc_c"+strconv.Itoa(j+1))
		if j < nk {
			on = append(on, "rc_t."+name+" = "+v)
		} else {
			sets = append(sets, "rc_t."+name+" = "+v)
		}
	}
	head := "UPDATE " + t.name + " AS rc_t JOIN (SELECT " + strings.Join(first, ", ")
	tail := ") AS rc_v ON " + strings.Join(on, " AND ") + " SET " + strings.Join(sets, ", ")
	return func(rows []string) string {
			var b strings.Builder
			b.WriteString(head)
			for _, r := range rows[1:] {
				b.WriteString(" UNION ALL SELECT ")
				b.WriteString(r[1 : len(r)-1])
			}
			b.WriteString(tail)
			return b.String()
		}, func(n int64, rows int) bool {
			return n >= 0 && n <= int64(rows)
		}
}

// mysqlUpserts reports whether INSERT … ON DUPLICATE KEY UPDATE may update rows of this
// MySQL table that exist: its key is its only unique index and it has no BEFORE INSERT
// trigger. Asked once a Table.
func (t *Table) mysqlUpserts(ctx context.Context, tx *dbsql.Tx) bool {
	t.upsertsOnce.Do(func() {
		if !t.soleUnique {
			return
		}
		schema, name := schemaOf(t.cfg.Table)
		var n int
		err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = COALESCE(NULLIF(?, ''), DATABASE())
			AND EVENT_OBJECT_TABLE = ? AND EVENT_MANIPULATION = 'INSERT' AND ACTION_TIMING = 'BEFORE'`, schema, name).Scan(&n)
		t.upserts = err == nil && n == 0
	})
	return t.upserts
}

// insertAll inserts ws, many rows a statement, and calls fallback with each statement's
// rows when it did not insert every one of them (a row that holds one of the keys, one the
// collation calls equal, a value the engine refuses): the statement is rolled back to a
// savepoint first, so fallback, going one row at a time, tells them apart.
func (t *Table) insertAll(ctx context.Context, tx *dbsql.Tx, st statements, ws []write, fallback func(part []write) error) error {
	return t.writeAll(ctx, tx, st, ws, func(rows []string) string { return t.d.insertMany(t.name, st.insertNames, rows) }, eachOnce, fallback)
}

// affected says whether a statement of rows rows that reports n rows affected wrote them
// all.
type affected func(n int64, rows int) bool

// eachOnce is affected for a statement that counts each row it writes once.
func eachOnce(n int64, rows int) bool { return n == int64(rows) }

// writeAll is insertAll with the statement that stmt makes of its rows' "(params)", and
// wrote to say from its count of rows affected whether it wrote them all.
func (t *Table) writeAll(ctx context.Context, tx *dbsql.Tx, st statements, ws []write, stmt func(rows []string) string, wrote affected, fallback func(part []write) error) error {
	per := max(1, min(maxRowsPerStatement, maxParamsPerStatement/max(1, len(st.insertCols))))
	for len(ws) > 0 {
		n, size := 0, 0
		for n < len(ws) && n < per && (n == 0 || size+ws[n].size <= t.stmtBytes) {
			size += ws[n].size
			n++
		}
		part := ws[:n]
		ws = ws[n:]
		if n > 1 {
			ok, err := t.insertStatement(ctx, tx, st, part, stmt, wrote)
			if err != nil {
				return err
			}
			if ok {
				continue
			}
		}
		if err := fallback(part); err != nil {
			return err
		}
	}
	return nil
}

// insertStatement inserts ws in one statement under a savepoint, and reports whether it
// inserted every one; if not, nothing of it stays. Its error is the savepoint's only.
func (t *Table) insertStatement(ctx context.Context, tx *dbsql.Tx, st statements, ws []write, stmt func(rows []string) string, wrote affected) (bool, error) {
	var args []any
	rows := make([]string, len(ws))
	for n, w := range ws {
		rowArgs := t.insertArgs(w.key, w.rest)
		ps := make([]string, len(rowArgs))
		for k := range rowArgs {
			ps[k] = t.d.param(len(args)+k+1, st.insertCols[k])
		}
		args = append(args, rowArgs...)
		rows[n] = "(" + strings.Join(ps, ", ") + ")"
	}
	if _, err := tx.ExecContext(ctx, "SAVEPOINT rc_rows"); err != nil {
		return false, fmt.Errorf("write %s: savepoint: %w", t.cfg.Table, t.d.dbErr(err))
	}
	res, err := tx.ExecContext(ctx, stmt(rows), args...)
	if err == nil {
		if n, aerr := res.RowsAffected(); aerr == nil && wrote(n, len(ws)) {
			if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT rc_rows"); err != nil {
				return false, fmt.Errorf("write %s: release savepoint: %w", t.cfg.Table, t.d.dbErr(err))
			}
			return true, nil
		}
	}
	if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT rc_rows"); err != nil {
		return false, fmt.Errorf("write %s: rollback to savepoint: %w", t.cfg.Table, t.d.dbErr(err))
	}
	return false, nil
}

// binaryCollationAdvice says, in the engine's terms, how to make a key column compare
// bytes, as keys do here (MySQL's advice, utf8mb4_bin, was given for SQLite's NOCASE too).
func (t *Table) binaryCollationAdvice() string {
	switch t.cfg.Dialect {
	case "sqlite":
		return "declare the key column without COLLATE NOCASE or RTRIM (SQLite's default collation, BINARY, compares bytes)"
	case "postgres":
		return `give the key column a deterministic collation (COLLATE "C"; a nondeterministic one calls such keys equal)`
	}
	return "give the key column a binary collation (utf8mb4_bin; utf8mb4_nopad_bin if keys differ in trailing spaces)"
}

// insertRow inserts one row whose key the transaction's lookup did not find; a row that
// holds the key all the same makes the change Raced, or its error when the collation
// calls the two keys equal.
func (t *Table) insertRow(ctx context.Context, tx *dbsql.Tx, st statements, w write, out *reconcile.Outcome) error {
	res, err := tx.ExecContext(ctx, st.insert, t.insertArgs(w.key, w.rest)...)
	if err != nil {
		return fmt.Errorf("insert %s into %s: %w", reconcile.KeyText(w.raw, t), t.cfg.Table, t.d.dbErr(err))
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		// A row the lookup did not return holds the key: one inserted since (raced: the
		// next run settles it), or one the collation calls equal ('a' and 'A'), which no
		// run settles: that is the row's error, so it ends quarantined with a message that
		// says what to change.
		if other, err := t.collidingKey(ctx, tx, w.raw); err != nil {
			return err
		} else if other != nil {
			return fmt.Errorf("insert %s into %s: the key column's collation calls it equal to the target's row %s, so the target cannot hold both: %s, or leave one of the rows out", reconcile.KeyText(w.raw, t), t.cfg.Table, reconcile.KeyText(other, t), t.binaryCollationAdvice())
		}
		*out = reconcile.Raced
	}
	return nil
}

// collidingKey returns the key of a row that the table's collation calls equal to key
// but whose bytes differ, nil when the row holding key (if any) is key itself.
func (t *Table) collidingKey(ctx context.Context, q querier, key []byte) ([]byte, error) {
	rows, err := t.lookup(ctx, q, [][]byte{key}, "")
	if err != nil {
		return nil, err
	}
	for k := range rows {
		if k != string(key) {
			return []byte(k), nil
		}
	}
	return nil, nil
}

// Writer upserts and deletes rows unconditionally inside one transaction (load).
// It holds up to maxRowsPerStatement puts and as many deletes, and writes them many rows
// a statement (flush): the puts as one upsert (PostgreSQL, SQLite) or INSERT (MySQL, whose
// ON DUPLICATE KEY UPDATE would also take a row that collides on another unique key),
// and, where that statement does not write every row, one upsert at a time; a put or
// delete of a key it holds flushes first, so writes land in call order.
type Writer struct {
	t   *Table
	ctx context.Context
	tx  *dbsql.Tx
	st  statements
	// high is what advanceSequences moves past at the commit.
	high sequenceHigh

	puts, dels []write
	held       map[string]bool // the keys of puts and dels
	size       int             // the puts' value bytes
}

// Write runs fn with a Writer and commits what it wrote in one transaction: all of it, or
// nothing when fn or the commit fails.
func (t *Table) Write(ctx context.Context, fn func(*Writer) error) error {
	if t.ReadOnly {
		return reconcile.ErrReadOnly
	}
	tx, err := t.d.beginWrite(ctx, t.db)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	w := &Writer{t: t, ctx: ctx, tx: tx, st: t.statements(), high: sequenceHigh{}, held: map[string]bool{}}
	if err := fn(w); err != nil {
		return err
	}
	if err := w.flush(); err != nil {
		return err
	}
	if err := t.advanceSequences(ctx, tx, w.high); err != nil {
		return fmt.Errorf("%w (nothing was written)", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit to %s: %w (nothing was written)", t.cfg.Table, t.d.dbErr(err))
	}
	return nil
}

// Put upserts a row given as canonical key and value bytes.
func (w *Writer) Put(key, value []byte, version uint64, expiresAt int64) error {
	t := w.t
	kd, err := t.decodeKey(key)
	if err != nil {
		return err
	}
	rest, err := t.decodeRow(&reconcile.Row{Key: key, Value: value, Version: version, ExpiresAt: expiresAt})
	if err != nil {
		return err
	}
	t.noteSequences(w.high, kd, rest)
	return w.hold(&w.puts, write{key: kd, rest: rest, size: len(value), raw: key})
}

// Delete deletes the row under a canonical key, if there is one.
func (w *Writer) Delete(key []byte) error {
	t := w.t
	kd, err := t.decodeKey(key)
	if err != nil {
		return err
	}
	return w.hold(&w.dels, write{key: kd, raw: key})
}

// hold adds a write to list, flushing first when a held write has its key, and after when
// the list is full.
func (w *Writer) hold(list *[]write, wr write) error {
	if w.held[string(wr.raw)] {
		if err := w.flush(); err != nil {
			return err
		}
	}
	w.held[string(wr.raw)] = true
	*list = append(*list, wr)
	w.size += wr.size
	if len(*list) >= maxRowsPerStatement || w.size >= w.t.stmtBytes {
		return w.flush()
	}
	return nil
}

// flush writes the held deletes, then the held puts (their keys differ): those whose key
// a row holds as updates, the others as inserts, each many rows a statement.
func (w *Writer) flush() error {
	t := w.t
	if err := t.deleteKeys(w.ctx, w.tx, w.dels); err != nil {
		return err
	}
	keys := make([][]byte, len(w.puts))
	for i, p := range w.puts {
		keys[i] = p.raw
	}
	cur, err := t.lookup(w.ctx, w.tx, keys, t.d.forUpdate())
	if err != nil {
		return fmt.Errorf("write %s: %w", t.cfg.Table, err)
	}
	var updates, inserts []write
	for _, p := range w.puts {
		if _, ok := cur[string(p.raw)]; ok {
			updates = append(updates, p)
		} else {
			inserts = append(inserts, p)
		}
	}
	err = t.updateAll(w.ctx, w.tx, w.st, updates)
	if err == nil {
		err = t.insertAll(w.ctx, w.tx, w.st, inserts, w.upsertEach)
	}
	if err != nil {
		return err
	}
	w.puts, w.dels, w.size = w.puts[:0], w.dels[:0], 0
	clear(w.held)
	return nil
}

// upsertEach upserts ps one at a time.
func (w *Writer) upsertEach(ps []write) error {
	for _, p := range ps {
		if err := w.upsert(p); err != nil {
			return err
		}
	}
	return nil
}

// upsert writes one row: an UPDATE, then an INSERT when it updated nothing.
func (w *Writer) upsert(p write) error {
	t := w.t
	res, err := w.tx.ExecContext(w.ctx, w.st.update, t.updateArgs(p.key, p.rest)...)
	if err != nil {
		return fmt.Errorf("update %s: %w", reconcile.KeyText(p.raw, t), t.d.dbErr(err))
	}
	if n, err := res.RowsAffected(); err == nil && n > 0 {
		return nil
	}
	// MySQL counts an UPDATE that changes nothing as 0 rows: the insert then finds the
	// row and does nothing, which is the same end state.
	if _, err := w.tx.ExecContext(w.ctx, w.st.insert, t.insertArgs(p.key, p.rest)...); err != nil {
		return fmt.Errorf("insert %s: %w", reconcile.KeyText(p.raw, t), t.d.dbErr(err))
	}
	return nil
}

// errRepeatedKey is the error for a view whose key= names columns that do not identify
// its rows: two rows hold key.
func (t *Table) errRepeatedKey(key []byte) error {
	return fmt.Errorf("view %s: key %s is held by more than one row: name columns that identify its rows with key=", t.cfg.Table, reconcile.KeyText(key, t))
}

// isView reports whether table is a view or a materialized view, which have no
// constraints to prove a key unique.
func isView(ctx context.Context, d dialect, db *dbsql.DB, table string) (bool, error) {
	schema, name, _ := splitTable(table)
	var q string
	var args []any
	switch p := d.(type) {
	case postgres:
		q, args = "SELECT relkind IN ('v', 'm') FROM pg_class WHERE oid = to_regclass($1)", []any{p.regclass(table)}
	case mysql:
		q, args = "SELECT TABLE_TYPE = 'VIEW' FROM information_schema.TABLES WHERE TABLE_SCHEMA = COALESCE(NULLIF(?, ''), DATABASE()) AND TABLE_NAME = ?", []any{schema, name}
	default:
		q, args = "SELECT type = 'view' FROM sqlite_master WHERE name = ?", []any{name}
	}
	var view bool
	err := db.QueryRowContext(ctx, q, args...).Scan(&view)
	if errors.Is(err, dbsql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up %s: %w", table, d.dbErr(err))
	}
	return view, nil
}
