package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/reconcile-dev/reconcile/adapters/badger"
	"github.com/reconcile-dev/reconcile/bench/baseline"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// Method names.
const (
	MethodReconcile   = "reconcile"
	MethodManifest    = "manifest"
	MethodChunked     = "chunked"
	MethodHighWater   = "hwm"
	MethodPTTableSync = "pt-table-sync"
)

// MethodNames lists every method in the order a run measures them.
var MethodNames = []string{MethodReconcile, MethodManifest, MethodChunked, MethodHighWater, MethodPTTableSync}

// MethodHelp says what each method is.
const MethodHelp = `reconcile: this tool's session (diff mode), in process, frames encoded as on the wire
manifest: full manifest comparison: the target sends (key, version, hash) for every row
chunked: chunked differencing scan in version order, newest first, stopping when counts below agree
hwm: high-water-mark sync: upload rows above the target's highest version; after a rollback, delete above the source's
pt-table-sync: Percona's pt-table-sync --print on MariaDB tables holding the same rows, run as the real program, next to reconcile on the same tables`

// DefaultNow is the clock benchmarks generate and compare at, so fixtures are the same
// bytes on every run.
const DefaultNow = int64(1_750_000_000_000_000_000)

// Config is one benchmark run: every scenario at every size and drift, each method on
// each.
type Config struct {
	// Dir caches fixtures (Fixture).
	Dir string
	// Bulk builds sources from their histories' final rows (Fixture.Bulk).
	Bulk bool
	// Rows, Drifts and Scenarios span the datasets; Methods the methods run on each.
	Rows      []int
	Drifts    []float64
	Scenarios []string
	Methods   []string
	// Base gives the history's shape (DeleteRatio, UpdateRatio, TTLFraction, ValueSize,
	// Seed, Now); scenarios set Rows and may change the rest.
	Base History
	// Reps is how many times each method runs on a dataset (the median is reported).
	Reps int
	// ChunkRows and HashBytes tune the baselines (0: their defaults).
	ChunkRows, HashBytes int
	// Session tunes this tool's sessions (Now and Mode are set by the harness).
	Session reconcile.Options
	// Warm reads every entry of both stores once before measuring a dataset, so no
	// method pays for a cold page cache, and reports the time as ScanBothMS.
	Warm bool
	// MySQL is a mysql:// URL (root@127.0.0.1:3306/test) of the MariaDB that the
	// pt-table-sync comparison loads its tables into; SQLMaxRows caps the sizes it runs
	// at (the tables are loaded row by row from the generator).
	MySQL      string
	SQLMaxRows int
	// SQLScenarios names the scenarios the pt-table-sync comparison runs on (nil: all).
	SQLScenarios []string
	// Runner runs one measurement; nil runs it in this process (RunJob).
	Runner func(context.Context, Job) (Result, error)
	// Log, when set, receives progress lines.
	Log func(string)
	// Partial, when set, is called with the report so far after each dataset (to save
	// what a long run has measured before it ends).
	Partial func(*Report)
}

// Job is one method on one dataset: what a Runner needs, all of it JSON.
type Job struct {
	Scenario Scenario    `json:"scenario"`
	Drift    float64     `json:"drift"`
	Fixture  FixtureInfo `json:"fixture"`
	Method   string      `json:"method"`
	Reps     int         `json:"reps"`
	// ChunkRows and HashBytes tune the baselines.
	ChunkRows int `json:"chunk_rows,omitempty"`
	HashBytes int `json:"hash_bytes,omitempty"`
	// Fanout, LeafMax and FingerprintBytes tune this tool's session.
	Fanout           int `json:"fanout,omitempty"`
	LeafMax          int `json:"leaf_max,omitempty"`
	FingerprintBytes int `json:"fingerprint_bytes,omitempty"`
	// SQL, when set, runs this tool on MariaDB tables instead of the fixture's stores
	// (Fixture.Truth still names the truth, in the tables' key encoding).
	SQL *SQLJob `json:"sql,omitempty"`
}

