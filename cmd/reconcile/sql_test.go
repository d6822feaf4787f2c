package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	sqlep "github.com/reconcile-dev/reconcile/adapters/sql"
)

// sqliteTable creates a SQLite file with an items table and returns its endpoint URL.
func sqliteTable(t *testing.T, extra string) (url string, db *sql.DB) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "items.db")
	db, err := sql.Open("sqlite", file)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL, price decimal(10,2), seen timestamp, ver integer NOT NULL` + extra + `)`); err != nil {
		t.Fatal(err)
	}
	return "sqlite://" + file + "?table=items&version=ver", db
}

const itemLines = `{"columns": {"id": 1, "name": "apple", "price": "1.50", "seen": "2024-03-10T12:00:00+05:00"}, "version": 10}
{"columns": {"id": 2, "name": "pear", "price": 2, "seen": null}, "version": 11}
{"columns": {"id": 3, "name": "fig", "price": null, "seen": null}, "version": 12}
{"columns": {"id": 3}, "deleted": true}
`

func TestSQLLoadDump(t *testing.T) {
	ep, _ := sqliteTable(t, "")
	mustCLI(t, 0, itemLines, "load", ep)
	got := mustCLI(t, 0, "", "dump", ep)
	want := `{"version":10,"columns":{"id":1,"name":"apple","price":"1.5","seen":"2024-03-10T07:00:00Z"}}
{"version":11,"columns":{"id":2,"name":"pear","price":"2","seen":null}}
`
	if got != want {
		t.Fatalf("dump:\n%s\nwant:\n%s", got, want)
	}
	// What dump writes, load takes back: a second table loaded from the dump has the
	// same root.
	ep2, _ := sqliteTable(t, "")
	mustCLI(t, 0, got, "load", ep2)
	if a, b := mustCLI(t, 0, "", "root", ep), mustCLI(t, 0, "", "root", ep2); a != b {
		t.Fatalf("roots differ after a dump/load round trip: %s vs %s", a, b)
	}

	// A bad line anywhere writes nothing, and says which line.
	for _, tc := range []struct{ line, err string }{
		{`{"columns": {"id": 9, "name": "x", "price": "abc", "seen": null}, "version": 1}`, `"abc" is not a decimal`},
		{`{"columns": {"id": 9, "name": "x", "price": 1, "seen": null, "color": "red"}, "version": 1}`, `no column "color"`},
		{`{"columns": {"id": 9, "price": 1, "seen": null}, "version": 1}`, `column "name" missing`},
		// A misspelt column is named, not the column it stands for as missing.
		{`{"columns": {"id": 9, "nme": "x", "price": 1, "seen": null}, "version": 1}`, `no column "nme" among its key and value columns (id, name, price, seen)`},
		{`{"columns": {"ID": 9, "name": "x", "price": 1, "seen": null}, "version": 1}`, `no column "ID"`},
		{`{"columns": {"id": 9, "name": null, "price": 1, "seen": null}, "version": 1}`, `"name" is NOT NULL`},
		{`{"columns": {"id": 9, "name": "x", "price": 1, "seen": "yesterday"}, "version": 1}`, "RFC 3339"},
		{`{"columns": {"id": "nine", "name": "x", "price": 1, "seen": null}, "version": 1}`, "not a 64-bit integer"},
	} {
		code, _, errOut := runCLI(t, `{"columns": {"id": 8, "name": "ok", "price": 1, "seen": null}, "version": 1}`+"\n"+tc.line+"\n", "load", ep)
		if code != 2 || !strings.Contains(errOut, "line 2") || !strings.Contains(errOut, tc.err) || !strings.Contains(errOut, "nothing was written") {
			t.Errorf("load %s: exit %d, stderr %q; want exit 2 naming line 2 and %q", tc.line, code, errOut, tc.err)
		}
	}
	if after := mustCLI(t, 0, "", "dump", ep); after != want {
		t.Fatalf("failed loads changed the table:\n%s", after)
	}
}

// TestSQLDiffNamesKeyColumns: diff between two tables names a differing row by its key
// columns, in the table and in --json, not by the key's bytes.
func TestSQLDiffNamesKeyColumns(t *testing.T) {
	a, _ := sqliteTable(t, "")
	b, _ := sqliteTable(t, "")
	mustCLI(t, 0, itemLines, "load", a)
	mustCLI(t, 0, strings.SplitAfter(itemLines, "\n")[0], "load", b)
	out := mustCLI(t, 1, "", "diff", a, b)
	if !strings.Contains(out, "only_source  id=2 ") {
		t.Fatalf("diff does not name id=2:\n%s", out)
	}
	if out := mustCLI(t, 1, "", "diff", a, b, "--json"); !strings.Contains(out, `"key": "id=2"`) {
		t.Fatalf("diff --json does not name id=2:\n%s", out)
	}
}

// TestSyncDivergedTarget: a target whose trigger rewrites what sync writes ends unequal to
// the source although no row failed; sync says so and exits 3 instead of reporting success.
func TestSyncDivergedTarget(t *testing.T) {
	src, _ := sqliteTable(t, "")
	dst, db := sqliteTable(t, "")
	mustCLI(t, 0, itemLines, "load", src)
	if _, err := db.Exec(`CREATE TRIGGER shout AFTER INSERT ON items BEGIN UPDATE items SET name = upper(name) WHERE id = new.id; END`); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "", "sync", src, dst)
	if code != exitPartial || !strings.Contains(errOut, "is not the source's") || !strings.Contains(errOut, "trigger") || !strings.Contains(out, "upserted         2") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	// Without the trigger, the next sync repairs the rows and succeeds.
	if _, err := db.Exec(`DROP TRIGGER shout`); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, exitOK, "", "sync", src, dst)
	mustCLI(t, exitOK, "", "diff", src, dst)
}

func TestSQLBadEndpoints(t *testing.T) {
	ep, _ := sqliteTable(t, ", shape geometry")
	base := strings.TrimSuffix(ep, "?table=items&version=ver")
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a port nothing listens on once closed
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct{ url, err string }{
		{"postgres://u@" + closed + "/db?table=x", "is the server running"},
		{"mysql://u@" + closed + "/db?table=x", "is the server running"},
		{base + "?table=nope", "table nope not found"},
		{base + "?table=items&version=missing", `no column "missing"`},
		{base + "?table=items&key=name", "key name is not unique"},
		{base + "?table=items&key=zzz", `no column "zzz" (key)`},
		{base + "?table=items&version=ver", "type geometry, which reconcile cannot compare across engines; leave it out with columns=name,price,seen "},
		{base + "?table=items&version=name&columns=price", "version column name is text"},
		{"sqlite:///no/such/file.db?table=items", "no such file"},
		{"postgres://nosuchuser@127.0.0.1:5432/test?table=x&connect_timeout=5", "postgres"},
	} {
		code, _, errOut := runCLI(t, "", "root", tc.url)
		if code != 2 || !strings.Contains(errOut, tc.err) {
			t.Errorf("root %s: exit %d, stderr %q; want exit 2 and %q", tc.url, code, errOut, tc.err)
		}
		if strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
			t.Errorf("root %s: error takes more than one line: %q", tc.url, errOut)
		}
	}
	// columns= may name the key and version columns too, as a user copying the column
	// list would: they keep their roles.
	a := mustCLI(t, exitOK, "", "root", base+"?table=items&version=ver&columns=name,price,seen")
	if b := mustCLI(t, exitOK, "", "root", base+"?table=items&version=ver&columns=id,name,price,seen,ver"); a != b {
		t.Errorf("columns= naming the key and version gives root %s, without them %s", b, a)
	}
}

// pgDSN is RECONCILE_TEST_PG_DSN; the test is skipped without it (failed under
// RECONCILE_TEST_REQUIRE_ALL=1, as .ci/run sets).
func pgDSN(t *testing.T) string {
	t.Helper()
	return serverDSN(t, "RECONCILE_TEST_PG_DSN", "postgres://postgres@127.0.0.1:5432/test")
}

// mysqlDSN is RECONCILE_TEST_MYSQL_DSN, as pgDSN.
func mysqlDSN(t *testing.T) string {
	t.Helper()
	return serverDSN(t, "RECONCILE_TEST_MYSQL_DSN", "mysql://root@127.0.0.1:3306/test")
}

func serverDSN(t *testing.T, env, example string) string {
	t.Helper()
	dsn := os.Getenv(env)
	if dsn == "" {
		if os.Getenv("RECONCILE_TEST_REQUIRE_ALL") == "1" {
			t.Fatalf("%s is unset and RECONCILE_TEST_REQUIRE_ALL=1 forbids skipping", env)
		}
		t.Skipf("set %s (e.g. %s) to run", env, example)
	}
	return dsn
}

// TestSQLSyncCLI syncs SQLite into PostgreSQL through the CLI: diff exits 1, sync 0, the
// roots then match and diff exits 0.
func TestSQLSyncCLI(t *testing.T) {
	dsn := pgDSN(t)
	src, _ := sqliteTable(t, "")
	mustCLI(t, 0, itemLines, "load", src)
	pg, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	table := fmt.Sprintf("rc_cli_%d", time.Now().UnixNano()%1e12)
	if _, err := pg.Exec(`CREATE TABLE ` + table + ` (id bigint PRIMARY KEY, name varchar(20) NOT NULL, price numeric(10,2), seen timestamptz, ver bigint NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	defer pg.Exec("DROP TABLE " + table)
	if _, err := pg.Exec(`INSERT INTO ` + table + ` VALUES (2, 'pear', 2.00, NULL, 11), (7, 'stale', 1, NULL, 3)`); err != nil {
		t.Fatal(err)
	}
	dst := dsn + "?table=" + table + "&version=ver"
	mustCLI(t, 1, "", "diff", src, dst)
	mustCLI(t, 0, "", "sync", src, dst, "--force")
	mustCLI(t, 0, "", "diff", src, dst)
	if a, b := mustCLI(t, 0, "", "root", src), mustCLI(t, 0, "", "root", dst); a != b {
		t.Fatalf("roots differ after sync: %s vs %s", a, b)
	}
	var n int
	var price string
	if err := pg.QueryRow(`SELECT count(*), max(price)::text FROM `+table).Scan(&n, &price); err != nil || n != 2 || price != "2.00" {
		t.Fatalf("postgres holds %d rows, max price %s (%v); want 2 rows, 2.00", n, price, err)
	}
}

