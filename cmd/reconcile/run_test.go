package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/reconcile-dev/reconcile/reconcile/schedule"
)

// writeConfig writes a jobs file and returns its path.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	return tempFile(t, "jobs.yaml", yaml)
}

// TestRunOnce runs Badger and SQLite jobs once through the command line: the exit status
// is the worst job's, and a second run finds the mirrors' targets in sync.
func TestRunOnce(t *testing.T) {
	src, dst, other := store(t, "src"), store(t, "dst"), store(t, "other")
	mustCLI(t, 0, rowsJSONL(50, 100), "load", src)
	mustCLI(t, 0, rowsJSONL(40, 100), "load", other)
	lite, _ := sqliteTable(t, "")
	mustCLI(t, 0, itemLines, "load", lite)
	liteCopy := store(t, "lite-copy")
	cfg := writeConfig(t, `
concurrency: 2
defaults:
  interval: 1h
  max-delete: 100%
jobs:
  - name: replica
    source: `+src+`
    target: `+dst+`
    mode: mirror
  - name: audit
    source: `+src+`
    target: `+other+`
    mode: diff
  - name: items
    source: `+lite+`
    target: `+liteCopy+`
    mode: mirror
`)
	code, out, errOut := runCLI(t, "", "run", "--config", cfg, "--once")
	if code != exitDiffer {
		t.Fatalf("exit %d, want 1 (audit differs)\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"replica  ok", "audit    differ", "items    ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "msg=\"run finished\" job=replica status=ok") {
		t.Errorf("text log lacks the replica's record:\n%s", errOut)
	}
	if a, b := mustCLI(t, 0, "", "root", src), mustCLI(t, 0, "", "root", dst); a != b {
		t.Fatalf("replica: roots differ: %s %s", a, b)
	}
	if a, b := mustCLI(t, 0, "", "root", lite), mustCLI(t, 0, "", "root", liteCopy); a != b {
		t.Fatalf("items: roots differ: %s %s", a, b)
	}

	// The audit repaired by hand, everything is in sync: exit 0, and --json lists results.
	mustCLI(t, 0, "", "sync", src, other, "--max-delete", "100%")
	out = mustCLI(t, 0, "", "run", "--config", cfg, "--once", "--json", "--log-format", "json", "--log-level", "warn")
	var results []schedule.Result
	if err := json.Unmarshal([]byte(out), &results); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if len(results) != 3 || schedule.Worst(results) != schedule.StatusOK || results[0].Report.Differ() {
		t.Fatalf("results %s", out)
	}
}

func TestRunErrors(t *testing.T) {
	src := store(t, "src")
	mustCLI(t, 0, rowsJSONL(5, 100), "load", src)
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown field", "jobs:\n  - name: a\n    source: " + src + "\n    target: badger:///tmp/x\n    mode: mirror\n    interval: 1m\n    bath-rows: 5\n",
			`job "a": unknown field "bath-rows" (line 7)`},
		{"bad URL", "jobs:\n  - name: users\n    source: " + src + "\n    target: badger://rel/path\n    mode: diff\n    interval: 1m\n",
			`job "users": target: endpoint "badger://rel/path": "rel" would be a host name`},
		{"bad interval", "jobs:\n  - name: users\n    source: " + src + "\n    target: badger:///tmp/x\n    mode: diff\n    interval: soon\n",
			`job "users": interval: "soon" is not a duration`},
		{"same store", "jobs:\n  - name: users\n    source: " + src + "\n    target: " + src + "/.\n    mode: diff\n    interval: 1m\n",
			`job "users": target: the same store as the source`},
	} {
		code, _, errOut := runCLI(t, "", "run", "--config", writeConfig(t, tc.yaml), "--once")
		if code != exitError || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", tc.name, code, errOut, tc.want)
		}
	}
	code, _, errOut := runCLI(t, "", "run", "--config", "/no/such/jobs.yaml")
	if code != exitError || !strings.Contains(errOut, "read config") {
		t.Errorf("missing file: exit %d, %q", code, errOut)
	}
	cfg := writeConfig(t, "jobs:\n  - name: a\n    source: "+src+"\n    target: badger:///no/such/store\n    mode: diff\n    interval: 1m\n")
	code, out, errOut := runCLI(t, "", "run", "--config", cfg, "--once")
	if code != exitError || !strings.Contains(out, "no store there") || !strings.Contains(errOut, "run --once: error: a") {
		t.Errorf("failing job: exit %d\n%s\n%s", code, out, errOut)
	}
	code, _, errOut = runCLI(t, "", "run", "--config", cfg, "--log-format", "xml")
	if code != exitError || !strings.Contains(errOut, "--log-format") {
		t.Errorf("bad log format: exit %d, %q", code, errOut)
	}
	// --json without --once was silently ignored: a daemon prints no reports.
	code, _, errOut = runCLI(t, "", "run", "--config", cfg, "--json", "--log-format", "xml")
	if code != exitError || !strings.Contains(errOut, "--json prints the reports of a --once run and does nothing here") {
		t.Errorf("--json without --once: exit %d, %q", code, errOut)
	}
}

