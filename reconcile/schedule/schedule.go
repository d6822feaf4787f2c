// Package schedule runs reconcile sessions on a schedule: named jobs, each a pair of
// endpoints reconciled every interval (with jitter), a timeout, a backoff after failures,
// a limit on how many runs go on at once, and no two runs of one pair (or writing one
// store) at the same time. It keeps Prometheus metrics and a bounded history of results
// per job, and serves them with /healthz and /readyz (Handler). `reconcile run` is this
// package behind a command line; a service embeds it with endpoints it opens itself
// (Options.Open).
//
// Shutdown: cancelling the context given to Run or RunOnce stops new runs at once and
// asks the runs in flight to stop where stopping loses nothing (reconcile.Options.Stop):
// before their next descent round or apply batch, the batch in flight completing. Runs
// that have not stopped when Config.GracePeriod ends have their contexts cancelled, so
// their open transaction writes nothing. Either way the target holds whole batches only,
// and the next run settles the rest.
package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/reconcile-dev/reconcile/reconcile"
)

// Role says which end of a job an endpoint is.
type Role int

const (
	// Source is read: the session's initiator, opened in this process.
	Source Role = iota
	// Target is compared with the source and, in mirror mode, written.
	Target
)

// String names the role as messages do: "source" or "target".
func (r Role) String() string {
	if r == Source {
		return "source"
	}
	return "target"
}

// OpenRequest is what an OpenFunc is asked to open for one run.
type OpenRequest struct {
	Job  string
	Role Role
	// URL is the endpoint as the configuration gives it.
	URL string
	// Password and Token are the secrets the configuration points at (read for this
	// run), "" when it gives none.
	Password, Token string
	// Write is set for a mirror's target; everything else may be opened read-only.
	Write bool
	// Like is, for a mirror's target, the source as this run opened it (nil where the
	// source is a Peer): an opener may create a missing target like it.
	Like reconcile.Endpoint
}

// Opened is an endpoint opened for one run: Endpoint (read and written in this process)
// or Peer (it answers over a network, such as a `reconcile serve` server). Where one side
// is a Peer the session runs next to the other (reconcile.RunPeer for a remote target,
// reconcile.RunFromPeer for a remote source); where both are, the source's Relay runs it.
type Opened struct {
	Endpoint reconcile.Endpoint
	Peer     reconcile.Peer
	// Relay, set on a Peer that can run a session itself (a `reconcile serve` server),
	// runs one from it as the source to target, another Peer, with this process carrying
	// the requests. Such a session runs on the server: Options.Stop ends it between the
	// requests this process carries, and a request in flight finishes or is cancelled at
	// the end of the grace period. Without Relay a job whose two endpoints are Peers fails.
	Relay func(ctx context.Context, target reconcile.Peer, opts reconcile.Options) (*reconcile.Report, error)
	// Close releases what Open took; nil means nothing to release.
	Close func() error
	// Mirrored, when set on a mirror's target, runs after a run that may have written to
	// it (not a dry run) ended without error, before Close: it records what the target
	// now mirrors (a Badger replica of a SQL table keeps the table's key format). An error
	// is logged; the run's result stands.
	Mirrored func() error
}

// OpenFunc opens an endpoint for one run. The scheduler opens both endpoints of a job at
// the start of each run and closes them at its end, so a store is not held between
// runs. It must honour ctx.
type OpenFunc func(ctx context.Context, req OpenRequest) (*Opened, error)

// CheckFunc validates an endpoint URL without opening anything, at New, and says what
// store it points at.
type CheckFunc func(url string, role Role) (Store, error)

// Store is what a CheckFunc says of an endpoint URL.
type Store struct {
	// Name is equal for two URLs naming one store (a relative and an absolute path, say):
	// the scheduler keeps runs on one store apart by it.
	Name string
}

// Options are what a Scheduler needs besides its Config.
type Options struct {
	// Open opens endpoints (required).
	Open OpenFunc
	// Check validates URLs at New (optional: without it a URL is first checked by its
	// first run, and URLs are compared as written).
	Check CheckFunc
	// Logger receives the scheduler's records and, with a "job" attribute, the sessions'
	// (nil: none).
	Logger *slog.Logger
	// Registry holds the metrics Handler serves at /metrics (nil: a new registry of the
	// scheduler's own). Register process and Go collectors on it as you see fit.
	Registry *prometheus.Registry
	// OnResult, when set, is called after each run on the job's goroutine, after the
	// run's endpoints are closed and before the job's next run is scheduled.
	OnResult func(Result)
}

