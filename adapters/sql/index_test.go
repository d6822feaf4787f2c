package sql

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reconcile-dev/reconcile/reconcile"
)

// TestIndexFollowsNativeWrites writes through each engine's own statements (inserts,
// updates that bump the version, updates that do not, key changes, deletes) between
// sessions, and checks after each round that the maintained index answers exactly as a
// scan of the same table does, and that verify finds nothing wrong.
func TestIndexFollowsNativeWrites(t *testing.T) {
	ctx := context.Background()
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) {
			name := createPeople(t, e)
			insertPeople(t, e, name, randomPeople(rand.New(rand.NewPCG(1, 1)), 2000, 1))
			maintained := openTable(t, e.url(name, "version=ver&mode=maintained"))
			scan := openTable(t, e.url(name, "version=ver&mode=scan"))
			if n, err := maintained.InstallIndex(ctx); err != nil || n != 2000 {
				t.Fatalf("install: %d entries, %v", n, err)
			}
			t.Cleanup(func() { maintained.UninstallIndex(ctx) })
			rng := rand.New(rand.NewPCG(2, 2))
			for round := range 6 {
				var stmts []string
				for range 40 {
					id := 1 + rng.IntN(2200)
					switch rng.IntN(5) {
					case 0:
						stmts = append(stmts, fmt.Sprintf("DELETE FROM %s WHERE id = %d", name, id))
					case 1: // a write that bypasses the version column
						stmts = append(stmts, fmt.Sprintf("UPDATE %s SET name = 'quiet %d' WHERE id = %d", name, rng.IntN(1000), id))
					case 2:
						stmts = append(stmts, fmt.Sprintf("UPDATE %s SET score = %d.5, ver = ver + 1 WHERE id = %d", name, rng.IntN(1000), id))
					case 3: // the key itself changes
						stmts = append(stmts, fmt.Sprintf("UPDATE %s SET id = %d WHERE id = %d", name, 100000+rng.IntN(1e6), id))
					default:
						stmts = append(stmts, fmt.Sprintf("INSERT INTO %s (id, name, score, at, ver) VALUES (%d, 'new', 1.5, '2024-01-01 00:00:00', %d)", name, 5000+rng.IntN(1e6), rng.IntN(1e6)))
					}
				}
				for _, s := range stmts {
					e.db.Exec(s) // duplicate keys may fail; that is fine
				}
				rep, err := reconcile.Run(ctx, scan, maintained, reconcile.Options{Mode: reconcile.Diff})
				if err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				if d := rep.OnlySource + rep.OnlyTarget + rep.Changed; d != 0 {
					t.Fatalf("round %d: the maintained index differs from a scan of the same table in %d keys", round, d)
				}
				// And with the maintained index as the session's source (its SplitCuts).
				rep, err = reconcile.Run(ctx, maintained, scan, reconcile.Options{Mode: reconcile.Diff})
				if err != nil || rep.OnlySource+rep.OnlyTarget+rep.Changed != 0 {
					t.Fatalf("round %d, maintained as source: %v, %d differences", round, err, rep.OnlySource+rep.OnlyTarget+rep.Changed)
				}
				mustVerify(t, maintained, fmt.Sprintf("round %d", round))
			}
		})
	}
}