// Result is one method measured on one dataset.
type Result struct {
	Scenario string  `json:"scenario"`
	Rows     int     `json:"rows"`
	Drift    float64 `json:"drift"`
	Method   string  `json:"method"`
	// Endpoint is what the method ran against: "badger" (both copies embedded Badger
	// stores in this process, the target standing for a remote peer) or "mariadb".
	Endpoint string `json:"endpoint"`
	// Differing is the true number of differing keys.
	Differing int `json:"differing"`
	Verdict
	// What the method reported finding, by class.
	OnlySource int `json:"only_source"`
	OnlyTarget int `json:"only_target"`
	Changed    int `json:"changed"`

	// Reads is every record read on both sides: index entries, index nodes and rows
	// read by key (the parts follow).
	Reads         int64 `json:"reads"`
	EntriesSource int64 `json:"entries_source"`
	EntriesTarget int64 `json:"entries_target"`
	NodesSource   int64 `json:"nodes_source"`
	NodesTarget   int64 `json:"nodes_target"`
	RowsRead      int64 `json:"rows_read"`
	// Bytes is BytesSent + BytesReceived: protocol bytes, row values excluded.
	Bytes         int64 `json:"bytes"`
	BytesSent     int64 `json:"bytes_sent"`
	BytesReceived int64 `json:"bytes_received"`
	Rounds        int   `json:"rounds"`

	// WallMS and CPUMS are the median over Reps of wall time and process CPU time
	// (user + system, Badger's background work included).
	WallMS float64 `json:"wall_ms"`
	CPUMS  float64 `json:"cpu_ms"`
	Reps   int     `json:"reps"`
	// PeakRSS is the peak resident set size in bytes (VmHWM, see PeakRSS) of the process
	// that ran the method: RSSScope "method" when that process ran only this method
	// (reconcile bench's default: it opens both endpoints, runs the method Reps times and
	// once more untimed for this tool's plan), "process" when it is the peak of a process
	// that ran other work before (go test -bench, --isolate=false), so only an upper bound.
	// OpenRSS is the resident set just after opening the endpoints, before the method ran.
	PeakRSS  int64  `json:"peak_rss"`
	OpenRSS  int64  `json:"open_rss,omitempty"`
	RSSScope string `json:"rss_scope"`
	// ScanBothMS is the time one read of every entry of both stores took just before (the
	// floor for any tool that compares whole copies); 0 when not measured.
	ScanBothMS float64 `json:"scan_both_ms,omitempty"`
	// Note says what else a reader must know (a skip, a caveat).
	Note string `json:"note,omitempty"`
}

// Report is a whole run.
type Report struct {
	Started  time.Time `json:"started"`
	Command  string    `json:"command,omitempty"`
	Machine  Machine   `json:"machine"`
	Config   RunConfig `json:"config"`
	Results  []Result  `json:"results"`
	Targets  []Target  `json:"targets"`
	Fixtures []string  `json:"fixtures,omitempty"`
}

// RunConfig is the part of Config a report records.
type RunConfig struct {
	Rows      []int     `json:"rows"`
	Drifts    []float64 `json:"drifts"`
	Scenarios []string  `json:"scenarios"`
	Methods   []string  `json:"methods"`
	Base      History   `json:"base"`
	Reps      int       `json:"reps"`
	ChunkRows int       `json:"chunk_rows"`
	HashBytes int       `json:"hash_bytes"`
	Bulk      bool      `json:"bulk,omitempty"` // sources built from final rows (Fixture.Bulk)
}

// Machine describes where a report was measured.
type Machine struct {
	GOOS, GOARCH string
	CPUs         int
	GoVersion    string
	LoadAvg      string `json:",omitempty"`
}