// TestRunDaemon runs the daemon with metrics, a token read from a file for a remote
// target served by `reconcile serve`, and JSON logs; it stops on cancellation (as on
// SIGTERM) and exits cleanly.
func TestRunDaemon(t *testing.T) {
	src, dst := store(t, "src"), store(t, "dst")
	mustCLI(t, 0, rowsJSONL(80, 100), "load", src)
	tokenFile := tempFile(t, "token", "sesame\n")
	served, stopServe := startServe(t, dst, "--listen", "127.0.0.1:0", "--token-file", tokenFile)
	cfg := writeConfig(t, `
grace-period: 5s
jobs:
  - name: remote
    source: `+src+`
    target:
      url: `+served+`
      token-file: `+tokenFile+`
    mode: mirror
    interval: 10ms
    max-delete: "0"
`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := make(chan net.Addr, 1)
	logR, logW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- runRun(ctx, runOptions{stdio: stdio{in: strings.NewReader(""), out: io.Discard, err: logW}, config: cfg,
			metricsAddr: "127.0.0.1:0", logFormat: "json", logLevel: "info", listening: func(a net.Addr) { addr <- a }})
		logW.Close()
	}()
	// Read JSON log lines until the job has run twice.
	sc := bufio.NewScanner(logR)
	runs := 0
	var base string
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line is not JSON: %s", sc.Text())
		}
		if rec["msg"] == "serving /metrics, /healthz, /readyz and /jobs" {
			base = "http://" + (<-addr).String()
		}
		if rec["msg"] == "run failed" {
			t.Fatalf("run failed: %s", sc.Text())
		}
		if rec["msg"] == "run finished" && rec["job"] == "remote" {
			if runs++; runs == 2 {
				break
			}
		}
	}
	go io.Copy(io.Discard, logR)
	if base == "" || runs != 2 {
		t.Fatalf("the daemon did not log two runs (metrics at %q)", base)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`reconcile_job_rows_written_total{job="remote",op="upsert"} 80`, `reconcile_job_runs_total{job="remote",status="ok"}`, "go_goroutines", "process_cpu_seconds_total"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	resp, err = http.Get(base + "/jobs")
	if err != nil {
		t.Fatal(err)
	}
	var jobs []schedule.JobStatus
	err = json.NewDecoder(resp.Body).Decode(&jobs)
	resp.Body.Close()
	if err != nil || len(jobs) != 1 || jobs[0].History[len(jobs[0].History)-1].Report.Upserted != 80 {
		t.Fatalf("/jobs: %v %+v", err, jobs)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v after cancellation, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not stop after cancellation")
	}
	if code := stopServe(); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	if a, b := mustCLI(t, 0, "", "root", src), mustCLI(t, 0, "", "root", dst); a != b {
		t.Fatalf("roots differ: %s %s", a, b)
	}
}

// TestRunSignals runs `reconcile run` as a process (this test binary re-run as main) and
// sends it SIGTERM, then in another run SIGHUP (a closed terminal), while it schedules a
// job: each time it shuts down gracefully and exits 0.
func TestRunSignals(t *testing.T) {
	if args := os.Getenv("RECONCILE_TEST_MAIN_ARGS"); args != "" {
		os.Args = append([]string{"reconcile"}, strings.Split(args, "\x1f")...)
		main() // exits
		return
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) { runUntilSignal(t, sig) })
	}
}

