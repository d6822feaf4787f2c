package sql

import (
	"context"
	dbsql "database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/reconcile-dev/reconcile/adapters/badger"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// TestPostgresRawScanMatchesDriver fills a table with every PostgreSQL type the endpoint
// supports (random values, NULLs, extremes, a composite key with text, an expiry column,
// a row wider than a scan batch's byte bound) and checks that a scan snapshot, which
// decodes pgx's wire bytes itself, holds exactly the entries that the database/sql path
// makes of the same rows.
func TestPostgresRawScanMatchesDriver(t *testing.T) {
	pg, _, _ := byName(t)
	if pg == nil {
		t.Skip("postgres tests skipped: set RECONCILE_TEST_PG_DSN (e.g. postgres://postgres@127.0.0.1:5432/test)")
	}
	name := pg.table(t)
	enum := name + "_mood"
	pg.exec(t, "CREATE TYPE "+enum+" AS ENUM ('sad', 'ok', 'happy')")
	t.Cleanup(func() { pg.db.Exec("DROP TYPE IF EXISTS " + enum) })
	pg.exec(t, `CREATE TABLE `+name+` (k text, id int4, ver bigint NOT NULL, exp timestamptz,
		i2 int2, i4 int4, i8 int8, o oid, f4 float4, f8 float8, bo bool, tx text, vc varchar(20),
		ch char(6), nm name, u uuid, m `+enum+`, by bytea, n numeric, n3 numeric(10,3),
		ts timestamp, tz timestamptz, d date, tm time, j json, jb jsonb,
		PRIMARY KEY (k, id))`)
	// n(x) is NULL one time in ten; r is random() seeded for a repeatable table.
	pg.exec(t, "SELECT setseed(0.42)", `INSERT INTO `+name+` SELECT
		CASE WHEN g % 7 = 0 THEN '' ELSE 'k' || chr(1 + g % 120) || (g % 13) END, g, g * 3,
		CASE WHEN g % 5 = 0 THEN NULL ELSE timestamptz '2100-01-01' + g * interval '1 second' END,
		nullif((random() * 65535 - 32768)::int2, 7),
		CASE WHEN g = 1 THEN -2147483648 WHEN g = 2 THEN 2147483647 ELSE (random() * 4e9 - 2e9)::int4 END,
		CASE WHEN g = 1 THEN -9223372036854775808 WHEN g = 2 THEN 9223372036854775807 ELSE (random() * 1e18)::int8 END,
		CASE WHEN g = 3 THEN 4294967295 ELSE (random() * 4e9)::int8::oid END,
		CASE g % 9 WHEN 0 THEN NULL WHEN 1 THEN '-0'::float4 WHEN 2 THEN 'NaN' WHEN 3 THEN '1e-45' WHEN 4 THEN '-Infinity' ELSE (random() * 1e6 - 5e5)::float4 END,
		CASE g % 9 WHEN 0 THEN NULL WHEN 1 THEN '-0'::float8 WHEN 2 THEN 'NaN' WHEN 3 THEN '5e-324' WHEN 4 THEN 'Infinity' ELSE random() * 1e300 END,
		CASE g % 3 WHEN 0 THEN NULL WHEN 1 THEN true ELSE false END,
		CASE g % 6 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN 'e' || chr(769) WHEN 3 THEN chr(233) || ' ' ELSE md5(g::text) || chr(1 + g % 1000) END,
		CASE WHEN g % 10 = 0 THEN NULL ELSE left(md5(random()::text), (g % 20)) END,
		CASE WHEN g % 10 = 0 THEN NULL WHEN g % 10 = 1 THEN '' ELSE left(md5(g::text), g % 6) END,
		'n' || g,
		CASE WHEN g % 10 = 0 THEN NULL ELSE md5(g::text)::uuid END,
		(ARRAY['sad', 'ok', 'happy', NULL])[1 + g % 4]::`+enum+`,
		CASE g % 5 WHEN 0 THEN NULL WHEN 1 THEN ''::bytea ELSE decode(md5(g::text), 'hex') END,
		CASE g % 8 WHEN 0 THEN NULL WHEN 1 THEN 'NaN' WHEN 2 THEN '-0.000' WHEN 3 THEN '1e-30' WHEN 4 THEN '123456789012345678901234567890.5' ELSE (random() * 1e6 - 5e5)::numeric END,
		CASE WHEN g % 10 = 0 THEN NULL ELSE (random() * 1e6)::numeric(10,3) END,
		CASE g % 10 WHEN 0 THEN NULL WHEN 1 THEN '1677-09-21 00:12:43.145225' WHEN 2 THEN '2262-04-11 23:47:16.854775' WHEN 3 THEN '1970-01-01'
			WHEN 4 THEN '1677-09-21 00:12:43.145224' WHEN 5 THEN '2262-04-11 23:47:16.854776' WHEN 6 THEN '0001-01-01' WHEN 7 THEN '9999-12-31 23:59:59.999999'
			WHEN 8 THEN 'infinity' ELSE timestamp '1200-01-01' + random() * interval '1500 years' END,
		CASE g % 10 WHEN 0 THEN NULL WHEN 1 THEN '-infinity' ELSE timestamptz '1960-01-01 00:00+03' + random() * interval '100 years' END,
		CASE g % 5 WHEN 0 THEN NULL WHEN 1 THEN '0001-01-01' WHEN 2 THEN '1999-12-31' ELSE date '1900-01-01' + (random() * 100000)::int END,
		CASE g % 5 WHEN 0 THEN NULL WHEN 1 THEN '24:00:00' WHEN 2 THEN '00:00:00' ELSE time '00:00' + random() * interval '24 hours' END,
		CASE WHEN g % 4 = 0 THEN NULL ELSE ('{"b": ' || g || ', "a": [1, 2.50, "x"]}')::json END,
		CASE WHEN g % 4 = 1 THEN NULL ELSE ('{"z": {"y": null, "x": ' || random() || '}, "a": true}')::jsonb END
		FROM generate_series(1, 3000) g`,
		// A row wider than pgBatchBytes ends a batch early.
		"UPDATE "+name+" SET by = convert_to(repeat('x', 17000000), 'UTF8') WHERE id = 5")
	tb := openTable(t, pg.url(name, "version=ver&expires=exp&mode=scan"))
	sameScanEntries(t, tb)
	ktb := openTable(t, pg.url(name, "expires=exp&mode=scan")) // key order
	sameScanEntries(t, ktb)
}

// TestScanCanceled: a scan whose context ends part way is an error on every engine, never
// a snapshot of the rows read so far (the reader stops sending quietly; the scan must
// notice).
func TestScanCanceled(t *testing.T) {
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) {
			name := e.table(t)
			e.exec(t, "CREATE TABLE "+name+" (id bigint PRIMARY KEY, v text)")
			var vals []string
			for i := 0; i < 5000; i++ {
				vals = append(vals, fmt.Sprintf("(%d, 'v%d')", i, i))
			}
			e.exec(t, "INSERT INTO "+name+" VALUES "+strings.Join(vals, ", "))
			tb := openTable(t, e.url(name, "mode=scan"))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var conn *dbsql.Conn
			var tx *dbsql.Tx
			var err error
			if rr, ok := tb.d.(rawReader); ok {
				conn, tx, err = rr.beginReadConn(ctx, tb.db)
			} else {
				tx, _, err = tb.d.beginRead(ctx, tb.db)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				tx.Rollback()
				if conn != nil {
					conn.Close()
				}
			}()
			var seen atomic.Int64
			err = tb.scanParallel(ctx, tx, conn, 2, func(w int, r reconcile.Row) error {
				if seen.Add(1) == 10 {
					cancel()
				}
				return nil
			})
			if err == nil || !errors.Is(err, context.Canceled) {
				t.Fatalf("scan canceled after 10 of 5,000 rows returned %v (saw %d rows), want context.Canceled", err, seen.Load())
			}
		})
	}
}