func machine() Machine {
	m := Machine{GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadAvg = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return m
}

func (c *Config) logf(format string, args ...any) {
	if c.Log != nil {
		c.Log(fmt.Sprintf(format, args...))
	}
}

// Check returns an error naming the first thing in cfg that Run could not measure (a
// negative count, an unknown method or scenario, a drift no dataset can hold), before
// Run builds anything. Errors begin with "bench".
func (cfg Config) Check() error {
	if cfg.Reps < 0 || cfg.ChunkRows < 0 || cfg.HashBytes < 0 {
		return fmt.Errorf("bench: reps, chunk rows and hash bytes must not be negative")
	}
	if len(cfg.Rows) == 0 || len(cfg.Drifts) == 0 || len(cfg.Scenarios) == 0 || len(cfg.Methods) == 0 {
		return fmt.Errorf("bench: nothing to measure: give at least one row count, drift, scenario and method")
	}
	for _, m := range cfg.Methods {
		if !slices.Contains(MethodNames, m) {
			return fmt.Errorf("bench: unknown method %q: want some of %s", m, strings.Join(MethodNames, ", "))
		}
	}
	for _, rows := range cfg.Rows {
		if rows <= 0 {
			return fmt.Errorf("bench: %d rows: a dataset needs at least one row", rows)
		}
		for _, d := range cfg.Drifts {
			if d < 0 || d > 1 {
				return fmt.Errorf("bench: drift %g: a fraction of the rows, from 0 to 1", d)
			}
			for _, name := range cfg.Scenarios {
				sc, err := NewScenario(name, cfg.Base, rows, d)
				if err == nil {
					err = sc.History.Check()
				}
				if err == nil {
					err = sc.Drift.Check()
				}
				if err != nil {
					return fmt.Errorf("bench: %w", err)
				}
			}
		}
	}
	return nil
}

// Run measures every method on every dataset of cfg and returns the report. Datasets
// are built (or taken from the cache) one at a time, just before they are measured.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if cfg.Reps == 0 {
		cfg.Reps = 1
	}
	if cfg.Base.Now == 0 {
		cfg.Base.Now = DefaultNow
	}
	runner := cfg.Runner
	if runner == nil {
		runner = RunJob
	}
	rep := &Report{Started: time.Now().UTC(), Machine: machine(), Config: RunConfig{
		Rows: cfg.Rows, Drifts: cfg.Drifts, Scenarios: cfg.Scenarios, Methods: cfg.Methods, Base: cfg.Base,
		Reps: cfg.Reps, ChunkRows: cfg.ChunkRows, HashBytes: cfg.HashBytes, Bulk: cfg.Bulk,
	}}
	for _, rows := range cfg.Rows {
		for _, name := range cfg.Scenarios {
			for _, d := range cfg.Drifts {
				sc, err := NewScenario(name, cfg.Base, rows, d)
				if err != nil {
					return rep, err
				}
				res, err := runDataset(ctx, &cfg, runner, sc, d, rep)
				rep.Results = append(rep.Results, res...)
				if err != nil {
					return rep, err
				}
				if cfg.Partial != nil {
					rep.Targets = CheckTargets(rep.Results)
					cfg.Partial(rep)
				}
			}
		}
	}
	rep.Targets = CheckTargets(rep.Results)
	return rep, nil
}