func runUntilSignal(t *testing.T, sig syscall.Signal) {
	src, dst := store(t, "src"), store(t, "dst")
	mustCLI(t, 0, rowsJSONL(30, 100), "load", src)
	cfg := writeConfig(t, "jobs:\n  - name: m\n    source: "+src+"\n    target: "+dst+"\n    mode: mirror\n    interval: 20ms\n")
	cmd := exec.Command(os.Args[0], "-test.run=^TestRunSignals$")
	cmd.Env = append(os.Environ(), "RECONCILE_TEST_MAIN_ARGS="+strings.Join([]string{"run", "--config", cfg, "--log-format", "json"}, "\x1f"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stderr)
	var logs []string
	runs := 0
	for runs < 2 && sc.Scan() {
		logs = append(logs, sc.Text())
		if strings.Contains(sc.Text(), `"msg":"run finished"`) {
			runs++
		}
	}
	if runs < 2 {
		t.Fatalf("the daemon did not run twice:\n%s", strings.Join(logs, "\n"))
	}
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
		logs = append(logs, sc.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after %v: %v\n%s", sig, err, strings.Join(logs, "\n"))
	}
	all := strings.Join(logs, "\n")
	if !strings.Contains(all, `"msg":"shutting down`) || !strings.Contains(all, `"msg":"scheduler stopped"`) {
		t.Fatalf("no shutdown in the logs:\n%s", all)
	}
	if a, b := mustCLI(t, 0, "", "root", src), mustCLI(t, 0, "", "root", dst); a != b {
		t.Fatalf("roots differ: %s %s", a, b)
	}
}

// TestRunRelay runs a job between two `reconcile serve` servers: the source's server runs
// the session and run carries its requests to the target's.
func TestRunRelay(t *testing.T) {
	src, dst := store(t, "src"), store(t, "dst")
	mustCLI(t, 0, rowsJSONL(40, 100), "load", src)
	mustCLI(t, 0, rowsJSONL(10, 500), "load", dst)
	srcURL, stopSrc := startServe(t, src, "--listen", "127.0.0.1:0", "--read-only")
	dstURL, stopDst := startServe(t, dst, "--listen", "127.0.0.1:0")
	cfg := writeConfig(t, "jobs:\n  - name: relay\n    source: "+srcURL+"\n    target: "+dstURL+"\n    mode: mirror\n    interval: 1m\n    max-delete: 100%\n")
	out := mustCLI(t, 0, "", "run", "--config", cfg, "--once", "--json")
	var results []schedule.Result
	if err := json.Unmarshal([]byte(out), &results); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if rep := results[0].Report; rep == nil || rep.Upserted != 40 || rep.Changed != 10 {
		t.Fatalf("relay report %+v", rep)
	}
	if stopSrc() != 0 || stopDst() != 0 {
		t.Fatal("a server did not stop cleanly")
	}
	if a, b := mustCLI(t, 0, "", "root", src), mustCLI(t, 0, "", "root", dst); a != b {
		t.Fatalf("roots differ: %s %s", a, b)
	}
}

// A job whose token the server refuses says where the token came from: the job's own
// token-env here, not the command line's RECONCILE_TOKEN or ?token_file=.
func TestRunWrongTokenNamesItsSource(t *testing.T) {
	src, dst := store(t, "src"), store(t, "dst")
	mustCLI(t, 0, rowsJSONL(5, 1), "load", src)
	tokenFile := tempFile(t, "token", "sesame\n")
	served, _ := startServe(t, dst, "--listen", "127.0.0.1:0", "--token-file", tokenFile)
	t.Setenv("TEST_JOB_TOKEN", "not-sesame")
	cfg := writeConfig(t, `
jobs:
  - name: push
    source: `+src+`
    target: {url: '`+served+`', token-env: TEST_JOB_TOKEN}
    mode: mirror
    interval: 1h
`)
	code, out, _ := runCLI(t, "", "run", "--config", cfg, "--once")
	if code != exitError || !strings.Contains(out, "the one given (from the job's token-file or token-env) is not the server's") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

// TestRunCreatesSQLTarget: a mirror job whose SQL target does not exist (here a SQLite
// file) creates it like its SQL source, as sync does; a diff job creates nothing.
func TestRunCreatesSQLTarget(t *testing.T) {
	lite, _ := sqliteTable(t, "")
	mustCLI(t, 0, itemLines, "load", lite)
	dir := t.TempDir()
	mirror := "sqlite://" + filepath.Join(dir, "mirror.db") + "?table=items&version=ver"
	audit := "sqlite://" + filepath.Join(dir, "audit.db") + "?table=items&version=ver"
	cfg := writeConfig(t, `
jobs:
  - name: mirror
    source: "`+lite+`"
    target: "`+mirror+`"
    mode: mirror
    interval: 1h
  - name: audit
    source: "`+lite+`"
    target: "`+audit+`"
    mode: diff
    interval: 1h
`)
	code, out, errOut := runCLI(t, "", "run", "--config", cfg, "--once")
	if code != exitError || !strings.Contains(out, "mirror  ok") || !strings.Contains(out, "audit   error") {
		t.Fatalf("exit %d, want 2 (the audit's target is missing)\n%s\n%s", code, out, errOut)
	}
	if got, want := mustCLI(t, 0, "", "root", mirror), mustCLI(t, 0, "", "root", lite); got != want {
		t.Fatalf("created target's root %s, the source's %s", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "audit.db")); err == nil {
		t.Fatal("a diff job created its target")
	}
}

// TestRunCreatesReplicaOrderedAsSource: a mirror job's new Badger target takes its
// source's ordering (a key-ordered source made a version-ordered target, which refused
// every run).
func TestRunCreatesReplicaOrderedAsSource(t *testing.T) {
	src, dst := store(t, "src"), store(t, "dst")
	mustCLI(t, 0, `{"key": "a", "value": "1"}`+"\n", "load", src+"?ordering=key")
	cfg := writeConfig(t, `
jobs:
  - name: mirror
    source: "`+src+`"
    target: "`+dst+`"
    mode: mirror
    interval: 1h
`)
	mustCLI(t, 0, "", "run", "--config", cfg, "--once")
	mustCLI(t, 0, "", "diff", src, dst)
}
