package bench

import (
	"bufio"
	"bytes"
	"context"
	dbsql "database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	sqlep "github.com/reconcile-dev/reconcile/adapters/sql"
	"github.com/reconcile-dev/reconcile/bench/baseline"
)

// The pt-table-sync comparison. Percona's pt-table-sync works on MySQL/MariaDB tables
// only, so for it the dataset is loaded into two MariaDB tables (the history's final
// state, and the drifted copy), and this tool runs on the same two tables through its SQL
// endpoint, in scan mode and in maintained mode, next to `pt-table-sync --print`. Keys
// become bigint ids (pt-table-sync 3.2.1 mishandles varbinary primary keys), values a
// varchar, and rows carry no TTL (MariaDB has none): the history is the scenario's with
// TTLFraction 0. Every figure of these rows comes from the server's own per-user counters
// (information_schema.USER_STATISTICS, which needs userstat=1: the run turns it on and
// restores it after), each tool connecting as its own user: rows read by the server,
// bytes the server sent and received, and statements executed (as round trips).

// SQLJob is what a Runner needs to run this tool on the MariaDB tables.
type SQLJob struct {
	// Source and Target are mysql:// endpoint URLs; User is the user they connect as.
	Source string `json:"source"`
	Target string `json:"target"`
	User   string `json:"user"`
	// Server is the mysql:// URL (an administrator) that reads the server's counters.
	Server string `json:"server"`
}

// runSQLJob runs this tool on the MariaDB tables of job.SQL and reports the server's
// counters for the timed runs (rows read, bytes, statements) in place of the endpoint's.
func runSQLJob(ctx context.Context, job Job) (Result, error) {
	truth, err := ReadTruth(job.Fixture.Truth)
	if err != nil {
		return Result{}, err
	}
	srv, err := openSQLServer(ctx, job.SQL.Server)
	if err != nil {
		return Result{}, err
	}
	defer srv.root.Close()
	open := func(raw string) (*sqlep.Table, error) {
		c, err := sqlep.ParseURL(raw)
		if err != nil {
			return nil, err
		}
		return sqlep.Open(ctx, c)
	}
	src, err := open(job.SQL.Source)
	if err != nil {
		return Result{}, err
	}
	defer src.Close()
	dst, err := open(job.SQL.Target)
	if err != nil {
		return Result{}, err
	}
	defer dst.Close()
	before, err := srv.stats(ctx, job.SQL.User)
	if err != nil {
		return Result{}, fmt.Errorf("read server counters: %w", err)
	}
	openRSS := RSS()
	res, err := measure(ctx, job, src, dst, truth, func(r *Result) error {
		after, err := srv.stats(ctx, job.SQL.User)
		if err != nil {
			return fmt.Errorf("read server counters: %w", err)
		}
		st := after.sub(before)
		n := int64(max(r.Reps, 1))
		r.Note = fmt.Sprintf("protocol: %d bytes, %d rounds; server: %.0f ms CPU", r.Bytes, r.Rounds, st.cpu*1000/float64(n))
		r.Reads, r.BytesSent, r.BytesReceived, r.Rounds = st.rowsRead/n, st.bytesReceived/n, st.bytesSent/n, int(st.commands/n)
		r.Bytes = r.BytesSent + r.BytesReceived
		r.EntriesSource, r.EntriesTarget, r.NodesSource, r.NodesTarget, r.RowsRead = 0, 0, 0, 0, 0
		return nil
	})
	res.Endpoint = "mariadb"
	res.PeakRSS, res.OpenRSS, res.RSSScope = PeakRSS(), openRSS, "process"
	return res, err
}

// sqlFixtureTag marks a loaded table pair (its comment); bump it when the layout changes.
const sqlFixtureTag = "reconcile bench sql v1"

// ptUser and rcUser are the MariaDB users the two tools connect as, so the server counts
// each tool's work apart.
const (
	ptUser = "rcbench_pt"
	rcUser = "rcbench_rc"
)

