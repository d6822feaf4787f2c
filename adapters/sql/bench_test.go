package sql

// Benchmarks of scan-mode sessions on PostgreSQL (issue 3, performance). They need a
// server and take minutes, so they run only with RECONCILE_BENCH_SQL=1 and
// RECONCILE_TEST_PG_DSN set:
//
//	RECONCILE_BENCH_SQL=1 RECONCILE_TEST_PG_DSN=postgres://postgres@127.0.0.1:5432/test \
//	  go test ./adapters/sql -run '^$' -bench 'Scan|Diff' -benchtime 3x
//
// RECONCILE_BENCH_ROWS sets the table size (default 1,000,000).
//
// Fixtures are cached: the tables rc_bench_src_<rows> (the source) and rc_bench_dst_<rows>
// (a copy with 0.1% drift) are built once, in one transaction each, and kept between runs
// (building both at 1M rows takes about 11 s plus a VACUUM). A table whose comment
// is not the current fixture tag (benchFixtureTag) is dropped and rebuilt. Remove them
// with DROP TABLE rc_bench_src_<rows>, rc_bench_dst_<rows>. No test uses them.
// See docs/sql-benchmarks.md for the figures.

import (
	"context"
	dbsql "database/sql"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/reconcile-dev/reconcile/reconcile"
)

// benchFixtureTag is stored as the cached tables' comment; change it when the fixture
// changes so old caches are rebuilt.
const benchFixtureTag = "reconcile bench fixture v1"

// envRows returns the row count the environment variable name gives, def when unset.
func envRows(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		b.Fatalf("%s=%q: want a positive row count", name, s)
	}
	return v
}

// benchPostgres skips unless the SQL benchmarks are enabled and returns the PostgreSQL
// engine and the row count.
func benchPostgres(b *testing.B) (*engine, int) {
	b.Helper()
	if os.Getenv("RECONCILE_BENCH_SQL") != "1" {
		b.Skip("SQL benchmarks skipped: set RECONCILE_BENCH_SQL=1 (and RECONCILE_TEST_PG_DSN) to run them; they build tables of RECONCILE_BENCH_ROWS rows (default 1000000)")
	}
	if os.Getenv("RECONCILE_TEST_PG_DSN") == "" {
		b.Skip("SQL benchmarks skipped: set RECONCILE_TEST_PG_DSN (e.g. postgres://postgres@127.0.0.1:5432/test)")
	}
	n := envRows(b, "RECONCILE_BENCH_ROWS", 1_000_000)
	pg, _, _ := byName(b)
	if pg == nil {
		b.Fatal("no postgres engine")
	}
	return pg, n
}

// benchTables returns the names of the cached source table and its drifted copy,
// building them if missing.
func benchTables(b *testing.B, e *engine, n int) (src, dst string) {
	b.Helper()
	src, dst = fmt.Sprintf("rc_bench_src_%d", n), fmt.Sprintf("rc_bench_dst_%d", n)
	built := false
	for _, x := range []struct {
		name  string
		build func(tx *dbsql.Tx) error
	}{
		{src, func(tx *dbsql.Tx) error { return fillSource(tx, src, n) }},
		{dst, func(tx *dbsql.Tx) error { return fillDrifted(tx, src, dst, n) }},
	} {
		var comment dbsql.NullString
		err := e.db.QueryRow(`SELECT obj_description(to_regclass($1), 'pg_class')`, x.name).Scan(&comment)
		if err != nil {
			b.Fatalf("look up %s: %v", x.name, err)
		}
		tag := fmt.Sprintf("%s rows=%d", benchFixtureTag, n)
		if comment.Valid && comment.String == tag && !built {
			continue
		}
		start := time.Now()
		tx, err := e.db.Begin()
		if err != nil {
			b.Fatal(err)
		}
		if _, err = tx.Exec("DROP TABLE IF EXISTS " + x.name); err == nil {
			err = x.build(tx)
			if err == nil {
				_, err = tx.Exec("COMMENT ON TABLE " + x.name + " IS '" + tag + "'")
			}
		}
		if err == nil {
			err = tx.Commit()
		} else {
			tx.Rollback()
		}
		if err != nil {
			b.Fatalf("build %s: %v", x.name, err)
		}
		// Set hint bits and the visibility map now, so that no timed read writes them.
		e.exec(b, "VACUUM (FREEZE, ANALYZE) "+x.name)
		built = true // a rebuilt source means the copy must be rebuilt too
		b.Logf("built %s (%d rows) in %v", x.name, n, time.Since(start).Round(time.Millisecond))
	}
	return src, dst
}

