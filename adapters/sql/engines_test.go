package sql

import (
	"bytes"
	"context"
	dbsql "database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// engine is one database the tests run against.
type engine struct {
	name string
	// base is the endpoint URL without its query (postgres://…/db, sqlite:///file).
	base string
	db   *dbsql.DB
}

// url returns the endpoint URL of table with extra query parameters.
func (e *engine) url(table, params string) string {
	u := e.base + "?table=" + table
	if params != "" {
		u += "&" + params
	}
	return u
}

// exec runs statements, failing the test on error.
func (e *engine) exec(t testing.TB, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := e.db.Exec(s); err != nil {
			t.Fatalf("%s: %s: %v", e.name, s, err)
		}
	}
}

// texts runs a query of one text column and returns its rows, failing the test on error.
func (e *engine) texts(t testing.TB, query string) []string {
	t.Helper()
	rows, err := e.db.Query(query)
	if err != nil {
		t.Fatalf("%s: %s: %v", e.name, query, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

var tableSeq atomic.Int64

// table returns a table name no other test (or earlier run) uses, and drops it when the
// test ends.
func (e *engine) table(t testing.TB) string {
	name := fmt.Sprintf("rc_test_%d_%d", time.Now().UnixNano()%1e12, tableSeq.Add(1))
	t.Cleanup(func() { e.db.Exec("DROP TABLE IF EXISTS " + name) })
	return name
}

// requireAll makes a missing database DSN a failure (CI sets it).
func requireAll() bool { return os.Getenv("RECONCILE_TEST_REQUIRE_ALL") == "1" }

// engines returns SQLite (always) and PostgreSQL and MariaDB/MySQL when their DSNs are
// set: RECONCILE_TEST_PG_DSN (postgres://user@host:port/db) and RECONCILE_TEST_MYSQL_DSN
// (mysql://user:pass@host:port/db).
func engines(t testing.TB) []*engine {
	t.Helper()
	var out []*engine
	for _, c := range []struct{ name, env string }{{"postgres", "RECONCILE_TEST_PG_DSN"}, {"mysql", "RECONCILE_TEST_MYSQL_DSN"}} {
		dsn := os.Getenv(c.env)
		if dsn == "" {
			msg := fmt.Sprintf("%s tests skipped: set %s (e.g. %s)", c.name, c.env, map[string]string{
				"postgres": "postgres://postgres@127.0.0.1:5432/test",
				"mysql":    "mysql://root@127.0.0.1:3306/test",
			}[c.name])
			if requireAll() {
				t.Fatalf("%s, RECONCILE_TEST_REQUIRE_ALL=1 forbids skipping", msg)
			}
			t.Log(msg)
			continue
		}
		out = append(out, openEngine(t, c.name, dsn))
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "test.db")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	lite := openEngine(t, "sqlite", "sqlite://"+file)
	// WAL mode keeps snapshots while writers go on (the rollback-journal mode is tested
	// on its own in TestSQLiteRollbackJournal).
	lite.exec(t, "PRAGMA journal_mode=WAL")
	return append(out, lite)
}

// byName returns the engines of engines(t) by name ("postgres", "mysql", "sqlite"); the
// servers are nil when their DSN is unset.
func byName(t testing.TB) (pg, my, lite *engine) {
	for _, e := range engines(t) {
		switch e.name {
		case "postgres":
			pg = e
		case "mysql":
			my = e
		case "sqlite":
			lite = e
		}
	}
	return pg, my, lite
}

func openEngine(t testing.TB, name, base string) *engine {
	t.Helper()
	cfg, err := ParseURL(base + "?table=x")
	if err != nil {
		t.Fatalf("%s DSN %q: %v", name, base, err)
	}
	d, _ := dialectFor(cfg.Dialect)
	db, err := d.connect(cfg.DSN)
	if err == nil {
		err = db.Ping()
	}
	if err != nil {
		t.Fatalf("connect to %s (%s): %v", name, base, err)
	}
	t.Cleanup(func() { db.Close() })
	return &engine{name: name, base: base, db: db}
}

// ddl spells a column type per engine.
func ddl(e *engine, pg, my, lite string) string {
	switch e.name {
	case "postgres":
		return pg
	case "mysql":
		return my
	}
	return lite
}

func openTable(t testing.TB, u string) *Table {
	t.Helper()
	cfg, err := ParseURL(u)
	if err != nil {
		t.Fatalf("parse %s: %v", u, err)
	}
	tb, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open %s: %v", u, err)
	}
	t.Cleanup(func() { tb.Close() })
	return tb
}

// openErr opens the endpoint at u and returns Open's error (closing a table it opened).
func openErr(t testing.TB, u string) error {
	t.Helper()
	cfg, err := ParseURL(u)
	if err != nil {
		t.Fatalf("parse %s: %v", u, err)
	}
	tb, err := Open(context.Background(), cfg)
	if err == nil {
		tb.Close()
	}
	return err
}

// sameThroughJSON checks that each of tb's rows, as dump writes it (RowColumns), loads
// back (ColumnsRow) to the same key and value.
func sameThroughJSON(t *testing.T, tb *Table) {
	t.Helper()
	for _, r := range allRows(t, tb) {
		js, err := tb.RowColumns(r)
		if err != nil {
			t.Fatal(err)
		}
		var cols map[string]json.RawMessage
		if err := json.Unmarshal(js, &cols); err != nil {
			t.Fatal(err)
		}
		if k, v, err := tb.ColumnsRow(cols, false); err != nil || !bytes.Equal(k, r.Key) || !bytes.Equal(v, r.Value) {
			t.Fatalf("%s loads back as %x %x, %v", js, k, v, err)
		}
	}
}

// bothServers is byName for a test that needs PostgreSQL and MySQL both: it skips (or,
// under RECONCILE_TEST_REQUIRE_ALL, byName fails) without them.
func bothServers(t *testing.T) (pg, my, lite *engine) {
	t.Helper()
	pg, my, lite = byName(t)
	if pg == nil || my == nil {
		t.Skip("needs RECONCILE_TEST_PG_DSN and RECONCILE_TEST_MYSQL_DSN")
	}
	return pg, my, lite
}