// TestIndexDetectsRestore: a table truncated (PostgreSQL, MariaDB) or dropped and recreated
// (every engine) behind the index's back makes sessions fail with a clear error instead
// of answering from a stale index.
func TestIndexDetectsRestore(t *testing.T) {
	ctx := context.Background()
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) {
			name := createPeople(t, e)
			insertPeople(t, e, name, randomPeople(rand.New(rand.NewPCG(3, 3)), 50, 1))
			tb := openTable(t, e.url(name, "version=ver"))
			if _, err := tb.InstallIndex(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tb.UninstallIndex(ctx) })
			if _, err := reconcile.Root(ctx, tb, 0); err != nil {
				t.Fatal(err)
			}
			if e.name != "sqlite" {
				e.exec(t, "TRUNCATE TABLE "+name)
				insertPeople(t, e, name, randomPeople(rand.New(rand.NewPCG(3, 3)), 10, 1))
				_, err := reconcile.Root(ctx, tb, 0)
				if err == nil || !strings.Contains(err.Error(), "stale") || !strings.Contains(err.Error(), "index install") {
					t.Fatalf("after TRUNCATE: %v; want a stale-index error", err)
				}
				if _, err := tb.InstallIndex(ctx); err != nil {
					t.Fatal(err)
				}
				if info, err := reconcile.Root(ctx, tb, 0); err != nil || info.Root.Count != 10 {
					t.Fatalf("after reinstall: %+v, %v", info.Root, err)
				}
			}
			if e.name == "postgres" {
				// Triggers disabled, or disabled and enabled again, may have let writes go
				// unlogged: the message says which (it said "missing or disabled").
				for _, c := range []struct{ sql, want string }{
					{"ALTER TABLE " + name + " DISABLE TRIGGER USER", "its triggers are disabled"},
					{"ALTER TABLE " + name + " ENABLE TRIGGER USER", "its triggers were disabled and enabled again"},
				} {
					e.exec(t, c.sql)
					if _, err := reconcile.Root(ctx, tb, 0); err == nil || !strings.Contains(err.Error(), c.want) {
						t.Fatalf("after %s: %v; want %q", c.sql, err, c.want)
					}
				}
			}
			e.exec(t, "DROP TABLE "+name)
			createPeopleNamed(t, e, name)
			_, err := reconcile.Root(ctx, tb, 0)
			if err == nil || !strings.Contains(err.Error(), "stale") || !strings.Contains(err.Error(), "its triggers are missing") && !strings.Contains(err.Error(), "not the one indexed") {
				t.Fatalf("after DROP and CREATE: %v; want a stale-index error", err)
			}
		})
	}
}

// TestIndexSessions: two maintained tables with drift between them; the differences a
// session finds between the indexes are exactly those between scans of the same tables,
// and a mirror sync leaves them equal.
func TestIndexSessions(t *testing.T) {
	ctx := context.Background()
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) {
			a, b := createPeople(t, e), createPeople(t, e)
			people := randomPeople(rand.New(rand.NewPCG(11, 11)), 4000, 1)
			insertPeople(t, e, a, people)
			insertPeople(t, e, b, people)
			A := openTable(t, e.url(a, "version=ver&mode=maintained"))
			B := openTable(t, e.url(b, "version=ver&mode=maintained"))
			for _, tb := range []*Table{A, B} {
				if _, err := tb.InstallIndex(ctx); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { tb.UninstallIndex(ctx) })
			}
			e.exec(t, "UPDATE "+b+" SET name = 'x', ver = ver + 1 WHERE id % 97 = 0",
				"DELETE FROM "+b+" WHERE id % 89 = 1",
				"INSERT INTO "+b+" (id, name, score, at, ver) VALUES (900001, 'n', 1, '2024-01-01 00:00:00', 5)")
			As := openTable(t, e.url(a, "version=ver&mode=scan"))
			Bs := openTable(t, e.url(b, "version=ver&mode=scan"))
			want, err := reconcile.Run(ctx, As, Bs, reconcile.Options{Mode: reconcile.Diff})
			if err != nil {
				t.Fatal(err)
			}
			got, err := reconcile.Run(ctx, A, B, reconcile.Options{Mode: reconcile.Diff})
			if err != nil {
				t.Fatal(err)
			}
			if got.OnlySource != want.OnlySource || got.OnlyTarget != want.OnlyTarget || got.Changed != want.Changed || want.Changed == 0 {
				t.Fatalf("maintained found %d/%d/%d, scan %d/%d/%d", got.OnlySource, got.OnlyTarget, got.Changed, want.OnlySource, want.OnlyTarget, want.Changed)
			}
			syncAndCheck(t, "maintained to maintained", A, B, -1)
			mustVerify(t, B, "after sync")
		})
	}
}

// TestCatchUpKeepsLateCommits: a writer's log row takes its sequence number when it is
// written, not when its transaction commits. A catch-up that has read the log up to a
// later number, then sees the writer commit, must leave that row in the log for the next
// catch-up: deleting every row up to the highest number it read would drop a write it
// never applied, and the index would miss it for good.
func TestCatchUpKeepsLateCommits(t *testing.T) {
	ctx := context.Background()
	for _, e := range serverEngines(t) {
		t.Run(e.name, func(t *testing.T) {
			name, tb := maintainedPeople(t, e, 100)
			late, err := e.db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer late.Rollback()
			ins := "INSERT INTO " + name + " (id, name, score, at, ver) VALUES (%d, 'late', 1.5, '2024-01-01 00:00:00', 7)"
			if _, err := late.Exec(fmt.Sprintf(ins, 9001)); err != nil { // logged first, committed last
				t.Fatal(err)
			}
			e.exec(t, fmt.Sprintf(ins, 9002))
			tb.afterLogRead = func() {
				tb.afterLogRead = nil
				if err := late.Commit(); err != nil {
					t.Error(err)
				}
			}
			if _, err := tb.catchUp(ctx); err != nil {
				t.Fatal(err)
			}
			mustVerify(t, tb, "after a writer committed during a catch-up") // which catches up again first
		})
	}
}

