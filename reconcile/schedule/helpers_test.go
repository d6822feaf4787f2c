package schedule

import (
	"context"
	dbsql "database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/reconcile-dev/reconcile/adapters/badger"
	sqlep "github.com/reconcile-dev/reconcile/adapters/sql"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// opener opens the endpoints tests name: badger:///path and SQL URLs, as the CLI does
// (the CLI's opener lives in package main). wrap, when set, may wrap a target endpoint.
type opener struct {
	wrap func(job string, ep reconcile.Endpoint) reconcile.Endpoint
	// openNow counts the endpoints open now, by URL; overlaps notes any URL opened for
	// writing while already open (which the scheduler's claims must prevent).
	mu       sync.Mutex
	openNow  map[string]int
	overlaps []string
	// mirrored counts, by job, the calls of a target's Opened.Mirrored.
	mirrored map[string]int
}

func (o *opener) open(ctx context.Context, req OpenRequest) (*Opened, error) {
	var ep reconcile.Endpoint
	switch {
	case strings.HasPrefix(req.URL, "badger://"):
		s, err := badger.Open(strings.TrimPrefix(req.URL, "badger://"), badger.Options{Create: req.Write, ReadOnly: !req.Write})
		if err != nil {
			return nil, err
		}
		ep = s
	default:
		cfg, err := sqlep.ParseURL(req.URL)
		if err != nil {
			return nil, err
		}
		t, err := sqlep.Open(ctx, cfg)
		if err != nil {
			return nil, err
		}
		t.ReadOnly = !req.Write
		ep = t
	}
	if req.Role == Target && o.wrap != nil {
		ep = o.wrap(req.Job, ep)
	}
	o.mu.Lock()
	if o.openNow == nil {
		o.openNow = map[string]int{}
	}
	o.openNow[req.URL]++
	if o.openNow[req.URL] > 1 && req.Write {
		o.overlaps = append(o.overlaps, req.Job+" "+req.URL)
	}
	o.mu.Unlock()
	opened := &Opened{Endpoint: ep, Close: func() error {
		o.mu.Lock()
		o.openNow[req.URL]--
		o.mu.Unlock()
		return ep.Close()
	}}
	if req.Write {
		opened.Mirrored = func() error {
			o.mu.Lock()
			defer o.mu.Unlock()
			if o.mirrored == nil {
				o.mirrored = map[string]int{}
			}
			o.mirrored[req.Job]++
			return nil
		}
	}
	return opened, nil
}

// badgerStore creates a Badger store in a temporary directory and returns its URL.
func badgerStore(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	s, err := badger.Open(dir, badger.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return "badger://" + dir
}

// withBadger opens the store at u, calls fn and closes it.
func withBadger(t *testing.T, u string, fn func(s *badger.Store)) {
	t.Helper()
	s, err := badger.Open(strings.TrimPrefix(u, "badger://"), badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fn(s)
}

// putRows writes rows key%05d for i in [from, to) at version base+i.
func putRows(t *testing.T, s *badger.Store, from, to int, base uint64, value string) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := s.Put([]byte(fmt.Sprintf("key%05d", i)), []byte(value), base+uint64(i), 0); err != nil {
			t.Fatal(err)
		}
	}
}

// rootOf returns the full root fingerprint of the endpoint at u.
func rootOf(t *testing.T, u string) string {
	t.Helper()
	ctx := context.Background()
	op, err := (&opener{}).open(ctx, OpenRequest{URL: u})
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	info, err := reconcile.Root(ctx, op.Endpoint, time.Now().UnixNano())
	if err != nil {
		t.Fatal(err)
	}
	return reconcile.FormatFingerprint(info.Root.Fingerprint())
}

// sqlDB is a SQL database the tests write to directly.
type sqlDB struct {
	name string // sqlite, postgres
	base string // endpoint URL without query
	db   *dbsql.DB
}

// sqliteDB creates a SQLite database file in WAL mode.
func sqliteDB(t *testing.T) *sqlDB {
	t.Helper()
	file := filepath.Join(t.TempDir(), "test.db")
	db, err := dbsql.Open("sqlite", file)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec("PRAGMA journal_mode=WAL"); err != nil {
		t.Fatal(err)
	}
	return &sqlDB{name: "sqlite", base: "sqlite://" + file, db: db}
}

// postgresDB connects to RECONCILE_TEST_PG_DSN; without it the test is skipped, unless
// RECONCILE_TEST_REQUIRE_ALL=1 (CI), which makes that a failure.
func postgresDB(t *testing.T) *sqlDB {
	t.Helper()
	dsn := os.Getenv("RECONCILE_TEST_PG_DSN")
	if dsn == "" {
		msg := "PostgreSQL tests skipped: set RECONCILE_TEST_PG_DSN (e.g. postgres://postgres@127.0.0.1:5432/test)"
		if os.Getenv("RECONCILE_TEST_REQUIRE_ALL") == "1" {
			t.Fatalf("%s; RECONCILE_TEST_REQUIRE_ALL=1 forbids skipping", msg)
		}
		t.Skip(msg)
	}
	db, err := dbsql.Open("pgx", dsn)
	if err == nil {
		err = db.Ping()
	}
	if err != nil {
		t.Fatalf("connect to %s: %v", dsn, err)
	}
	t.Cleanup(func() { db.Close() })
	return &sqlDB{name: "postgres", base: dsn, db: db}
}

var tableSeq atomic.Int64

// table creates a uniquely named items table, dropped when the test ends, and returns
// its endpoint URL.
func (d *sqlDB) table(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("rc_sched_%d_%d", time.Now().UnixNano()%1e12, tableSeq.Add(1))
	idType := "integer"
	if d.name == "postgres" {
		idType = "bigint"
	}
	d.exec(t, fmt.Sprintf("CREATE TABLE %s (id %s PRIMARY KEY, name text NOT NULL, ver bigint NOT NULL)", name, idType))
	t.Cleanup(func() { d.db.Exec("DROP TABLE IF EXISTS " + name) })
	u, err := url.Parse(d.base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("table", name)
	q.Set("version", "ver")
	u.RawQuery = q.Encode()
	return u.String()
}

func (d *sqlDB) exec(t *testing.T, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := d.db.Exec(s); err != nil {
			t.Fatalf("%s: %s: %v", d.name, s, err)
		}
	}
}

// tableName returns the table of an endpoint URL.
func tableName(u string) string {
	p, _ := url.Parse(u)
	return p.Query().Get("table")
}