func TestSQLIndexCLI(t *testing.T) {
	ep, db := sqliteTable(t, "")
	mustCLI(t, 0, itemLines, "load", ep)
	// Outside WAL mode sessions would scan: install says so.
	code, _, errOut := runCLI(t, "", "index", "install", ep)
	if code != 0 || !strings.Contains(errOut, "PRAGMA journal_mode=WAL") {
		t.Fatalf("install outside WAL mode: exit %d, %q", code, errOut)
	}
	mustCLI(t, 0, "", "index", "uninstall", ep)
	if _, err := db.Exec("PRAGMA journal_mode=WAL"); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "", "index", "install", ep, "--json")
	if code != 0 || !strings.Contains(out, `"entries": 2`) || errOut != "" {
		t.Fatalf("install: exit %d, %s, %q", code, out, errOut)
	}
	if _, err := db.Exec(`UPDATE items SET name = 'quince' WHERE id = 2`); err != nil { // bypasses the version
		t.Fatal(err)
	}
	maintained := mustCLI(t, 0, "", "root", ep+"&mode=maintained")
	if scan := mustCLI(t, 0, "", "root", ep+"&mode=scan"); maintained != scan {
		t.Fatalf("maintained root %s, scan root %s", maintained, scan)
	}
	if out := mustCLI(t, 0, "", "index", "verify", ep); !strings.Contains(out, "matches") {
		t.Fatalf("verify: %s", out)
	}
	if out := mustCLI(t, 0, "", "index", "uninstall", ep); !strings.Contains(out, "removed the index") {
		t.Fatalf("uninstall: %s", out)
	}
	if out := mustCLI(t, 0, "", "index", "uninstall", ep); !strings.Contains(out, "no index was installed") {
		t.Fatalf("uninstall again: %s", out) // it said "removed" again
	}
	code, _, errOut = runCLI(t, "", "root", ep+"&mode=maintained")
	if code != 2 || !strings.Contains(errOut, "index install") {
		t.Fatalf("maintained root without an index: exit %d, %q", code, errOut)
	}
	b := store(t, "b")
	mustCLI(t, 0, rowsJSONL(1, 1), "load", b)
	code, _, errOut = runCLI(t, "", "index", "uninstall", b)
	if code != 2 || !strings.Contains(errOut, "only SQL tables") {
		t.Fatalf("index uninstall on badger: exit %d, %q", code, errOut)
	}
}