// TestCatchUpUnderConcurrentWriters: writers commit transactions of a few statements, held
// open a moment so that their log rows commit out of number order, while catch-ups run
// one after another; once the writers stop, the index must match the table.
func TestCatchUpUnderConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	for _, e := range serverEngines(t) {
		t.Run(e.name, func(t *testing.T) {
			name, tb := maintainedPeople(t, e, 500)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var committed atomic.Int64
			for w := range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(w), 9))
					for n := 0; ; n++ {
						select {
						case <-stop:
							return
						default:
						}
						tx, err := e.db.BeginTx(ctx, nil)
						if err != nil {
							t.Error(err)
							return
						}
						for range 1 + rng.IntN(3) {
							if _, err = tx.Exec(randomWrite(rng, name, 600, w, n)); err != nil {
								break // a deadlock between writers, say: this transaction rolls back
							}
						}
						time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
						if err != nil {
							tx.Rollback()
						} else if tx.Commit() == nil {
							committed.Add(1)
						}
					}
				}()
			}
			for range 40 {
				if _, err := tb.catchUp(ctx); err != nil {
					t.Error(err)
					break
				}
			}
			close(stop)
			wg.Wait()
			mustVerify(t, tb, fmt.Sprintf("after %d writes committed beside catch-ups", committed.Load()))
			t.Logf("%d writes committed beside 40 catch-ups", committed.Load())
		})
	}
}

// TestSyncUnderConcurrentWriters: mirror syncs run one after another from a maintained
// PostgreSQL table to a maintained MariaDB table while writers change both (the target's
// writes are the races a mirror must not overwrite blindly). Each sync either finishes
// (possibly partial: raced rows, or a target that moved on) or fails cleanly; once the
// writers stop, one sync makes the tables equal and both indexes match their tables.
func TestSyncUnderConcurrentWriters(t *testing.T) {
	pg, my, _ := byName(t)
	if pg == nil || my == nil {
		t.Skip("needs RECONCILE_TEST_PG_DSN and RECONCILE_TEST_MYSQL_DSN")
	}
	ctx := context.Background()
	var tables [2]*Table
	var names [2]string
	for i, e := range []*engine{pg, my} {
		names[i], tables[i] = maintainedPeople(t, e, 800)
	}
	src, dst := tables[0], tables[1]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w, e := range []*engine{pg, pg, my} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 4))
			name := names[0]
			if e == my {
				name = names[1]
			}
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				e.db.Exec(randomWrite(rng, name, 900, w, n))
				time.Sleep(time.Millisecond)
			}
		}()
	}
	var partial, failed int
	for range 15 {
		rep, err := reconcile.Run(ctx, src, dst, reconcile.Options{Mode: reconcile.Mirror, Force: true})
		switch {
		case err != nil:
			failed++
			t.Logf("sync beside writers: %v", err)
		case rep.Partial():
			partial++
			t.Logf("partial: upserted %d, deleted %d, raced %d, diverged %v", rep.Upserted, rep.Deleted, rep.Raced, rep.Diverged())
		}
	}
	close(stop)
	wg.Wait()
	syncAndCheck(t, "after the writers stopped", src, dst, -1)
	for _, tb := range tables {
		mustVerify(t, tb, tb.cfg.Dialect)
	}
	if failed > 0 {
		t.Errorf("%d of 15 syncs beside writers failed", failed)
	}
	t.Logf("15 syncs beside writers: %d partial", partial)
}