// Status is how a run ended.
type Status string

const (
	// StatusOK: in sync, or synced.
	StatusOK Status = "ok"
	// StatusDiffer: a diff job found differences.
	StatusDiffer Status = "differ"
	// StatusPartial: a mirror finished with quarantined or raced rows, or wrote every
	// row and left the target unequal to the source (reconcile.Report.Diverged).
	StatusPartial Status = "partial"
	// StatusError: the run failed (including a sync refused by max-delete and a
	// timeout).
	StatusError Status = "error"
	// StatusStopped: shutdown stopped the run, or it never started.
	StatusStopped Status = "stopped"
)

// severity orders statuses from best to worst.
func (s Status) severity() int {
	switch s {
	case StatusOK:
		return 0
	case StatusDiffer:
		return 1
	case StatusPartial:
		return 2
	case StatusStopped:
		return 3
	}
	return 4
}

// ExitCode is the CLI's exit status for s: 0 ok, 1 differ, 2 error, 3 partial or
// stopped (the work is not all done; run again).
func (s Status) ExitCode() int {
	switch s {
	case StatusOK:
		return 0
	case StatusDiffer:
		return 1
	case StatusPartial, StatusStopped:
		return 3
	}
	return 2
}

// Worst returns the worst status of results (error, then stopped, partial, differ, ok);
// StatusOK for none.
func Worst(results []Result) Status {
	w := StatusOK
	for _, r := range results {
		if r.Status.severity() > w.severity() {
			w = r.Status
		}
	}
	return w
}

// Result is one finished run.
type Result struct {
	Job      string         `json:"job"`
	Mode     reconcile.Mode `json:"mode"`
	Started  time.Time      `json:"started"`
	Finished time.Time      `json:"finished"`
	Status   Status         `json:"status"`
	Error    string         `json:"error,omitempty"`
	// Waited is set when the run waited for another run on one of its endpoints.
	Waited bool `json:"waited,omitempty"`
	// Report is the session's report, as far as it got; nil when the run failed before
	// the session started (opening an endpoint, say).
	Report *reconcile.Report `json:"report,omitempty"`
	// Err is the run's error (Error is its text).
	Err error `json:"-"`
}

// Scheduler runs a Config's jobs. Create it with New; run it once with Run or RunOnce.
type Scheduler struct {
	cfg    Config
	opts   Options
	log    *slog.Logger
	reg    *prometheus.Registry
	m      *metrics
	claims *claims
	slots  chan struct{}
	jobs   []*jobState
	state  atomic.Int32
}

// Scheduler states, for /readyz.
const (
	stateIdle int32 = iota
	stateRunning
	stateDraining
	stateDone
)

// jobState is a job and what the scheduler knows of it.
type jobState struct {
	job    Job
	claims []claim

	mu          sync.Mutex
	history     []Result // oldest first, at most Config.History
	running     bool
	started     time.Time
	progress    reconcile.Progress
	next        time.Time
	failures    int // in a row
	lastSuccess time.Time
}