// TestServedSQLNamesKeyColumns: a diff against a served SQL table, from either side, names
// rows by the table's key columns (the server describes its keys in a header), not by the
// key's bytes (0x8000000000000002).
func TestServedSQLNamesKeyColumns(t *testing.T) {
	a, _ := sqliteTable(t, "")
	b := store(t, "b")
	mustCLI(t, 0, itemLines, "load", a)
	mustCLI(t, 0, "", "sync", a, b)
	mustCLI(t, 0, `{"columns": {"id": 2, "name": "pear", "price": 3, "seen": null}, "version": 20}`+"\n", "load", a)
	url, _ := startServe(t, a, "--listen", "127.0.0.1:0", "--read-only")
	for _, args := range [][]string{{"diff", url, b}, {"diff", b, url}} {
		if out := mustCLI(t, 1, "", args...); !strings.Contains(out, "changed  id=2 ") {
			t.Errorf("%s: does not name id=2:\n%s", strings.Join(args, " "), out)
		}
	}
}

// TestServeMaintainedSQL: a served PostgreSQL table in maintained mode holds its
// snapshot's read transaction across the session's requests. The server opened it with
// the open request's context, whose end rolled the transaction back, so the next round
// failed with "transaction has already been committed or rolled back". 20,000 rows make
// the descent take rounds after the open's.
func TestServeMaintainedSQL(t *testing.T) {
	dsn := pgDSN(t)
	pg, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	table := fmt.Sprintf("rc_serve_%d", time.Now().UnixNano()%1e12)
	if _, err := pg.Exec(`CREATE TABLE ` + table + ` (id bigint PRIMARY KEY, name text NOT NULL, price numeric(10,2), seen timestamptz, ver bigint NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	defer pg.Exec("DROP TABLE " + table)
	if _, err := pg.Exec(`INSERT INTO ` + table + ` SELECT g, 'n' || g, g, NULL, g FROM generate_series(1, 20000) g`); err != nil {
		t.Fatal(err)
	}
	ep := dsn + "?table=" + table + "&version=ver"
	mustCLI(t, 0, "", "index", "install", ep)
	defer mustCLI(t, 0, "", "index", "uninstall", ep)
	other, _ := sqliteTable(t, "")
	mustCLI(t, 0, "", "sync", ep, other)
	mustCLI(t, 0, `{"columns": {"id": 250, "name": "changed", "price": 1, "seen": null}, "version": 9999}`+"\n", "load", other)

	url, _ := startServe(t, ep+"&mode=maintained", "--listen", "127.0.0.1:0")
	for _, args := range [][]string{{"diff", url, other}, {"diff", other, url}} {
		if out := mustCLI(t, 1, "", args...); !strings.Contains(out, "changed  id=250 ") {
			t.Fatalf("%v:\n%s", args, out)
		}
	}
}

// TestSyncCreatesSQLTarget: sync into a SQL table that does not exist (a SQLite file that
// does not exist either) creates it with the SQL source's columns, in the same engine or
// another, and fills it; a dry run creates nothing; a column the target's engine has no
// type for refuses the sync before anything is created.
func TestSyncCreatesSQLTarget(t *testing.T) {
	src, _ := sqliteTable(t, "")
	mustCLI(t, 0, itemLines, "load", src)
	file := filepath.Join(t.TempDir(), "new", "copy.db")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	dst := "sqlite://" + file + "?table=copy&version=ver"
	if code, out, errOut := runCLI(t, "", "sync", "--dry-run", "--json", src, dst); code != 0 || !strings.Contains(errOut, "does not exist yet") || !strings.Contains(out, `"upserted": 2`) {
		t.Fatalf("dry run into a missing table: exit %d, %s, %q", code, out, errOut)
	}
	if _, err := os.Stat(file); err == nil {
		t.Fatal("a dry run created the SQLite file")
	}
	code, _, errOut := runCLI(t, "", "sync", src, dst)
	if code != 0 || !strings.Contains(errOut, "created table copy") {
		t.Fatalf("sync into a missing SQLite file: exit %d, %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, "", "sync", src, dst); code != 0 || strings.Contains(errOut, "created") {
		t.Fatalf("second sync: exit %d, %q", code, errOut)
	}
	want := mustCLI(t, 0, "", "root", src)
	if got := mustCLI(t, 0, "", "root", dst); got != want {
		t.Fatalf("root %s, want %s", got, want)
	}

	// A target URL whose version column is not the source's is refused before anything is
	// made (the copy would be in another ordering, and every session refused), dry run
	// or not, saying what to write.
	for _, c := range []struct{ url, want string }{
		{"sqlite://" + file + "?table=other", "add &version=ver to this URL"},
		{"sqlite://" + file + "?table=other&version=id", "write &version=ver in this URL, not &version=id"},
	} {
		for _, dry := range []string{"--dry-run", "--force"} {
			if code, _, errOut := runCLI(t, "", "sync", dry, src, c.url); code != exitError || !strings.Contains(errOut, c.want) || strings.Contains(errOut, "created") {
				t.Errorf("sync %s into %s: exit %d, %q", dry, c.url, code, errOut)
			}
		}
	}
	if code, _, errOut := runCLI(t, "", "sync", strings.Replace(src, "&version=ver", "", 1), "sqlite://"+file+"?table=other&version=ver"); code != exitError || !strings.Contains(errOut, "leave &version=ver out of this URL") {
		t.Errorf("sync from a key-ordered source into a version-ordered URL: exit %d, %q", code, errOut)
	}
	if code, out, _ := runCLI(t, "", "root", "sqlite://"+file+"?table=other"); code != exitError {
		t.Errorf("a refused sync made its table: root exit %d, %q", code, out)
	}

	// A sync that fails after creating its table drops it again, so that a corrected
	// retry creates it anew (here a view whose key= repeats).
	vfile := filepath.Join(t.TempDir(), "view.db")
	vdb, err := sql.Open("sqlite", vfile)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"CREATE TABLE t (id integer PRIMARY KEY, grp text, ver bigint)", "INSERT INTO t VALUES (1, 'a', 1), (2, 'a', 2), (3, 'b', 3)", "CREATE VIEW v AS SELECT id, grp, ver FROM t"} {
		if _, err := vdb.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	vdb.Close()
	vcopy := filepath.Join(filepath.Dir(file), "vcopy.db")
	copyURL := "sqlite://" + vcopy + "?table=vcopy&version=ver"
	code, _, errOut = runCLI(t, "", "sync", "sqlite://"+vfile+"?table=v&key=grp&version=ver", copyURL)
	if code != 2 || !strings.Contains(errOut, "more than one row") || !strings.Contains(errOut, "is dropped again") {
		t.Fatalf("sync from a view whose key repeats: exit %d, %q", code, errOut)
	}
	if _, err := os.Stat(vcopy); !os.IsNotExist(err) {
		t.Fatalf("the failed sync left the SQLite file it made: %v", err)
	}
	if code, _, errOut := runCLI(t, "", "sync", "sqlite://"+vfile+"?table=v&key=id&version=ver", copyURL); code != 0 || !strings.Contains(errOut, "created table vcopy") {
		t.Fatalf("the corrected retry: exit %d, %q", code, errOut)
	}

	// Across engines: SQLite -> PostgreSQL -> MySQL -> a new SQLite table, each created.
	pg, my := pgDSN(t), mysqlDSN(t)
	suffix := fmt.Sprintf("%d", time.Now().UnixNano()%1e12)
	pgTable, myTable := "rc_create_"+suffix, "rc_create_"+suffix
	pdb, err := sql.Open("pgx", pg)
	if err != nil {
		t.Fatal(err)
	}
	defer pdb.Close()
	defer pdb.Exec("DROP TABLE IF EXISTS " + pgTable + ", " + pgTable + "_arr")
	myCfg, err := sqlep.ParseURL(my + "?table=x")
	if err != nil {
		t.Fatal(err)
	}
	mdb, err := sql.Open("mysql", myCfg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer mdb.Close()
	defer mdb.Exec("DROP TABLE IF EXISTS " + myTable)
	chain := []string{src, pg + "?table=" + pgTable + "&version=ver", my + "?table=" + myTable + "&version=ver", "sqlite://" + file + "?table=again&version=ver"}
	for i := 1; i < len(chain); i++ {
		code, _, errOut := runCLI(t, "", "sync", chain[i-1], chain[i])
		if code != 0 || !strings.Contains(errOut, "created table") {
			t.Fatalf("sync %s -> %s: exit %d, %q", chain[i-1], chain[i], code, errOut)
		}
		if got := mustCLI(t, 0, "", "root", chain[i]); got != want {
			t.Fatalf("%s: root %s, want %s", chain[i], got, want)
		}
	}

	if _, err := pdb.Exec("CREATE TABLE " + pgTable + "_arr (id int PRIMARY KEY, tags text[])"); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI(t, "", "sync", pg+"?table="+pgTable+"_arr", my+"?table="+myTable+"_arr")
	if code != 2 || !strings.Contains(errOut, "column tags is PostgreSQL's text[], which MySQL has no type for") {
		t.Fatalf("text[] into MySQL: exit %d, %q", code, errOut)
	}
	var n int
	if err := mdb.QueryRow("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?", myTable+"_arr").Scan(&n); err != nil || n != 0 {
		t.Fatalf("the refused sync created a table (%d, %v)", n, err)
	}
}

// TestBadgerReplicaNamesKeysAsTable: a Badger store synced from a SQL table (or from such
// a store) records the table's key format, so that diffs between Badger replicas name
// rows by the table's key columns, not by the keys' bytes.
func TestBadgerReplicaNamesKeysAsTable(t *testing.T) {
	lite, db := sqliteTable(t, "")
	mustCLI(t, 0, itemLines, "load", lite)
	b, c := store(t, "b"), store(t, "c")
	mustCLI(t, 0, "", "sync", lite, b)
	mustCLI(t, 0, "", "sync", b, c)
	if _, err := db.Exec("UPDATE items SET name = 'plum', ver = 20 WHERE id = 2"); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, 0, "", "sync", lite, b)
	// diffKeys is how `diff a b --json` names the differing keys.
	diffKeys := func(a, b string) []string {
		t.Helper()
		var rep struct {
			Differences []struct{ Key string } `json:"differences"`
		}
		if err := json.Unmarshal([]byte(mustCLI(t, 1, "", "diff", a, b, "--json")), &rep); err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, d := range rep.Differences {
			keys = append(keys, d.Key)
		}
		return keys
	}
	for _, pair := range [][2]string{{b, c}, {c, b}} {
		if keys := diffKeys(pair[0], pair[1]); len(keys) != 1 || keys[0] != "id=2" {
			t.Fatalf("diff %s %s: differences %q, want one named id=2", pair[0], pair[1], keys)
		}
	}

	// A mirror job of `reconcile run` records it too.
	d, empty := store(t, "d"), store(t, "empty")
	mustCLI(t, 0, "", "load", empty)
	cfg := writeConfig(t, `
jobs:
  - name: mirror
    source: "`+lite+`"
    target: "`+d+`"
    mode: mirror
    interval: 1h
`)
	mustCLI(t, 0, "", "run", "--config", cfg, "--once")
	for _, pair := range [][2]string{{d, empty}, {empty, d}} {
		if keys := diffKeys(pair[0], pair[1]); len(keys) == 0 || !strings.HasPrefix(keys[0], "id=") {
			t.Fatalf("diff %s %s after a run job: differences %q, want keys named id=", pair[0], pair[1], keys)
		}
	}
}

// TestLoadGeneratedColumn: load may leave a generated column out (the engine computes it),
// and a value given for one is not written.
func TestLoadGeneratedColumn(t *testing.T) {
	file := filepath.Join(t.TempDir(), "g.db")
	db, err := sql.Open("sqlite", file)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE t (id integer PRIMARY KEY, a integer, b integer GENERATED ALWAYS AS (a * 2) VIRTUAL)"); err != nil {
		t.Fatal(err)
	}
	ep := "sqlite://" + file + "?table=t"
	mustCLI(t, 0, `{"columns": {"id": 1, "a": 5}}`+"\n"+`{"columns": {"id": 2, "a": 7, "b": 99}}`+"\n", "load", ep)
	if got, want := mustCLI(t, 0, "", "dump", ep), `{"version":0,"columns":{"id":1,"a":5,"b":10}}`+"\n"+`{"version":0,"columns":{"id":2,"a":7,"b":14}}`+"\n"; got != want {
		t.Fatalf("dump:\n%s\nwant:\n%s", got, want)
	}
}

// TestUnreadableSourceRow: a SQLite source whose int column holds text in one row syncs
// the rest, in process and served (pulled from the server, which refuses the row's read
// with a 422): exit 3, the row quarantined with what is wrong and what to do, the target's
// copy of it left alone.
func TestUnreadableSourceRow(t *testing.T) {
	src, db := sqliteTable(t, "")
	mustCLI(t, 0, itemLines, "load", src)
	if _, err := db.Exec("UPDATE items SET price = 'cheap' WHERE id = 2"); err != nil {
		t.Fatal(err)
	}
	// price is decimal(10,2): SQLite keeps 'cheap' as text.
	url, _ := startServe(t, src, "--listen", "127.0.0.1:0", "--read-only")
	for _, from := range []string{src, url} {
		dst := store(t, "dst")
		code, out, errOut := runCLI(t, "", "sync", from, dst, "--json")
		var rep struct {
			Upserted    int `json:"upserted"`
			Quarantined []struct {
				Key   string `json:"key"`
				Error string `json:"error"`
			} `json:"quarantined_rows"`
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitPartial || rep.Upserted != 1 || len(rep.Quarantined) != 1 ||
			rep.Quarantined[0].Key != "id=2" || !strings.Contains(rep.Quarantined[0].Error, `"cheap"`) || !strings.Contains(rep.Quarantined[0].Error, "correct the row") {
			t.Fatalf("sync from %s: exit %d, %v\n%s\n%s", from, code, err, out, errOut)
		}
	}
}