// TestMaintainedReadOnlyUser: a user who may only read (monitoring credentials, say) runs
// sessions on a maintained table whose log is empty, as no write is needed; with writes
// logged it gets an error that names the privileges, until a session of a user who has
// them catches up. MySQL and MariaDB show triggers only to users with the TRIGGER
// privilege and InnoDB's table ids only with PROCESS: each missing one is named.
func TestMaintainedReadOnlyUser(t *testing.T) {
	ctx := context.Background()
	for _, e := range serverEngines(t) {
		t.Run(e.name, func(t *testing.T) {
			name, admin := maintainedPeople(t, e, 50)
			user := fmt.Sprintf("rc_ro_%d_%d", time.Now().UnixNano()%1e9, tableSeq.Add(1))
			u, err := url.Parse(e.base)
			if err != nil {
				t.Fatal(err)
			}
			u.User = url.User(user)
			roURL := u.String() + "?table=" + name + "&version=ver&mode=maintained"
			root := func() (string, error) {
				ro, err := Open(ctx, mustParse(t, roURL))
				if err != nil {
					return "", err
				}
				defer ro.Close()
				info, err := reconcile.Root(ctx, ro, 0)
				return reconcile.FormatFingerprint(info.Root.Fingerprint()), err
			}
			want := func(substr string) {
				t.Helper()
				if _, err := root(); err == nil || !strings.Contains(err.Error(), substr) {
					t.Fatalf("read-only session: %v, want an error that says %q", err, substr)
				}
			}
			if e.name == "postgres" {
				e.exec(t, "CREATE ROLE "+user+" LOGIN", "GRANT SELECT ON ALL TABLES IN SCHEMA public TO "+user)
				t.Cleanup(func() { e.db.Exec("DROP OWNED BY " + user); e.db.Exec("DROP ROLE " + user) })
			} else {
				e.exec(t, "CREATE USER '"+user+"'@'%'", "GRANT SELECT ON "+u.Path[1:]+".* TO '"+user+"'@'%'")
				t.Cleanup(func() { e.db.Exec("DROP USER '" + user + "'@'%'") })
				want("TRIGGER privilege")
				e.exec(t, "GRANT TRIGGER ON "+name+" TO '"+user+"'@'%'")
				want("PROCESS privilege")
				e.exec(t, "GRANT PROCESS ON *.* TO '"+user+"'@'%'")
			}
			got, err := root()
			if err != nil {
				t.Fatalf("read-only session on a quiet table: %v", err)
			}
			e.exec(t, "UPDATE "+name+" SET ver = ver + 1 WHERE id = 3")
			want("needs INSERT, UPDATE and DELETE")
			info, err := reconcile.Root(ctx, admin, 0) // catches up
			if err != nil {
				t.Fatal(err)
			}
			if got, err = root(); err != nil || got != reconcile.FormatFingerprint(info.Root.Fingerprint()) || got == "" {
				t.Fatalf("read-only session after a catch-up: %s, %v", got, err)
			}
		})
	}
}

func mustParse(t *testing.T, u string) Config {
	t.Helper()
	cfg, err := ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// maintainedPeople creates a people table of n random rows (the same n rows on every
// engine) with a maintained index, removed when the test ends.
func maintainedPeople(t *testing.T, e *engine, n int) (string, *Table) {
	t.Helper()
	name := createPeople(t, e)
	insertPeople(t, e, name, randomPeople(rand.New(rand.NewPCG(1, 1)), n, 1))
	tb := openTable(t, e.url(name, "version=ver&mode=maintained"))
	if _, err := tb.InstallIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.UninstallIndex(context.Background()) })
	return name, tb
}

// serverEngines is engines without SQLite, for tests that need what only a server has:
// writers committing beside each other, users and privileges.
func serverEngines(t *testing.T) []*engine {
	var out []*engine
	for _, e := range engines(t) {
		if e.name != "sqlite" {
			out = append(out, e)
		}
	}
	return out
}

// mustVerify fails the test unless tb's maintained index, caught up, matches the table.
func mustVerify(t *testing.T, tb *Table, when string) {
	t.Helper()
	if st, err := tb.VerifyIndex(context.Background()); err != nil || !st.OK() {
		t.Fatalf("%s: verify: %+v, %v", when, st, err)
	}
}

// randomWrite is writer w's n-th statement on a people table: a delete or a version bump
// of one of ids 1..ids (which may hold no row), or an insert of a key of its own.
func randomWrite(rng *rand.Rand, name string, ids, w, n int) string {
	id := 1 + rng.IntN(ids)
	switch rng.IntN(3) {
	case 0:
		return fmt.Sprintf("DELETE FROM %s WHERE id = %d", name, id)
	case 1:
		return fmt.Sprintf("UPDATE %s SET name = 'w%d', ver = ver + 1 WHERE id = %d", name, n, id)
	}
	return fmt.Sprintf("INSERT INTO %s (id, name, score, at, ver) VALUES (%d, 'w', 1.5, '2024-01-01 00:00:00', 3)", name, 10000+w*100000+n)
}