// BenchmarkPgTimestamp: a binary timestamp into the value encoding, on the direct path
// that every timestamp nanoseconds hold takes, against the datum path (build a Datum,
// then encode it) that wide timestamps and infinities take.
func BenchmarkPgTimestamp(b *testing.B) {
	raw := binary.BigEndian.AppendUint64(nil, uint64(int64(7e14))) // 2022, in µs since 2000
	for _, c := range []struct {
		name string
		f    func(dst, raw []byte) ([]byte, error)
	}{{"direct", pgTimestamp.appendValue}, {"via-datum", viaDatum(pgTimestamp.datum).appendValue}} {
		b.Run(c.name, func(b *testing.B) {
			dst := make([]byte, 0, 16)
			for i := 0; i < b.N; i++ {
				if _, err := c.f(dst[:0], raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestPostgresNativeTypes: PostgreSQL types no other engine has (arrays, network types,
// intervals, ranges, money, bit strings, tsvector, geometry, xml, composites, domains)
// compare by PostgreSQL's text output and sync PostgreSQL to PostgreSQL and through a
// Badger store back, whatever time zone each connection asks for; the raw scan and the
// driver read the same; such a column pairs with no other engine's column.
func TestPostgresNativeTypes(t *testing.T) {
	pg, _, lite := byName(t)
	if pg == nil {
		t.Skip("postgres tests skipped: set RECONCILE_TEST_PG_DSN (e.g. postgres://postgres@127.0.0.1:5432/test)")
	}
	ctx := context.Background()
	src := pg.table(t)
	typ := src + "_pair"
	pg.exec(t, "CREATE TYPE "+typ+" AS (a int, b text)")
	t.Cleanup(func() { pg.db.Exec("DROP TYPE IF EXISTS " + typ + " CASCADE") })
	dom := src + "_pos"
	pg.exec(t, "CREATE DOMAIN "+dom+" AS int CHECK (VALUE > 0)")
	t.Cleanup(func() { pg.db.Exec("DROP DOMAIN IF EXISTS " + dom + " CASCADE") })
	ddl := " (id int PRIMARY KEY, tags text[], ints int[], ip inet, net cidr, iv interval, m money, bits bit(3), vb varbit, " +
		"ts tsvector, r int4range, tsr tstzrange, f8a float8[], tza timestamptz[], p point, x xml, mac macaddr, ba bytea[], " +
		"pr " + typ + ", pi " + dom + ", u uuid[], j jsonb[], ver bigint NOT NULL)"
	pg.exec(t, "CREATE TABLE "+src+ddl, `INSERT INTO `+src+` VALUES
		(1, '{a,"b c",NULL}', '{1,2}', '10.0.0.1/8', '10.0.0.0/8', '1 day 02:00', 12.5, B'101', B'1', 'a fat cat', '[1,5)',
		 '[2024-01-01 10:00+05,2024-01-02)', '{0.1,1e300,-0}', '{"2024-01-01 10:00+05"}', '(1,2)', '<a>x</a>', '08:00:2b:01:02:03',
		 '{"\\x00ff"}', '(1,"x y")', 5, '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}', array['{"b":1,"a":2}'::jsonb], 1),
		(2, '{}', NULL, '::1', NULL, '-3 mons', -0.01, NULL, B'', '', 'empty', NULL, '{NaN,Infinity}', NULL, NULL, NULL, NULL,
		 NULL, NULL, NULL, NULL, NULL, 2)`)
	S := openTable(t, pg.url(src, "version=ver&timezone=Asia/Kolkata"))
	if !strings.Contains(S.Schema(), "tags:native(_text)") || !strings.Contains(S.Schema(), "pi:int") {
		t.Fatalf("schema %q", S.Schema())
	}
	sameScanEntries(t, openTable(t, pg.url(src, "version=ver&mode=scan&IntervalStyle=sql_standard")))

	dst := pg.table(t)
	pg.exec(t, "CREATE TABLE "+dst+ddl)
	D := openTable(t, pg.url(dst, "version=ver&timezone=America/New_York&DateStyle=German"))
	syncAndCheck(t, "postgres to postgres", S, D, 2)
	sameText := func(a, b string) {
		t.Helper()
		var n int
		if err := pg.db.QueryRow("SELECT count(*) FROM " + a + " aa JOIN " + b + " bb USING (id) WHERE aa::text = bb::text").Scan(&n); err != nil || n != 2 {
			t.Fatalf("%s and %s: %d rows of 2 read the same (%v)", a, b, n, err)
		}
	}
	sameText(src, dst)

	B, err := badger.Open(filepath.Join(t.TempDir(), "b"), badger.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer B.Close()
	back := pg.table(t)
	pg.exec(t, "CREATE TABLE "+back+ddl)
	syncAndCheck(t, "postgres to badger", S, B, 2)
	syncAndCheck(t, "badger to postgres", B, openTable(t, pg.url(back, "version=ver")), 2)
	sameText(src, back)

	sameThroughJSON(t, S) // dump's JSON lines load back to the same rows

	// Another engine has no text[]: the schemas differ and nothing is written.
	ls := lite.table(t)
	lite.exec(t, "CREATE TABLE "+ls+" (id int PRIMARY KEY, tags text, ver bigint NOT NULL)")
	S2 := openTable(t, pg.url(src, "version=ver&columns=tags"))
	if _, err := reconcile.Run(ctx, S2, openTable(t, lite.url(ls, "version=ver")), reconcile.Options{Mode: reconcile.Mirror}); err == nil || !strings.Contains(err.Error(), "schemas differ") {
		t.Fatalf("text[] against SQLite text: %v", err)
	}
}