// New validates cfg (Config.Validate, then every URL with opts.Check) and returns a
// scheduler for it. Errors are a *ConfigError naming the job and field of each problem.
func New(cfg Config, opts Options) (*Scheduler, error) {
	if opts.Open == nil {
		return nil, errors.New("new scheduler: Options.Open is required")
	}
	cfg.Jobs = append([]Job(nil), cfg.Jobs...) // validate fills in defaults: not in the caller's slice
	var p problems
	cfg.validate(&p)
	stores := checkEndpoints(cfg.Jobs, opts.Check, &p)
	if err := p.err(); err != nil {
		return nil, err
	}
	s := &Scheduler{cfg: cfg, opts: opts, log: opts.Logger, reg: opts.Registry, claims: newClaims(), slots: make(chan struct{}, cfg.Concurrency)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.reg == nil {
		s.reg = prometheus.NewRegistry()
	}
	for i, j := range cfg.Jobs {
		src, tgt := stores[i][0], stores[i][1]
		for _, e := range []struct {
			field string
			ep    EndpointConfig
		}{{"source", j.Source}, {"target", j.Target}} {
			if u, err := url.Parse(e.ep.URL); err == nil && u.User != nil {
				if _, ok := u.User.Password(); ok {
					s.log.Warn("a password is written in the config: give it with password-file or password-env instead", "job", j.Name, "field", e.field)
				}
			}
		}
		// Runs of one pair never overlap (either direction); a mirror's target is written
		// by one run at a time and read by none meanwhile.
		a, b := min(src, tgt), max(src, tgt)
		cl := []claim{{key: "pair\x00" + a + "\x00" + b, exclusive: true}, {key: "store\x00" + src}, {key: "store\x00" + tgt, exclusive: j.Mode == reconcile.Mirror}}
		s.jobs = append(s.jobs, &jobState{job: j, claims: cl})
	}
	m, err := newMetrics(s.reg, cfg.Jobs)
	if err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	s.m = m
	return s, nil
}

// Registry returns the registry the scheduler's metrics are in.
func (s *Scheduler) Registry() *prometheus.Registry { return s.reg }

// Run runs every job on its schedule until ctx is cancelled, then shuts down as the
// package doc describes and returns nil. It may be called once per Scheduler.
func (s *Scheduler) Run(ctx context.Context) error {
	if !s.state.CompareAndSwap(stateIdle, stateRunning) {
		return errors.New("run scheduler: already started")
	}
	s.log.Info("scheduler started", "jobs", len(s.jobs), "concurrency", s.cfg.Concurrency)
	s.supervise(ctx, func(hard context.Context) {
		var wg sync.WaitGroup
		for _, js := range s.jobs {
			wg.Go(func() { s.loop(ctx, hard, js) })
		}
		wg.Wait()
	})
	s.state.Store(stateDone)
	s.log.Info("scheduler stopped")
	return nil
}

// RunOnce runs every job once (at most Config.Concurrency at a time, runs of one pair one
// after the other) and returns their results in the order of Config.Jobs. Cancelling ctx
// shuts down as Run does; jobs that had not started then are StatusStopped. It may be
// called once per Scheduler, instead of Run.
func (s *Scheduler) RunOnce(ctx context.Context) ([]Result, error) {
	if !s.state.CompareAndSwap(stateIdle, stateRunning) {
		return nil, errors.New("run scheduler once: already started")
	}
	results := make([]Result, len(s.jobs))
	s.supervise(ctx, func(hard context.Context) {
		// One goroutine per job (their number is the config's): runJob bounds the runs
		// with the scheduler's slots. A limit on the goroutines here would let jobs that
		// wait for another run of their pair hold places that jobs of other pairs could
		// run in.
		var wg sync.WaitGroup
		for i, js := range s.jobs {
			wg.Go(func() { results[i] = s.runJob(ctx, hard, js) })
		}
		wg.Wait()
	})
	s.state.Store(stateDone)
	return results, nil
}

// supervise calls work with a context for the runs' sessions (hard), which outlives ctx:
// the sessions stop at ctx's cancellation through reconcile.Options.Stop, finishing the
// batch in flight. When ctx is cancelled supervise waits up to the grace period for work
// to return, then cancels hard and waits for it.
func (s *Scheduler) supervise(ctx context.Context, work func(hard context.Context)) {
	hard, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHard()
	done := make(chan struct{})
	go func() {
		defer close(done)
		work(hard)
	}()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	s.state.Store(stateDraining)
	s.log.Info("shutting down: no new runs; runs in flight finish their current batch", "grace_period", s.cfg.GracePeriod.String())
	t := time.NewTimer(s.cfg.GracePeriod)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.log.Warn("grace period over: cancelling the runs still going; their open batch writes nothing")
		cancelHard()
		<-done
	}
}

// loop runs one job on its schedule until ctx is done.
func (s *Scheduler) loop(ctx, hard context.Context, js *jobState) {
	delay := jitter(js.job.Jitter)
	for {
		js.setNext(time.Now().Add(delay))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		res := s.runJob(ctx, hard, js)
		if ctx.Err() != nil {
			return
		}
		delay = js.nextDelay(res)
		s.log.Debug("next run", "job", js.job.Name, "in_ms", delay.Milliseconds())
	}
}