func runDataset(ctx context.Context, cfg *Config, runner func(context.Context, Job) (Result, error), sc Scenario, d float64, rep *Report) ([]Result, error) {
	var out []Result
	var badgerMethods []string
	sqlWanted := false
	for _, m := range cfg.Methods {
		if m == MethodPTTableSync {
			sqlWanted = true
		} else {
			badgerMethods = append(badgerMethods, m)
		}
	}
	if len(badgerMethods) > 0 {
		cfg.logf("dataset %s rows=%d drift=%g: fixture", sc.Name, sc.History.Rows, d)
		fx, err := Fixture{Dir: cfg.Dir, History: sc.History, Drift: sc.Drift, Bulk: cfg.Bulk}.Build()
		if err != nil {
			return out, fmt.Errorf("bench %s: %w", sc.Name, err)
		}
		if !fx.Cached {
			cfg.logf("  built in %.1f s", fx.BuildSeconds)
		}
		rep.Fixtures = append(rep.Fixtures, filepath.Dir(fx.Target))
		if !sc.KeepExpired {
			for _, p := range []string{fx.Source, fx.Target} {
				if err := Purge(p, sc.History.Now); err != nil {
					return out, fmt.Errorf("bench %s: %w", sc.Name, err)
				}
			}
		}
		var scan float64
		if cfg.Warm {
			if scan, err = scanBoth(ctx, fx, sc.History.Now); err != nil {
				return out, fmt.Errorf("bench %s: %w", sc.Name, err)
			}
		}
		for _, m := range badgerMethods {
			cfg.logf("  %s", m)
			job := Job{Scenario: sc, Drift: d, Fixture: fx, Method: m, Reps: cfg.Reps, ChunkRows: cfg.ChunkRows, HashBytes: cfg.HashBytes,
				Fanout: cfg.Session.Fanout, LeafMax: cfg.Session.LeafMax, FingerprintBytes: cfg.Session.FingerprintBytes}
			r, err := runner(ctx, job)
			if err != nil {
				return out, fmt.Errorf("bench %s rows=%d drift=%g %s: %w", sc.Name, sc.History.Rows, d, m, err)
			}
			r.ScanBothMS = scan
			out = append(out, r)
		}
	}
	if sqlWanted && (cfg.SQLScenarios == nil || slices.Contains(cfg.SQLScenarios, sc.Name)) {
		rs, err := runSQL(ctx, cfg, sc, d)
		out = append(out, rs...)
		if err != nil && !strings.HasPrefix(err.Error(), "bench") {
			err = fmt.Errorf("bench %s on MariaDB: %w", sc.Name, err)
		}
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// Purge removes the rows of the store at path that expired at now, as a live store does
// as they expire, and compacts it into one level (also when it removed none: a store
// purged before may hold a level-0 table from before Compact flushed the memtables).
func Purge(path string, now int64) error {
	s, err := badger.Open(path, badger.Options{})
	if err != nil {
		return err
	}
	_, err = s.PurgeExpired(context.Background(), now)
	if err == nil {
		err = s.Compact()
	}
	if err != nil {
		s.Close()
		return fmt.Errorf("purge %s: %w", path, err)
	}
	return s.Close()
}

func scanBoth(ctx context.Context, fx FixtureInfo, now int64) (float64, error) {
	t0 := time.Now()
	for _, p := range []string{fx.Source, fx.Target} {
		s, err := badger.Open(p, badger.Options{ReadOnly: true})
		if err != nil {
			return 0, err
		}
		_, err = ScanAll(ctx, s, now)
		s.Close()
		if err != nil {
			return 0, fmt.Errorf("scan %s: %w", p, err)
		}
	}
	return float64(time.Since(t0).Microseconds()) / 1000, nil
}

// RunJob runs one method on one dataset in this process: it opens both stores read-only,
// runs the method job.Reps times, and checks the plan of the last run against the truth.
func RunJob(ctx context.Context, job Job) (Result, error) {
	if job.SQL != nil {
		return runSQLJob(ctx, job)
	}
	sc := job.Scenario
	srcPath, dstPath := job.Fixture.Source, job.Fixture.Target
	if sc.Reverse {
		srcPath, dstPath = dstPath, srcPath
	}
	truth, err := ReadTruth(job.Fixture.Truth)
	if err != nil {
		return Result{}, err
	}
	if sc.Reverse {
		truth = truth.Reversed()
	}
	src, err := badger.Open(srcPath, badger.Options{ReadOnly: true})
	if err != nil {
		return Result{}, err
	}
	defer src.Close()
	dst, err := badger.Open(dstPath, badger.Options{ReadOnly: true})
	if err != nil {
		return Result{}, err
	}
	defer dst.Close()
	open := RSS()
	res, err := Measure(ctx, job, src, dst, truth)
	res.PeakRSS, res.OpenRSS, res.RSSScope = PeakRSS(), open, "process"
	return res, err
}

// Measure runs job's method between two open endpoints job.Reps times and checks its
// plan against truth.
func Measure(ctx context.Context, job Job, src, dst reconcile.Endpoint, truth Truth) (Result, error) {
	return measure(ctx, job, src, dst, truth, nil)
}

// measure is Measure with a hook called between the timed runs and the untimed work
// that follows them.
func measure(ctx context.Context, job Job, src, dst reconcile.Endpoint, truth Truth, timed func(*Result) error) (Result, error) {
	sc := job.Scenario
	now := sc.History.Now
	res := Result{Scenario: sc.Name, Rows: sc.History.Rows, Drift: job.Drift, Method: job.Method, Endpoint: "badger", Differing: len(truth), Reps: max(job.Reps, 1)}
	var walls, cpus []float64
	var last *baseline.Result
	for range res.Reps {
		runtime.GC()
		t0, c0 := time.Now(), CPUTime()
		r, err := runMethod(ctx, job, src, dst, now)
		cpu, wall := CPUTime()-c0, time.Since(t0)
		if err != nil {
			return res, err
		}
		walls = append(walls, float64(wall.Microseconds())/1000)
		cpus = append(cpus, float64(cpu.Microseconds())/1000)
		last = r
	}
	res.WallMS, res.CPUMS = median(walls), median(cpus)
	c := last.Cost
	res.EntriesSource, res.EntriesTarget, res.NodesSource, res.NodesTarget = c.EntriesSource, c.EntriesTarget, c.NodesSource, c.NodesTarget
	res.RowsRead = c.RowsSource + c.RowsTarget
	res.Reads = c.EntriesSource + c.EntriesTarget + c.NodesSource + c.NodesTarget + res.RowsRead
	res.BytesSent, res.BytesReceived, res.Bytes = c.BytesSent, c.BytesReceived, c.BytesSent+c.BytesReceived
	res.Rounds = c.Rounds
	res.OnlySource, res.OnlyTarget, res.Changed = last.Found.OnlySource, last.Found.OnlyTarget, last.Found.Changed
	if timed != nil {
		if err := timed(&res); err != nil {
			return res, err
		}
	}
	if job.Method == MethodReconcile {
		// The timed run is a diff, which reports counts; the keys come from an untimed
		// mirror run whose writes are recorded and not made.
		plan, err := reconcilePlan(ctx, job, src, dst, now)
		if err != nil {
			return res, err
		}
		last.Plan = plan
	}
	res.Verdict = Evaluate(last.Plan, truth)
	return res, nil
}

func runMethod(ctx context.Context, job Job, src, dst reconcile.Endpoint, now int64) (*baseline.Result, error) {
	switch job.Method {
	case MethodReconcile:
		opts := sessionOptions(job, now)
		rep, err := reconcile.Run(ctx, src, dst, opts)
		if err != nil {
			return nil, err
		}
		return &baseline.Result{
			Cost: baseline.Cost{
				EntriesSource: rep.EntriesReadSource, EntriesTarget: rep.EntriesReadTarget,
				NodesSource: rep.NodesReadSource, NodesTarget: rep.NodesReadTarget,
				BytesSent: rep.BytesSent, BytesReceived: rep.BytesReceived, Rounds: rep.Rounds,
			},
			Found: baseline.Found{OnlySource: rep.OnlySource, OnlyTarget: rep.OnlyTarget, Changed: rep.Changed},
		}, nil
	case MethodManifest:
		return baseline.Manifest{HashBytes: job.HashBytes}.Run(ctx, src, dst, now)
	case MethodChunked:
		return baseline.Chunked{ChunkRows: job.ChunkRows, HashBytes: job.HashBytes}.Run(ctx, src, dst, now)
	case MethodHighWater:
		return baseline.HighWater{}.Run(ctx, src, dst, now)
	}
	return nil, fmt.Errorf("method %q does not run on Badger stores", job.Method)
}

func sessionOptions(job Job, now int64) reconcile.Options {
	return reconcile.Options{Mode: reconcile.Diff, Now: now, Fanout: job.Fanout, LeafMax: job.LeafMax, FingerprintBytes: job.FingerprintBytes}
}

// reconcilePlan runs a mirror session against a target whose Apply records the changes
// instead of making them: the keys a sync would write.
func reconcilePlan(ctx context.Context, job Job, src, dst reconcile.Endpoint, now int64) (baseline.Plan, error) {
	rec := &recorder{Endpoint: dst}
	opts := sessionOptions(job, now)
	opts.Mode, opts.Force = reconcile.Mirror, true
	if _, err := reconcile.Run(ctx, src, rec, opts); err != nil {
		return baseline.Plan{}, fmt.Errorf("reconcile plan: %w", err)
	}
	return rec.plan, nil
}

// recorder is an endpoint whose Apply records the changes and writes nothing.
type recorder struct {
	reconcile.Endpoint
	plan baseline.Plan
}

func (r *recorder) Apply(_ context.Context, _ int64, changes []reconcile.Change) ([]reconcile.Outcome, error) {
	for _, c := range changes {
		k := append([]byte(nil), c.Key...)
		if c.Put != nil {
			r.plan.Upserts = append(r.plan.Upserts, k)
		} else {
			r.plan.Deletes = append(r.plan.Deletes, k)
		}
	}
	return make([]reconcile.Outcome, len(changes)), nil
}

// CPUTime is this process's CPU time so far (user + system).
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// PeakRSS is this process's peak resident set size so far, in bytes: VmHWM of
// /proc/self/status, the high-water mark of the process image since it started (its
// exec). getrusage's ru_maxrss is not used: for a child started by a Go program it starts
// at the parent's peak, since Go starts children from the parent's address space.
func PeakRSS() int64 { return procStatus("self", "VmHWM:") }

// RSS is this process's resident set size now, in bytes (VmRSS).
func RSS() int64 { return procStatus("self", "VmRSS:") }

// procStatus reads one kB field of /proc/PID/status, in bytes; 0 when unavailable.
func procStatus(pid, field string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n * 1024
			}
		}
	}
	return 0
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