// TestMaintainedOddTableName: a MySQL table whose name holds a hyphen and a space takes a
// maintained index: InnoDB's catalog spells such names encoded (my@002dtable), and the
// identity check that tells a truncated table finds it.
func TestMaintainedOddTableName(t *testing.T) {
	_, my, _ := bothServers(t)
	ctx := context.Background()
	name := my.table(t) + "-odd name"
	my.exec(t, "CREATE TABLE `"+name+"` (id bigint PRIMARY KEY, v text, ver bigint NOT NULL)",
		"INSERT INTO `"+name+"` VALUES (1, 'a', 1), (2, 'b', 2)")
	t.Cleanup(func() { my.db.Exec("DROP TABLE IF EXISTS `" + name + "`") })
	M := openTable(t, my.url(url.QueryEscape(name), "version=ver&mode=maintained"))
	if _, err := M.InstallIndex(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { M.UninstallIndex(ctx) })
	my.exec(t, "INSERT INTO `"+name+"` VALUES (3, 'c', 3)")
	mustVerify(t, M, "after a write")
	my.exec(t, "TRUNCATE TABLE `"+name+"`")
	if _, err := reconcile.Root(ctx, M, 0); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("a session after TRUNCATE: %v, want the index refused as stale", err)
	}
}

// TestVerifyWhileWritten: rows written after VerifyIndex's catch-up are in the index log,
// not the index, in the check's snapshot; they are left out of the comparison (and
// counted as pending), so a table being written does not look broken.
func TestVerifyWhileWritten(t *testing.T) {
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) {
			name, tb := maintainedPeople(t, e, 200)
			rng := rand.New(rand.NewPCG(7, 7))
			tb.afterVerifyCatchUp = func() {
				for i := range 30 {
					e.exec(t, randomWrite(rng, name, 200, 1, i))
				}
			}
			st, err := tb.VerifyIndex(context.Background())
			if err != nil || !st.OK() || st.Pending == 0 {
				t.Fatalf("verify with writes after its catch-up: %+v, %v; want OK with pending rows", st, err)
			}
			tb.afterVerifyCatchUp = nil
			if st := mustVerifyStatus(t, tb); st.Pending != 0 || st.CaughtUp == 0 {
				t.Fatalf("verify after the writes: %+v; want them caught up, none pending", st)
			}
		})
	}
}

func mustVerifyStatus(t *testing.T, tb *Table) IndexStatus {
	t.Helper()
	st, err := tb.VerifyIndex(context.Background())
	if err != nil || !st.OK() {
		t.Fatalf("verify: %+v, %v", st, err)
	}
	return st
}

// TestCreateOverOrphanIndex: a table dropped without `index uninstall` leaves its index
// tables; a table CreateTable makes under the same name (a sync re-creating a replica)
// removes them, so it opens as a plain table rather than one whose index is stale.
func TestCreateOverOrphanIndex(t *testing.T) {
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) {
			name, tb := maintainedPeople(t, e, 20)
			src := openTable(t, e.url(name, "version=ver"))
			tb.Close()
			e.exec(t, "DROP TABLE "+name)
			cfg := mustParse(t, e.url(name, "version=ver"))
			if err := CreateTable(context.Background(), cfg, src); err != nil {
				t.Fatal(err)
			}
			again := openTable(t, e.url(name, "version=ver"))
			snap, err := again.Open(context.Background(), time.Now().UnixNano())
			if err != nil {
				t.Fatalf("open the re-created table: %v", err)
			}
			snap.Close()
			if ok, err := again.indexInstalled(context.Background()); err != nil || ok {
				t.Fatalf("the dropped table's index is still there: %v, %v", ok, err)
			}
		})
	}
}