// jitter returns a random duration in [0, j).
func jitter(j time.Duration) time.Duration {
	if j <= 0 {
		return 0
	}
	return rand.N(j)
}

// nextDelay is the wait before the job's next run: its interval after a run that did
// not fail, its backoff (doubled for each failure in a row, up to MaxBackoff) after one
// that did; plus jitter.
func (js *jobState) nextDelay(r Result) time.Duration {
	j := js.job
	if r.Status != StatusError {
		return j.Interval + jitter(j.Jitter)
	}
	js.mu.Lock()
	n := js.failures
	js.mu.Unlock()
	d := j.Backoff
	for i := 1; i < n && d < j.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, j.MaxBackoff) + jitter(j.Jitter)
}

func (js *jobState) setNext(t time.Time) {
	js.mu.Lock()
	js.next = t
	js.mu.Unlock()
}

// runJob runs js once: it waits for the job's claims and a slot, opens both endpoints,
// runs the session and records the result.
func (s *Scheduler) runJob(ctx, hard context.Context, js *jobState) Result {
	j := js.job
	res := Result{Job: j.Name, Mode: j.Mode, Started: time.Now()}
	notStarted := func() Result {
		res.Status, res.Err = StatusStopped, errors.New("not started: shutting down")
		res.Error, res.Finished = res.Err.Error(), time.Now()
		return res
	}
	waited, err := s.claims.acquire(ctx, js.claims)
	if err != nil {
		return notStarted()
	}
	defer s.claims.release(js.claims)
	if waited {
		s.log.Info("waited for another run on the same endpoints", "job", j.Name, "waited_ms", time.Since(res.Started).Milliseconds())
	}
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return notStarted()
	}
	defer func() { <-s.slots }()
	select {
	case <-ctx.Done():
		return notStarted()
	default:
	}

	res.Started, res.Waited = time.Now(), waited
	js.mu.Lock()
	js.running, js.started, js.progress = true, res.Started, reconcile.Progress{Phase: "open"}
	js.mu.Unlock()
	s.m.running.WithLabelValues(j.Name).Set(1)

	runCtx, cancel := context.WithTimeout(hard, j.Timeout)
	rep, err := s.session(runCtx, js, ctx.Done())
	timedOut := errors.Is(runCtx.Err(), context.DeadlineExceeded)
	cancel()
	res.Finished, res.Report = time.Now(), rep
	switch {
	case errors.Is(err, reconcile.ErrStopped):
		res.Status = StatusStopped
	case err != nil:
		res.Status = StatusError
		if timedOut {
			err = fmt.Errorf("timed out after %s: %w", j.Timeout, err)
		} else if hard.Err() != nil {
			err = fmt.Errorf("cancelled when the shutdown grace period ended: %w", err)
		}
	case j.Mode == reconcile.Mirror && rep.Partial():
		res.Status = StatusPartial
		res.Error = "sync " + rep.PartialReason()
	case j.Mode == reconcile.Diff && rep.Differ():
		res.Status = StatusDiffer
	default:
		res.Status = StatusOK
	}
	if err != nil {
		res.Err, res.Error = err, err.Error()
	}
	s.record(js, res)
	if s.opts.OnResult != nil {
		s.opts.OnResult(res)
	}
	return res
}

// session opens the job's endpoints and runs one session between them.
func (s *Scheduler) session(ctx context.Context, js *jobState, stop <-chan struct{}) (*reconcile.Report, error) {
	j := js.job
	src, err := s.open(ctx, j, Source, j.Source, nil, false)
	if err != nil {
		return nil, err
	}
	defer src.close(s.log, j.Name, Source)
	var like reconcile.Endpoint
	if j.Mode == reconcile.Mirror {
		like = src.Endpoint
	}
	tgt, err := s.open(ctx, j, Target, j.Target, like, j.Mode == reconcile.Mirror)
	if err != nil {
		return nil, err
	}
	defer tgt.close(s.log, j.Name, Target)

	opts := j.Session
	opts.Mode, opts.Stop, opts.Progress = j.Mode, stop, nil
	opts.Logger = s.log.With("job", j.Name)
	opts.Observer = observer{js}
	var rep *reconcile.Report
	switch {
	case src.Endpoint != nil && tgt.Peer != nil:
		rep, err = reconcile.RunPeer(ctx, src.Endpoint, tgt.Peer, opts)
	case src.Peer != nil && tgt.Endpoint != nil:
		rep, err = reconcile.RunFromPeer(ctx, src.Peer, tgt.Endpoint, opts)
	case src.Endpoint != nil && tgt.Endpoint != nil:
		rep, err = reconcile.Run(ctx, src.Endpoint, tgt.Endpoint, opts)
	case src.Peer != nil && tgt.Peer != nil && src.Relay != nil:
		rep, err = src.Relay(ctx, tgt.Peer, opts)
	case src.Peer != nil && tgt.Peer != nil:
		return nil, fmt.Errorf("run: both endpoints answer as peers and the source cannot relay a session to the target")
	default:
		return nil, fmt.Errorf("run: the opener returned neither an endpoint nor a peer")
	}
	if err == nil && j.Mode == reconcile.Mirror && !opts.DryRun && tgt.Mirrored != nil {
		if err := tgt.Mirrored(); err != nil {
			s.log.Warn("after the run", "job", j.Name, "role", Target.String(), "error", err)
		}
	}
	return rep, err
}