// sqlID maps a generated key to a bigint: user/N is N, a binary key (0xff "bin/" be64(id))
// is 10^12 + id. Injective over the generator's keys.
func sqlID(k []byte) (int64, error) {
	if len(k) == 13 && k[0] == 0xff && string(k[1:5]) == "bin/" {
		var v int64
		for _, b := range k[5:] {
			v = v<<8 | int64(b)
		}
		return 1_000_000_000_000 + v, nil
	}
	if n, ok := bytes.CutPrefix(k, []byte("user/")); ok {
		return strconv.ParseInt(string(n), 10, 64)
	}
	return 0, fmt.Errorf("key %q is not a generated key", k)
}

// sqlKey is the SQL endpoint's key for id (the canonical key encoding of a bigint).
func sqlKey(id int64) string {
	return string(sqlep.AppendKey(nil, []sqlep.Datum{{Class: sqlep.Int, Int: id}}))
}

// sqlServer is the MariaDB the comparison runs on.
type sqlServer struct {
	u    *url.URL
	root *dbsql.DB
	db   string
}

func openSQLServer(ctx context.Context, raw string) (*sqlServer, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "mysql" {
		return nil, fmt.Errorf("mysql server %q: want mysql://user@host:port/db", raw)
	}
	cfg, err := sqlep.ParseURL(raw + "?table=x")
	if err != nil {
		return nil, fmt.Errorf("mysql server: %w", err)
	}
	db, err := dbsql.Open("mysql", cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("mysql server: %w", err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("mysql server: %w", err)
	}
	return &sqlServer{u: u, root: db, db: strings.TrimPrefix(u.Path, "/")}, nil
}

func (s *sqlServer) host() (string, string) {
	port := s.u.Port()
	if port == "" {
		port = "3306"
	}
	return s.u.Hostname(), port
}

// endpoint is the mysql:// URL of table for user.
func (s *sqlServer) endpoint(user, table, mode string) string {
	h, p := s.host()
	return fmt.Sprintf("mysql://%s@%s:%s/%s?table=%s&version=ver&mode=%s", user, h, p, s.db, table, mode)
}

// users creates the two bench users (no password, this host only) with what each tool
// needs on the bench database.
func (s *sqlServer) users(ctx context.Context) error {
	h, _ := s.host()
	for _, u := range []string{ptUser, rcUser} {
		for _, q := range []string{
			fmt.Sprintf("CREATE USER IF NOT EXISTS '%s'@'%s'", u, h),
			fmt.Sprintf("GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, TRIGGER, LOCK TABLES ON `%s`.* TO '%s'@'%s'", s.db, u, h),
			fmt.Sprintf("GRANT PROCESS, REPLICATION CLIENT, SLAVE MONITOR ON *.* TO '%s'@'%s'", u, h),
		} {
			if _, err := s.root.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("create bench user %s: %w", u, err)
			}
		}
	}
	return nil
}

// userStats is one user's line of information_schema.USER_STATISTICS.
type userStats struct {
	rowsRead, bytesSent, bytesReceived, commands int64
	cpu                                          float64
}

func (s *sqlServer) stats(ctx context.Context, user string) (userStats, error) {
	var st userStats
	err := s.root.QueryRowContext(ctx, `SELECT ROWS_READ, BYTES_SENT, BYTES_RECEIVED,
		SELECT_COMMANDS + UPDATE_COMMANDS + OTHER_COMMANDS, CPU_TIME
		FROM information_schema.USER_STATISTICS WHERE USER = ?`, user).
		Scan(&st.rowsRead, &st.bytesSent, &st.bytesReceived, &st.commands, &st.cpu)
	if errors.Is(err, dbsql.ErrNoRows) {
		return st, nil
	}
	return st, err
}

func (a userStats) sub(b userStats) userStats {
	return userStats{a.rowsRead - b.rowsRead, a.bytesSent - b.bytesSent, a.bytesReceived - b.bytesReceived, a.commands - b.commands, a.cpu - b.cpu}
}