// TestInstallInterrupted: an install whose context ends while it builds (an interrupt)
// removes the tables and triggers it made, so that no trigger goes on logging writes with
// no index to fold them into, and says so.
func TestInstallInterrupted(t *testing.T) {
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) {
			name := createPeople(t, e)
			insertPeople(t, e, name, randomPeople(rand.New(rand.NewPCG(1, 1)), 200, 1))
			tb := openTable(t, e.url(name, "version=ver&mode=maintained"))
			ctx, cancel := context.WithCancel(context.Background())
			afterIndexDDL = cancel
			t.Cleanup(func() { afterIndexDDL = nil; tb.UninstallIndex(context.Background()) })
			_, err := tb.InstallIndex(ctx)
			if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "nothing is left installed") {
				t.Fatalf("install interrupted: %v", err)
			}
			if ok, err := tb.IndexInstalled(context.Background()); err != nil || ok {
				t.Fatalf("after the interrupted install, installed = %v, %v", ok, err)
			}
			if ok, err := tb.triggersInstalled(context.Background(), tb.db); err != nil || ok {
				t.Fatalf("after the interrupted install, triggers = %v, %v", ok, err)
			}
			if _, err := e.db.Exec(fmt.Sprintf("INSERT INTO %s (id, name, score, at, ver) VALUES (9999, 'late', 1.5, '2024-01-01 00:00:00', 1)", name)); err != nil {
				t.Fatalf("a write after the interrupted install: %v", err)
			}
		})
	}
}

// TestMaintainedSyncModel: rounds of random native writes on both sides of a mirror
// between two maintained tables of one engine, in version order and in key order
// (inserts, updates with and without a new version, versions going backwards, deletes,
// key changes, and now and then the source put back to an older copy of some rows, as a
// restore from backup does), each round ended by a sync checked against a full
// comparison of the rows (syncAndCheck) and both indexes verified against their tables.
// The sync's own writes reach the target's index through its triggers, as any writer's do.
func TestMaintainedSyncModel(t *testing.T) {
	for _, e := range engines(t) {
		for _, order := range []string{"version=ver&", ""} {
			name := e.name + "/key-order"
			if order != "" {
				name = e.name + "/version-order"
			}
			t.Run(name, func(t *testing.T) { testMaintainedSyncModel(t, e, order+"mode=maintained") })
		}
	}
}

func testMaintainedSyncModel(t *testing.T, e *engine, params string) {
	people := randomPeople(rand.New(rand.NewPCG(21, 21)), 1500, 1)
	a, b := createPeople(t, e), createPeople(t, e)
	insertPeople(t, e, a, people)
	insertPeople(t, e, b, people[300:]) // the copy starts behind
	var tables [2]*Table
	for i, name := range []string{a, b} {
		tb := openTable(t, e.url(name, params))
		if _, err := tb.InstallIndex(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tb.UninstallIndex(context.Background()) })
		tables[i] = tb
	}
	rng := rand.New(rand.NewPCG(22, 22))
	for round := range 6 {
		for _, name := range []string{a, b} {
			for n := range 40 {
				e.db.Exec(modelWrite(rng, name, 1700, round*100+n)) // a duplicate key may fail: fine
			}
		}
		if round%2 == 1 {
			for range 25 { // the source's restore: rows back as they first were
				p := people[rng.IntN(len(people))]
				e.db.Exec(fmt.Sprintf("DELETE FROM %s WHERE id = %d", a, p.id))
				insertPeople(t, e, a, []person{p})
			}
		}
		syncAndCheck(t, fmt.Sprintf("round %d", round), tables[0], tables[1], -1)
		mustVerify(t, tables[0], fmt.Sprintf("round %d, source", round))
		mustVerify(t, tables[1], fmt.Sprintf("round %d, target", round))
	}
}

// modelWrite is one random native write to a people table with ids from 1 to ids.
func modelWrite(rng *rand.Rand, name string, ids, n int) string {
	id := 1 + rng.IntN(ids)
	switch rng.IntN(6) {
	case 0:
		return fmt.Sprintf("DELETE FROM %s WHERE id = %d", name, id)
	case 1: // a write that leaves the version as it was
		return fmt.Sprintf("UPDATE %s SET name = 'quiet %d' WHERE id = %d", name, n, id)
	case 2:
		return fmt.Sprintf("UPDATE %s SET score = %d.25, ver = ver + 1 WHERE id = %d", name, n, id)
	case 3: // the version goes backwards
		return fmt.Sprintf("UPDATE %s SET name = 'back %d', ver = ver / 2 WHERE id = %d", name, n, id)
	case 4: // the key itself changes
		return fmt.Sprintf("UPDATE %s SET id = %d WHERE id = %d", name, 1+rng.IntN(ids), id)
	}
	return fmt.Sprintf("INSERT INTO %s (id, name, score, at, ver) VALUES (%d, 'new %d', 1.5, '2024-01-01 00:00:00', %d)", name, 1+rng.IntN(ids), n, 1+rng.IntN(1e9))
}