// open reads an endpoint's secrets and opens it.
func (s *Scheduler) open(ctx context.Context, j Job, role Role, e EndpointConfig, like reconcile.Endpoint, write bool) (*Opened, error) {
	password, token, err := e.secrets()
	if err != nil {
		return nil, fmt.Errorf("open %s %s: %w", role, e.Redacted(), err)
	}
	o, err := s.opts.Open(ctx, OpenRequest{Job: j.Name, Role: role, URL: e.URL, Password: password, Token: token, Write: write, Like: like})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", role, err)
	}
	if o == nil || (o.Endpoint == nil) == (o.Peer == nil) {
		return nil, fmt.Errorf("open %s %s: the opener must return an endpoint or a peer", role, e.Redacted())
	}
	return o, nil
}

func (o *Opened) close(log *slog.Logger, job string, role Role) {
	if o.Close == nil {
		return
	}
	if err := o.Close(); err != nil {
		log.Warn("close endpoint", "job", job, "role", role.String(), "error", err)
	}
}

// observer keeps a job's live progress for /jobs.
type observer struct{ js *jobState }

// Progress keeps the session's latest progress.
func (o observer) Progress(p reconcile.Progress) {
	o.js.mu.Lock()
	o.js.progress = p
	o.js.mu.Unlock()
}

// Finished does nothing: runJob records the result.
func (o observer) Finished(*reconcile.Report, error) {}

// record keeps a finished run in the job's state, history and metrics, and logs it.
func (s *Scheduler) record(js *jobState, r Result) {
	js.mu.Lock()
	js.running = false
	switch r.Status {
	case StatusError:
		js.failures++
	case StatusStopped:
	default:
		js.failures = 0
		js.lastSuccess = r.Finished
	}
	failures := js.failures
	h := r
	if h.Report != nil && len(h.Report.QuarantinedRows) > reconcile.DifferenceSample {
		c := *h.Report
		c.QuarantinedRows = c.QuarantinedRows[:reconcile.DifferenceSample]
		h.Report = &c
	}
	js.history = append(js.history, h)
	if over := len(js.history) - s.cfg.History; over > 0 {
		js.history = append(js.history[:0], js.history[over:]...)
	}
	js.mu.Unlock()

	s.m.record(&r, failures)
	s.m.running.WithLabelValues(r.Job).Set(0)
	attrs := []any{"job", r.Job, "status", string(r.Status), "duration_ms", r.Finished.Sub(r.Started).Milliseconds()}
	if rep := r.Report; rep != nil {
		attrs = append(attrs, "only_source", rep.OnlySource, "only_target", rep.OnlyTarget, "changed", rep.Changed,
			"upserted", rep.Upserted, "deleted", rep.Deleted, "quarantined", rep.Quarantined, "raced", rep.Raced, "rounds", rep.Rounds)
	}
	switch r.Status {
	case StatusError:
		s.log.Error("run failed", append(attrs, "consecutive_failures", failures, "error", r.Error)...)
	case StatusStopped:
		s.log.Info("run stopped", append(attrs, "error", r.Error)...)
	case StatusPartial:
		s.log.Warn("run finished", append(attrs, "error", r.Error)...)
	default:
		s.log.Info("run finished", attrs...)
	}
}