const benchColumns = "id bigint PRIMARY KEY, name text, price numeric(12,2), at timestamptz, ver bigint NOT NULL"

// fillSource writes n rows: ids 1..n, a tenth of the names NULL, prices and times spread
// by multiplicative hashing, ver = id.
func fillSource(tx *dbsql.Tx, table string, n int) error {
	for _, s := range []string{
		"CREATE TABLE " + table + " (" + benchColumns + ")",
		`INSERT INTO ` + table + ` (id, name, price, at, ver)
		 SELECT g,
		        CASE WHEN g % 10 = 0 THEN NULL ELSE 'customer ' || md5(g::text) END,
		        ((g * 7919) % 10000000) / 100.0 - 50000,
		        timestamptz '2024-01-01 00:00:00+00' + ((g * 1234567) % 31536000000000) * interval '1 microsecond',
		        g
		 FROM generate_series(1::bigint, ` + strconv.Itoa(n) + `) g`,
	} {
		if _, err := tx.Exec(s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// driftStatements turns a copy of the source into the drifted target: 0.1% of n keys,
// 40% of them updated (half with a new version, half at the same version with a new
// value), 30% deleted, 30% inserted. The same statements (in MariaDB spelling) make the
// pt-table-sync comparison's copy (docs/sql-benchmarks.md).
func driftStatements(table string, n int) []string {
	ins := max(n/3333, 1)
	return []string{
		"UPDATE " + table + " SET name = 'renamed ' || id, ver = ver + " + strconv.Itoa(n) + " WHERE id % 5000 = 1",
		"UPDATE " + table + " SET price = price + 1 WHERE id % 5000 = 2501",
		"DELETE FROM " + table + " WHERE id % 3333 = 17",
		"INSERT INTO " + table + " (id, name, price, at, ver) SELECT " + strconv.Itoa(n) + " + g, 'new ' || g, g, timestamptz '2025-01-01 00:00:00+00', " +
			strconv.Itoa(2*n) + " + g FROM generate_series(1::bigint, " + strconv.Itoa(ins) + ") g",
	}
}

func fillDrifted(tx *dbsql.Tx, src, dst string, n int) error {
	stmts := append([]string{
		"CREATE TABLE " + dst + " (" + benchColumns + ")",
		"INSERT INTO " + dst + " SELECT * FROM " + src,
	}, driftStatements(dst, n)...)
	for _, s := range stmts {
		if _, err := tx.Exec(s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// selectAll is the floor: every row of table streamed through database/sql and pgx,
// each row scanned into []any. It returns the row count.
func selectAll(b *testing.B, db *dbsql.DB, table string) int {
	rs, err := db.Query("SELECT id, name, price, at, ver FROM " + table)
	if err != nil {
		b.Fatal(err)
	}
	defer rs.Close()
	vals := make([]any, 5)
	ptrs := make([]any, 5)
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	rows := 0
	for rs.Next() {
		if err := rs.Scan(ptrs...); err != nil {
			b.Fatal(err)
		}
		rows++
	}
	if err := rs.Err(); err != nil {
		b.Fatal(err)
	}
	return rows
}

// selectRaw is the floor below the floor: every row of table streamed through pgx itself,
// its wire values touched (summed lengths) but not decoded. It returns the row count.
func selectRaw(b *testing.B, db *dbsql.DB, table string) int {
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	rows := 0
	err = conn.Raw(func(dc any) error {
		rs, err := dc.(*stdlib.Conn).Conn().Query(ctx, "SELECT id, name, price, at, ver FROM "+table)
		if err != nil {
			return err
		}
		defer rs.Close()
		n := 0
		for rs.Next() {
			for _, v := range rs.RawValues() {
				n += len(v)
			}
			rows++
		}
		if n == 0 {
			return errors.New("no bytes read")
		}
		return rs.Err()
	})
	if err != nil {
		b.Fatal(err)
	}
	return rows
}

// BenchmarkScanPostgres (scan mode: mode=scan, so an installed maintained index is not
// used) compares, side by side in each iteration, the floor (SELECT of
// the same columns streamed to the client through database/sql, scanned into []any;
// and, lower still, through pgx without decoding a value) with opening a scan-mode
// snapshot (read, canonicalize and hash every row, build the in-memory index). It also
// times the database/sql read-and-hash path alone (scanTx, no index: what index install
// and verify use). The four run in rotating order so that caches and neighbours' load
// fall evenly. Metrics: select-ns/op, raw-select-ns/op, hash-ns/op, open-ns/op,
// open/select (the target is at most 2) and open/raw-select; ns/op is the sum of
// the four.
func BenchmarkScanPostgres(b *testing.B) {
	e, n := benchPostgres(b)
	src, _ := benchTables(b, e, n)
	tb := openTable(b, e.url(src, "version=ver&mode=scan"))
	ctx := context.Background()

	var sel, raw, hash, open time.Duration
	runs := []func(){
		func() {
			t0 := time.Now()
			if got := selectRaw(b, e.db, src); got != n {
				b.Fatalf("raw select read %d rows, want %d", got, n)
			}
			raw += time.Since(t0)
		},
		func() {
			t0 := time.Now()
			if got := selectAll(b, e.db, src); got != n {
				b.Fatalf("select read %d rows, want %d", got, n)
			}
			sel += time.Since(t0)
		},
		func() {
			t0 := time.Now()
			tx, _, err := tb.d.beginRead(ctx, tb.db)
			if err != nil {
				b.Fatal(err)
			}
			rows := 0
			if err := tb.scanTx(ctx, tx, func(r reconcile.Row) error { _ = r.Entry(); rows++; return nil }); err != nil {
				b.Fatal(err)
			}
			tx.Rollback()
			if rows != n {
				b.Fatalf("scan read %d rows, want %d", rows, n)
			}
			hash += time.Since(t0)
		},
		func() {
			t0 := time.Now()
			snap, err := tb.Open(ctx, time.Now().UnixNano())
			if err != nil {
				b.Fatal(err)
			}
			if c := snap.Info().Root.Count; c != uint64(n) {
				b.Fatalf("snapshot holds %d rows, want %d", c, n)
			}
			snap.Close()
			open += time.Since(t0)
		},
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range runs {
			runtime.GC() // each run starts from a clean heap, as a fresh process does
			runs[(i+j)%len(runs)]()
		}
	}
	b.StopTimer()
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) }
	b.ReportMetric(per(sel), "select-ns/op")
	b.ReportMetric(per(raw), "raw-select-ns/op")
	b.ReportMetric(per(open)/per(raw), "open/raw-select")
	b.ReportMetric(per(hash), "hash-ns/op")
	b.ReportMetric(per(open), "open-ns/op")
	b.ReportMetric(per(open)/per(sel), "open/select")
	b.ReportMetric(float64(n), "rows")
}

// BenchmarkDiffPostgres times a scan-mode diff session between the source and its
// drifted copy (both in the same database; in scan mode each side is its own connection
// and snapshot, as with two databases). Each iteration also reads both tables with the
// floor SELECT, side by side, for the ratio diff/select-both.
func BenchmarkDiffPostgres(b *testing.B) {
	e, n := benchPostgres(b)
	src, dst := benchTables(b, e, n)
	S, D := openTable(b, e.url(src, "version=ver&mode=scan")), openTable(b, e.url(dst, "version=ver&mode=scan"))
	ctx := context.Background()

	// The difference the fixture holds, counted by the database.
	var want int
	err := e.db.QueryRow(`SELECT count(*) FROM ` + src + ` s FULL JOIN ` + dst + ` d USING (id)
		WHERE s.id IS NULL OR d.id IS NULL OR (s.name, s.price, s.at, s.ver) IS DISTINCT FROM (d.name, d.price, d.at, d.ver)`).Scan(&want)
	if err != nil {
		b.Fatal(err)
	}

	var rep *reconcile.Report
	var diff, sel time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		rep, err = reconcile.Run(ctx, S, D, reconcile.Options{Mode: reconcile.Diff})
		if err != nil {
			b.Fatal(err)
		}
		diff += time.Since(t0)
		t0 = time.Now()
		selectAll(b, e.db, src)
		selectAll(b, e.db, dst)
		sel += time.Since(t0)
	}
	b.StopTimer()
	found := rep.OnlySource + rep.OnlyTarget + rep.Changed
	if found != want {
		b.Errorf("diff found %d differing rows (%d only in source, %d only in target, %d changed), the database counts %d",
			found, rep.OnlySource, rep.OnlyTarget, rep.Changed, want)
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) }
	b.ReportMetric(per(diff), "diff-ns/op")
	b.ReportMetric(per(sel), "select-both-ns/op")
	b.ReportMetric(per(diff)/per(sel), "diff/select-both")
	b.ReportMetric(float64(found), "differing-rows")
	b.ReportMetric(float64(rep.Rounds), "rounds")
	b.ReportMetric(float64(rep.BytesSent+rep.BytesReceived), "protocol-bytes")
	b.Logf("%d rows, %d differing (%d only source, %d only target, %d changed): %d rounds, %d bytes sent, %d received, entries read %d / %d, session %d ms",
		n, found, rep.OnlySource, rep.OnlyTarget, rep.Changed, rep.Rounds, rep.BytesSent, rep.BytesReceived,
		rep.EntriesReadSource, rep.EntriesReadTarget, rep.DurationMS)
}

// BenchmarkApplyNewRows syncs a SQLite table of RECONCILE_BENCH_NEW_ROWS rows (default
// 20,000) into an empty table of each engine whose DSN is set (SQLite always), as a new
// replica's first sync does: nearly all of the apply is inserts (metric ns/row, of the
// whole session). Then every source row changes and a second sync updates them all
// (update-ns/row). Run it with
//
//	RECONCILE_TEST_PG_DSN=... RECONCILE_TEST_MYSQL_DSN=... \
//	  go test ./adapters/sql -run '^$' -bench ApplyNewRows -benchtime 3x
//
// Inserts go many rows a statement (insertAll); one statement a row cost 131–136 µs a
// row on PostgreSQL and 230 µs on MariaDB, against 18–21 and 16–17 (docs/sql-benchmarks.md).
func BenchmarkApplyNewRows(b *testing.B) {
	n := envRows(b, "RECONCILE_BENCH_NEW_ROWS", 20_000)
	_, _, lite := byName(b)
	src := lite.table(b)
	lite.exec(b, "CREATE TABLE "+src+" (id bigint PRIMARY KEY, v text NOT NULL, ver bigint NOT NULL)")
	tx, err := lite.db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		if _, err := tx.Exec("INSERT INTO "+src+" VALUES (?, ?, ?)", i, fmt.Sprintf("value %d of the benchmark's source", i), i+1); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	S := openTable(b, lite.url(src, "version=ver"))
	for _, e := range engines(b) {
		// A second unique index (ver) is common in real tables, and once made MySQL
		// update a row a statement.
		for _, layout := range []string{"", "unique"} {
			name := e.name
			if layout != "" {
				name += "/" + layout
			}
			b.Run(name, func(b *testing.B) {
				benchApplyNewRows(b, e, S, lite, src, n, layout != "")
			})
		}
	}
}

// benchApplyNewRows is one engine's BenchmarkApplyNewRows: n new rows synced into a new
// table, then every row of it changed; unique adds a second unique index (on ver).
func benchApplyNewRows(b *testing.B, e *engine, S *Table, lite *engine, src string, n int, unique bool) {
	ddl := "(id bigint PRIMARY KEY, v text NOT NULL, ver bigint NOT NULL)"
	if unique {
		ddl = "(id bigint PRIMARY KEY, v text NOT NULL, ver bigint NOT NULL UNIQUE)"
	}
	var elapsed, updating time.Duration
	for range b.N {
		dst := e.table(b)
		e.exec(b, "CREATE TABLE "+dst+" "+ddl)
		D := openTable(b, e.url(dst, "version=ver"))
		t0 := time.Now()
		rep, err := reconcile.Run(context.Background(), S, D, reconcile.Options{Mode: reconcile.Mirror})
		elapsed += time.Since(t0)
		if err != nil || rep.Upserted != n {
			b.Fatalf("sync into %s: %v, %d upserted, want %d", e.name, err, rep.Upserted, n)
		}
		lite.exec(b, "UPDATE "+src+" SET ver = ver + "+strconv.Itoa(n)+", v = v || '.'")
		t0 = time.Now()
		rep, err = reconcile.Run(context.Background(), S, D, reconcile.Options{Mode: reconcile.Mirror})
		updating += time.Since(t0)
		if err != nil || rep.Changed != n || rep.Upserted != n {
			b.Fatalf("second sync into %s: %v, %d changed and %d upserted, want %d", e.name, err, rep.Changed, rep.Upserted, n)
		}
		D.Close()
		e.exec(b, "DROP TABLE "+dst)
	}
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N*n), "ns/row")
	b.ReportMetric(float64(updating.Nanoseconds())/float64(b.N*n), "update-ns/row")
}