// load fills table with rows (in one transaction, batched inserts) unless it already
// holds them (its comment is tag).
func (s *sqlServer) load(ctx context.Context, table, tag string, rows FinalRows) (bool, error) {
	var comment dbsql.NullString
	err := s.root.QueryRowContext(ctx, `SELECT TABLE_COMMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?`, s.db, table).Scan(&comment)
	if err == nil && comment.String == tag {
		return false, nil
	}
	if err != nil && !errors.Is(err, dbsql.ErrNoRows) {
		return false, fmt.Errorf("look up %s: %w", table, err)
	}
	t, err := sqlep.Open(ctx, sqlep.Config{Dialect: "mysql", DSN: s.dsn(), Table: table, Version: "ver"})
	if err == nil {
		t.UninstallIndex(ctx) // a half-built pair may have one
		t.Close()
	}
	if _, err := s.root.ExecContext(ctx, "DROP TABLE IF EXISTS `"+table+"`"); err != nil {
		return false, fmt.Errorf("drop %s: %w", table, err)
	}
	if _, err := s.root.ExecContext(ctx, "CREATE TABLE `"+table+"` (id bigint PRIMARY KEY, ver bigint NOT NULL, val varchar(255) NOT NULL) ENGINE=InnoDB"); err != nil {
		return false, fmt.Errorf("create %s: %w", table, err)
	}
	tx, err := s.root.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	const batch = 1000
	var args []any
	flush := func() error {
		if len(args) == 0 {
			return nil
		}
		q := "INSERT INTO `" + table + "` (id, ver, val) VALUES " + strings.TrimSuffix(strings.Repeat("(?,?,?),", len(args)/3), ",")
		_, err := tx.ExecContext(ctx, q, args...)
		args = args[:0]
		return err
	}
	for k, r := range rows {
		id, err := sqlID([]byte(k))
		if err != nil {
			return false, err
		}
		args = append(args, id, r.version, r.value)
		if len(args) == 3*batch {
			if err := flush(); err != nil {
				return false, fmt.Errorf("load %s: %w", table, err)
			}
		}
	}
	if err := flush(); err != nil {
		return false, fmt.Errorf("load %s: %w", table, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("load %s: %w", table, err)
	}
	// The maintained index, built from one read of the table, so maintained-mode sessions
	// have it; then the tag, last, so a pair interrupted before it is rebuilt.
	t, err = sqlep.Open(ctx, sqlep.Config{Dialect: "mysql", DSN: s.dsn(), Table: table, Version: "ver"})
	if err != nil {
		return false, fmt.Errorf("open %s: %w", table, err)
	}
	_, err = t.InstallIndex(ctx)
	t.Close()
	if err != nil {
		return false, fmt.Errorf("install index on %s: %w", table, err)
	}
	if _, err := s.root.ExecContext(ctx, "ALTER TABLE `"+table+"` COMMENT = '"+tag+"'"); err != nil {
		return false, fmt.Errorf("tag %s: %w", table, err)
	}
	return true, nil
}

func (s *sqlServer) dsn() string {
	cfg, _ := sqlep.ParseURL(s.u.String() + "?table=x")
	return cfg.DSN
}

// runSQL measures pt-table-sync and this tool (scan and maintained) on MariaDB tables
// holding sc's dataset.
func runSQL(ctx context.Context, cfg *Config, sc Scenario, d float64) ([]Result, error) {
	base := Result{Scenario: sc.Name, Rows: sc.History.Rows, Drift: d, Endpoint: "mariadb", Reps: 1}
	skip := func(note string) []Result {
		r := base
		r.Method, r.Note = MethodPTTableSync, "skipped: "+note
		cfg.logf("  pt-table-sync skipped: %s", note)
		return []Result{r}
	}
	switch {
	case cfg.MySQL == "":
		return skip("no MariaDB server given (--mysql)"), nil
	case sc.History.Rows > cfg.SQLMaxRows:
		return skip(fmt.Sprintf("%d rows is above --sql-max-rows %d", sc.History.Rows, cfg.SQLMaxRows)), nil
	case sc.Reverse:
		return skip("the rollback scenario compares a restored source; pt-table-sync runs on the others"), nil
	}
	pt, err := exec.LookPath("pt-table-sync")
	if err != nil {
		return skip("pt-table-sync is not installed (Debian: apt-get install percona-toolkit)"), nil
	}
	srv, err := openSQLServer(ctx, cfg.MySQL)
	if err != nil {
		return skip(err.Error()), nil
	}
	defer srv.root.Close()

	h := sc.History
	h.TTLFraction = 0
	// The source table is named by the history alone, so datasets that differ only in
	// drift share it; the target by both.
	srcHash := paramHash(h)
	hash := paramHash(struct {
		H History
		D Drift
	}{h, sc.Drift})
	src, dst := "rcb_"+srcHash+"_src", "rcb_"+hash+"_dst"

	// The rows and the truth, from the generator (replayed in memory).
	cfg.logf("dataset %s rows=%d drift=%g: MariaDB tables %s, %s", sc.Name, sc.History.Rows, d, src, dst)
	srcRows := FinalRows{}
	if _, err := h.Generate(srcRows); err != nil {
		return nil, err
	}
	dstRows := make(FinalRows, len(srcRows))
	for k, v := range srcRows {
		dstRows[k] = v
	}
	_, truth, err := h.ApplyDriftTruth(dstRows, sc.Drift)
	if err != nil {
		return nil, err
	}
	sqlTruth := make(Truth, len(truth))
	for k, c := range truth {
		id, err := sqlID([]byte(k))
		if err != nil {
			return nil, err
		}
		sqlTruth[sqlKey(id)] = c
	}
	for _, x := range []struct {
		table string
		rows  FinalRows
		tag   string
	}{{src, srcRows, sqlFixtureTag + " " + srcHash}, {dst, dstRows, sqlFixtureTag + " " + hash}} {
		t0 := time.Now()
		built, err := srv.load(ctx, x.table, x.tag, x.rows)
		if err != nil {
			return nil, fmt.Errorf("bench %s: %w", sc.Name, err)
		}
		if built {
			cfg.logf("  loaded %s (%d rows) in %.1f s", x.table, len(x.rows), time.Since(t0).Seconds())
		}
	}
	srcRows, dstRows = nil, nil
	truthDir := filepath.Join(cfg.Dir, "sql-"+hash)
	if err := os.MkdirAll(truthDir, 0o755); err != nil {
		return nil, err
	}
	truthPath := filepath.Join(truthDir, "truth.bin")
	if err := WriteTruth(truthPath, sqlTruth); err != nil {
		return nil, err
	}
	if err := srv.users(ctx); err != nil {
		return skip(err.Error()), nil
	}
	var prev int
	if err := srv.root.QueryRowContext(ctx, "SELECT @@global.userstat").Scan(&prev); err != nil {
		return skip(fmt.Sprintf("read userstat: %v", err)), nil
	}
	if _, err := srv.root.ExecContext(ctx, "SET GLOBAL userstat = 1"); err != nil {
		return skip(fmt.Sprintf("turn on userstat (the server's per-user counters): %v", err)), nil
	}
	defer srv.root.ExecContext(context.WithoutCancel(ctx), "SET GLOBAL userstat = "+strconv.Itoa(prev))

	var out []Result
	// pt-table-sync first, then this tool in scan and in maintained mode.
	cfg.logf("  pt-table-sync")
	r, err := runPT(ctx, srv, pt, src, dst, sqlTruth)
	if err != nil {
		return out, err
	}
	out = append(out, merge(base, r))
	runner := cfg.Runner
	if runner == nil {
		runner = RunJob
	}
	for _, mode := range []string{"scan", "maintained"} {
		cfg.logf("  reconcile (%s)", mode)
		job := Job{Scenario: sc, Drift: d, Method: MethodReconcile, Reps: 1,
			Fixture: FixtureInfo{Truth: truthPath},
			SQL: &SQLJob{Source: srv.endpoint(rcUser, src, mode), Target: srv.endpoint(rcUser, dst, mode),
				User: rcUser, Server: cfg.MySQL},
			Fanout: cfg.Session.Fanout, LeafMax: cfg.Session.LeafMax, FingerprintBytes: cfg.Session.FingerprintBytes}
		r, err := runner(ctx, job)
		if err != nil {
			return out, fmt.Errorf("bench %s reconcile on MariaDB (%s): %w", sc.Name, mode, err)
		}
		r.Method = MethodReconcile + " (" + mode + ")"
		r.Endpoint = "mariadb"
		out = append(out, r)
	}
	return out, nil
}

// merge fills a result's dataset fields from base.
func merge(base, r Result) Result {
	r.Scenario, r.Rows, r.Drift, r.Endpoint, r.Reps = base.Scenario, base.Rows, base.Drift, base.Endpoint, base.Reps
	return r
}

// ptStatement finds the id a pt-table-sync statement writes.
var (
	ptWhere  = regexp.MustCompile("WHERE `id`='(-?[0-9]+)'")
	ptValues = regexp.MustCompile(`VALUES \('(-?[0-9]+)'`)
	ptTotals = regexp.MustCompile(`^#\s+([0-9]+)\s+([0-9]+)\s+([0-9]+)\s+([0-9]+)\s+(\S+)`)
)

// runPT runs `pt-table-sync --print` from src to dst as the real program and reads the
// statements it would execute as its plan.
func runPT(ctx context.Context, srv *sqlServer, pt, src, dst string, truth Truth) (Result, error) {
	h, p := srv.host()
	dsn := func(t string) string { return fmt.Sprintf("h=%s,P=%s,u=%s,D=%s,t=%s", h, p, ptUser, srv.db, t) }
	before, err := srv.stats(ctx, ptUser)
	if err != nil {
		return Result{}, fmt.Errorf("read server counters: %w", err)
	}
	cmd := exec.CommandContext(ctx, pt, "--print", "--verbose", "--no-check-triggers", dsn(src), dsn(dst))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("pt-table-sync: %w", err)
	}
	// Its peak RSS, sampled from /proc while it runs (its rusage would start from this
	// process's peak: see PeakRSS).
	var peak atomic.Int64
	done := make(chan struct{})
	go func() {
		pid := strconv.Itoa(cmd.Process.Pid)
		for {
			if v := procStatus(pid, "VmHWM:"); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	err = cmd.Wait()
	wall := time.Since(t0)
	close(done)
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 2) { // 2: differences found
		return Result{}, fmt.Errorf("pt-table-sync: %w: %s", err, strings.TrimSpace(stderr.String()+stdout.String()))
	}
	after, err := srv.stats(ctx, ptUser)
	if err != nil {
		return Result{}, fmt.Errorf("read server counters: %w", err)
	}
	st := after.sub(before)
	r := Result{Method: MethodPTTableSync, Differing: len(truth)}
	r.WallMS = float64(wall.Microseconds()) / 1000
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.CPUMS = float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e6
	}
	r.PeakRSS, r.RSSScope = peak.Load(), "method"
	var plan baseline.Plan
	algo := ""
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := ptTotals.FindStringSubmatch(line); m != nil {
			algo = m[5]
			continue
		}
		var re *regexp.Regexp
		upsert := true
		switch {
		case strings.HasPrefix(line, "DELETE "):
			re, upsert = ptWhere, false
		case strings.HasPrefix(line, "UPDATE "):
			re = ptWhere
		case strings.HasPrefix(line, "INSERT "), strings.HasPrefix(line, "REPLACE "):
			re = ptValues
		default:
			continue
		}
		m := re.FindStringSubmatch(line)
		if m == nil {
			return r, fmt.Errorf("pt-table-sync: cannot read the key of %.200s", line)
		}
		id, _ := strconv.ParseInt(m[1], 10, 64)
		k := []byte(sqlKey(id))
		if upsert {
			plan.Upserts = append(plan.Upserts, k)
			if strings.HasPrefix(line, "UPDATE ") {
				r.Changed++
			} else {
				r.OnlySource++
			}
		} else {
			plan.Deletes = append(plan.Deletes, k)
			r.OnlyTarget++
		}
	}
	r.Verdict = Evaluate(plan, truth)
	r.Reads, r.Bytes, r.BytesSent, r.BytesReceived, r.Rounds = st.rowsRead, st.bytesSent+st.bytesReceived, st.bytesReceived, st.bytesSent, int(st.commands)
	r.Note = fmt.Sprintf("pt-table-sync --print, algorithm %s; server: %d rows read, %.0f ms CPU", algo, st.rowsRead, st.cpu*1000)
	return r, nil
}
