package schedule

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reconcile-dev/reconcile/adapters/badger"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// allRows lets a mirror delete anything: the tests' drift deletes more than 10%.
func allRows() reconcile.Options {
	l, _ := reconcile.ParseDeleteLimit("100%")
	return reconcile.Options{MaxDelete: l}
}

// driftBadger changes the source (updates, deletes, inserts) and damages the target
// (changed values at the same version, deleted rows, rows the source never had). It
// returns the rows the next mirror run must write.
func driftBadger(t *testing.T, src, dst string, round int) (upserts, deletes int) {
	base := uint64(10_000 * round)
	withBadger(t, src, func(s *badger.Store) {
		putRows(t, s, round*10, round*10+20, base, fmt.Sprintf("updated in round %d", round)) // 20 updates
		for i := 300 + round*5; i < 300+round*5+5; i++ {                                      // 5 deletes
			if err := s.Delete([]byte(fmt.Sprintf("key%05d", i))); err != nil {
				t.Fatal(err)
			}
		}
		putRows(t, s, 1000+round*10, 1000+round*10+10, base, "inserted") // 10 inserts
	})
	withBadger(t, dst, func(s *badger.Store) {
		// Same versions as the source, other values: found by the value hash.
		for i := 200 + round*3; i < 200+round*3+3; i++ {
			if err := s.Put([]byte(fmt.Sprintf("key%05d", i)), []byte("damaged"), 1+uint64(i), 0); err != nil {
				t.Fatal(err)
			}
		}
		for i := 400 + round*2; i < 400+round*2+2; i++ { // lost on the replica
			if err := s.Delete([]byte(fmt.Sprintf("key%05d", i))); err != nil {
				t.Fatal(err)
			}
		}
		putRows(t, s, 5000+round*4, 5000+round*4+4, base, "stray") // the source never had them
	})
	return 20 + 10 + 3 + 2, 5 + 4
}

// driftSQL changes the source table and damages the target table.
func driftSQL(t *testing.T, src *sqlDB, srcTable string, round int) (upserts, deletes int) {
	v := 10_000 * round
	src.exec(t,
		fmt.Sprintf("UPDATE %s SET name = 'round %d', ver = ver + %d WHERE id < 1000 AND id %% 10 = %d", srcTable, round, v, round), // 20 of 200
		fmt.Sprintf("DELETE FROM %s WHERE id %% 50 = %d", srcTable, 25+round),                                                       // 4 of 200, none of them updated
		fmt.Sprintf("INSERT INTO %s (id, name, ver) VALUES (%d, 'new', %d), (%d, 'new', %d)", srcTable, 1000+2*round, v, 1001+2*round, v),
	)
	return 20 + 2, 4
}

// TestDaemonConverges runs the daemon with a Badger-to-Badger mirror and a SQLite-to-Badger
// mirror, injects drift on both sides after each run, and checks that every run repairs
// exactly the drift of the round before: each pair converges in one run.
func TestDaemonConverges(t *testing.T) {
	bsrc, bdst := badgerStore(t, "src"), badgerStore(t, "dst")
	withBadger(t, bsrc, func(s *badger.Store) { putRows(t, s, 0, 600, 1, "v1") })
	lite := sqliteDB(t)
	ltable := lite.table(t)
	for i := 0; i < 200; i++ {
		lite.exec(t, fmt.Sprintf("INSERT INTO %s (id, name, ver) VALUES (%d, 'row %d', %d)", tableName(ltable), i, i, i+1))
	}
	ldst := badgerStore(t, "from-sqlite")

	const rounds = 4
	cfg := Config{Concurrency: 2, Jobs: []Job{
		{Name: "badger", Source: EndpointConfig{URL: bsrc}, Target: EndpointConfig{URL: bdst}, Mode: reconcile.Mirror, Interval: time.Millisecond, Session: allRows()},
		{Name: "sqlite", Source: EndpointConfig{URL: ltable}, Target: EndpointConfig{URL: ldst}, Mode: reconcile.Mirror, Interval: time.Millisecond, Session: allRows()},
	}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := &opener{}
	var mu sync.Mutex
	runs := map[string]int{}
	want := map[string][2]int{"badger": {600, 0}, "sqlite": {200, 0}} // the first run copies everything
	done := map[string]bool{}
	s, err := New(cfg, Options{Open: o.open, OnResult: func(r Result) {
		mu.Lock()
		defer mu.Unlock()
		if done[r.Job] {
			return
		}
		runs[r.Job]++
		n := runs[r.Job]
		if r.Status != StatusOK || r.Report == nil {
			t.Errorf("%s run %d: %s %s", r.Job, n, r.Status, r.Error)
			cancel()
			return
		}
		w := want[r.Job]
		if r.Report.Upserted != w[0] || r.Report.Deleted != w[1] {
			t.Errorf("%s run %d: upserted %d deleted %d, want %d and %d", r.Job, n, r.Report.Upserted, r.Report.Deleted, w[0], w[1])
		}
		src, dst := bsrc, bdst
		if r.Job == "sqlite" {
			src, dst = ltable, ldst
		}
		if a, b := rootOf(t, src), rootOf(t, dst); a != b {
			t.Errorf("%s run %d: roots differ after the run: %s vs %s", r.Job, n, a, b)
		}
		if n > rounds {
			done[r.Job] = true
			if len(done) == 2 {
				cancel()
			}
			return
		}
		var u, d int
		if r.Job == "badger" {
			u, d = driftBadger(t, bsrc, bdst, n)
		} else {
			u, d = driftSQL(t, lite, tableName(ltable), n)
		}
		want[r.Job] = [2]int{u, d}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if len(done) != 2 {
		t.Fatalf("runs %v: the daemon stopped before every job converged", runs)
	}
	if len(o.overlaps) > 0 {
		t.Fatalf("stores opened for writing twice at once: %v", o.overlaps)
	}
}

// TestSQLiteToPostgres runs a mirror from SQLite into PostgreSQL through the scheduler,
// with drift injected between runs.
func TestSQLiteToPostgres(t *testing.T) {
	pg := postgresDB(t)
	lite := sqliteDB(t)
	src, dst := lite.table(t), pg.table(t)
	for i := 0; i < 200; i++ {
		lite.exec(t, fmt.Sprintf("INSERT INTO %s (id, name, ver) VALUES (%d, 'row %d', %d)", tableName(src), i, i, i+1))
	}
	pg.exec(t, fmt.Sprintf("INSERT INTO %s (id, name, ver) VALUES (7, 'stale', 1), (9999, 'stray', 5)", tableName(dst)))
	o := &opener{}
	for round := 1; round <= 3; round++ {
		s, err := New(Config{Jobs: []Job{{Name: "pg", Source: EndpointConfig{URL: src}, Target: EndpointConfig{URL: dst}, Mode: reconcile.Mirror, Interval: time.Hour, Session: allRows()}}}, Options{Open: o.open})
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.RunOnce(context.Background())
		if err != nil || res[0].Status != StatusOK {
			t.Fatalf("round %d: %v %+v", round, err, res)
		}
		if a, b := rootOf(t, src), rootOf(t, dst); a != b {
			t.Fatalf("round %d: roots differ: %s vs %s", round, a, b)
		}
		driftSQL(t, lite, tableName(src), round)
		pg.exec(t, fmt.Sprintf("UPDATE %s SET name = 'damaged' WHERE id = %d", tableName(dst), 100+round))
	}
}

// TestOverlapPrevented holds the first run of a pair (whichever of its two jobs starts
// first) while it opens its endpoints, and checks that the other job of the pair (the
// other way round) waits for it, while a job of another pair runs meanwhile; concurrency 2.
func TestOverlapPrevented(t *testing.T) {
	a, b := badgerStore(t, "a"), badgerStore(t, "b")
	c, d := badgerStore(t, "c"), badgerStore(t, "d")
	withBadger(t, a, func(s *badger.Store) { putRows(t, s, 0, 50, 1, "a") })
	withBadger(t, c, func(s *badger.Store) { putRows(t, s, 0, 50, 1, "c") })
	o := &opener{}
	var mu sync.Mutex
	var order []string
	first := ""
	entered, release := make(chan struct{}), make(chan struct{})
	open := func(ctx context.Context, req OpenRequest) (*Opened, error) {
		if req.Role == Source && req.Job != "c-to-d" {
			mu.Lock()
			hold := first == ""
			if hold {
				first = req.Job
			}
			mu.Unlock()
			if hold {
				close(entered)
				<-release
			}
		}
		return o.open(ctx, req)
	}
	cfg := Config{Concurrency: 2, Jobs: []Job{
		{Name: "a-to-b", Source: EndpointConfig{URL: a}, Target: EndpointConfig{URL: b}, Mode: reconcile.Mirror, Interval: time.Hour},
		{Name: "b-vs-a", Source: EndpointConfig{URL: b}, Target: EndpointConfig{URL: a}, Mode: reconcile.Diff, Interval: time.Hour},
		{Name: "c-to-d", Source: EndpointConfig{URL: c}, Target: EndpointConfig{URL: d}, Mode: reconcile.Mirror, Interval: time.Hour},
	}}
	var s *Scheduler
	s, err := New(cfg, Options{Open: open, OnResult: func(r Result) {
		mu.Lock()
		order = append(order, r.Job)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		// Let the held run go on only once the other job of its pair waits for it and
		// c-to-d has finished.
		<-entered
		defer close(release)
		for i := 0; i < 10000; i++ { // at most 10 s, then let the test fail
			mu.Lock()
			cd := len(order) == 1 && order[0] == "c-to-d"
			mu.Unlock()
			if cd && s.claims.waiters() == 1 {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	res, err := s.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Result{}
	for _, r := range res {
		byName[r.Job] = r
	}
	second := "b-vs-a"
	if first == "b-vs-a" {
		second = "a-to-b"
	}
	if got, want := strings.Join(order, " "), "c-to-d "+first+" "+second; got != want {
		t.Fatalf("runs finished in the order %s, want %s", got, want)
	}
	r1, r2 := byName[first], byName[second]
	if !r2.Waited || r1.Waited || r2.Started.Before(r1.Finished) {
		t.Fatalf("%s ran %v-%v (waited %v), %s %v-%v (waited %v): want the second to wait for the first",
			first, r1.Started, r1.Finished, r1.Waited, second, r2.Started, r2.Finished, r2.Waited)
	}
	if ab := byName["a-to-b"]; ab.Status != StatusOK || ab.Report.Upserted != 50 || byName["c-to-d"].Status != StatusOK {
		t.Fatalf("results %+v", res)
	}
	// The diff finds b equal to a only if it ran after the mirror.
	if want := map[string]Status{"a-to-b": StatusOK, "b-vs-a": StatusDiffer}[first]; byName["b-vs-a"].Status != want {
		t.Fatalf("b-vs-a ran after %s: %s, want %s", first, byName["b-vs-a"].Status, want)
	}
}

// TestConcurrencyLimit runs four jobs of separate pairs with a limit of two, each holding
// its apply until another run is going on: at most two ever run at once.
func TestConcurrencyLimit(t *testing.T) {
	const n = 4
	var mu sync.Mutex
	active, peak, entered := 0, 0, 0
	var jobs []Job
	for i := 0; i < n; i++ {
		src := badgerStore(t, fmt.Sprintf("src%d", i))
		withBadger(t, src, func(s *badger.Store) { putRows(t, s, 0, 10, 1, "x") })
		jobs = append(jobs, Job{Name: fmt.Sprintf("j%d", i), Source: EndpointConfig{URL: src}, Target: EndpointConfig{URL: badgerStore(t, fmt.Sprintf("dst%d", i))}, Mode: reconcile.Mirror, Interval: time.Hour})
	}
	o := &opener{wrap: func(job string, ep reconcile.Endpoint) reconcile.Endpoint {
		return &paired{Endpoint: ep, enter: func() func() {
			mu.Lock()
			active++
			entered++
			peak = max(peak, active)
			mu.Unlock()
			// Wait (bounded) for a second run to be going on, so runs overlap when they may;
			// the last run to come has no one to wait for.
			for i := 0; i < 10000; i++ {
				mu.Lock()
				go2 := active >= 2 || entered == n
				mu.Unlock()
				if go2 {
					break
				}
				time.Sleep(time.Millisecond)
			}
			return func() {
				mu.Lock()
				active--
				mu.Unlock()
			}
		}}
	}}
	s, err := New(Config{Concurrency: 2, Jobs: jobs}, Options{Open: o.open})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.RunOnce(context.Background())
	if err != nil || Worst(res) != StatusOK {
		t.Fatalf("err %v, results %+v", err, res)
	}
	if peak != 2 {
		t.Fatalf("at most %d runs went on at once, want 2", peak)
	}
}

// paired calls enter around each Apply.
type paired struct {
	reconcile.Endpoint
	enter func() (leave func())
}

func (p *paired) Apply(ctx context.Context, now int64, cs []reconcile.Change) ([]reconcile.Outcome, error) {
	leave := p.enter()
	defer leave()
	return p.Endpoint.Apply(ctx, now, cs)
}

// stopping calls onBatch before each Apply of a target.
type stopping struct {
	reconcile.Endpoint
	onBatch func(ctx context.Context, n int) error
	n       int
}

func (s *stopping) Apply(ctx context.Context, now int64, cs []reconcile.Change) ([]reconcile.Outcome, error) {
	s.n++
	if err := s.onBatch(ctx, s.n); err != nil {
		return nil, err
	}
	return s.Endpoint.Apply(ctx, now, cs)
}

// TestShutdownMidRun stops the daemon while a mirror writes its second batch: that batch
// completes, no other starts, the daemon returns, and the target holds exactly the rows
// the run reports; a later run writes the rest. Then the same with a batch that does not
// finish within the grace period: it is cancelled and writes nothing.
func TestShutdownMidRun(t *testing.T) {
	src, dst := badgerStore(t, "src"), badgerStore(t, "dst")
	withBadger(t, src, func(s *badger.Store) { putRows(t, s, 0, 3000, 1, "value") })
	count := func(u string) int {
		n := 0
		withBadger(t, u, func(s *badger.Store) {
			if err := s.Scan(nil, func(reconcile.Row) bool { n++; return true }); err != nil {
				t.Fatal(err)
			}
		})
		return n
	}
	job := Job{Name: "m", Source: EndpointConfig{URL: src}, Target: EndpointConfig{URL: dst}, Mode: reconcile.Mirror, Interval: time.Hour,
		Session: reconcile.Options{BatchRows: 100}}

	// SIGTERM during the second batch.
	ctx, cancel := context.WithCancel(context.Background())
	o := &opener{wrap: func(_ string, ep reconcile.Endpoint) reconcile.Endpoint {
		return &stopping{Endpoint: ep, onBatch: func(_ context.Context, n int) error {
			if n == 2 {
				cancel()
			}
			return nil
		}}
	}}
	var results []Result
	s, err := New(Config{Jobs: []Job{job}}, Options{Open: o.open, OnResult: func(r Result) { results = append(results, r) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if len(results) != 1 || results[0].Status != StatusStopped || !errors.Is(results[0].Err, reconcile.ErrStopped) {
		t.Fatalf("results %+v, want one stopped run", results)
	}
	const stoppedAt = 300 // batches of 100 and 200
	if up, held := results[0].Report.Upserted, count(dst); up != stoppedAt || held != stoppedAt {
		t.Fatalf("the stopped run reports %d rows written, the target holds %d; want the two whole batches, %d", up, held, stoppedAt)
	}

	// Past the grace period: the batch in flight is cancelled and writes nothing.
	ctx, cancel = context.WithCancel(context.Background())
	o = &opener{wrap: func(_ string, ep reconcile.Endpoint) reconcile.Endpoint {
		return &stopping{Endpoint: ep, onBatch: func(bctx context.Context, n int) error {
			if n == 2 {
				cancel()
				<-bctx.Done() // a write that hangs until it is abandoned
				return bctx.Err()
			}
			return nil
		}}
	}}
	results = nil
	s, err = New(Config{GracePeriod: 20 * time.Millisecond, Jobs: []Job{job}}, Options{Open: o.open, OnResult: func(r Result) { results = append(results, r) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if len(results) != 1 || results[0].Status != StatusError || !strings.Contains(results[0].Error, "grace period") {
		t.Fatalf("results %+v, want one run cancelled at the end of the grace period", results)
	}
	if up := results[0].Report.Upserted; up != 100 || count(dst) != stoppedAt+100 {
		t.Fatalf("the cancelled run reports %d rows written, the target holds %d; want 100 and %d", up, count(dst), stoppedAt+100)
	}

	// Nothing was lost: the next run writes the rest and the copies are equal.
	o = &opener{}
	s, err = New(Config{Jobs: []Job{job}}, Options{Open: o.open})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.RunOnce(context.Background())
	if err != nil || res[0].Status != StatusOK || res[0].Report.Upserted != 3000-stoppedAt-100 {
		t.Fatalf("rerun: %v %+v", err, res)
	}
	if a, b := rootOf(t, src), rootOf(t, dst); a != b {
		t.Fatalf("roots differ after the rerun: %s vs %s", a, b)
	}
}

// refusing fails every batch holding key.
type refusing struct {
	reconcile.Endpoint
	key string
}

func (r refusing) Apply(ctx context.Context, now int64, cs []reconcile.Change) ([]reconcile.Outcome, error) {
	for _, c := range cs {
		if string(c.Key) == r.key {
			return nil, errors.New("row refused by the target")
		}
	}
	return r.Endpoint.Apply(ctx, now, cs)
}

// TestRunOnceStatuses runs one job of each outcome once: the results, the worst status
// and its exit code.
func TestRunOnceStatuses(t *testing.T) {
	same1, same2 := badgerStore(t, "same1"), badgerStore(t, "same2")
	withBadger(t, same1, func(s *badger.Store) { putRows(t, s, 0, 20, 1, "x") })
	withBadger(t, same2, func(s *badger.Store) { putRows(t, s, 0, 20, 1, "x") })
	differ := badgerStore(t, "differ")
	withBadger(t, differ, func(s *badger.Store) { putRows(t, s, 0, 25, 1, "x") })
	poisonSrc, poisonDst := badgerStore(t, "poison-src"), badgerStore(t, "poison-dst")
	withBadger(t, poisonSrc, func(s *badger.Store) { putRows(t, s, 0, 30, 1, "x") })
	o := &opener{wrap: func(job string, ep reconcile.Endpoint) reconcile.Endpoint {
		if job == "partial" {
			return refusing{Endpoint: ep, key: "key00007"}
		}
		return ep
	}}
	mk := func(name, src, dst string, mode reconcile.Mode) Job {
		return Job{Name: name, Source: EndpointConfig{URL: src}, Target: EndpointConfig{URL: dst}, Mode: mode, Interval: time.Hour}
	}
	jobs := []Job{
		mk("ok", same1, same2, reconcile.Diff),
		mk("differ", differ, same2, reconcile.Diff),
		mk("partial", poisonSrc, poisonDst, reconcile.Mirror),
		mk("error", same1, "badger:///no/such/store", reconcile.Diff),
	}
	var logs bytes.Buffer
	s, err := New(Config{Concurrency: 4, Jobs: jobs}, Options{Open: o.open, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []Status{StatusOK, StatusDiffer, StatusPartial, StatusError} {
		if res[i].Status != want || res[i].Job != jobs[i].Name {
			t.Errorf("%s: %s (%s), want %s", res[i].Job, res[i].Status, res[i].Error, want)
		}
	}
	if res[2].Report.Quarantined != 1 || res[2].Report.Upserted != 29 {
		t.Errorf("partial: %+v", res[2].Report)
	}
	if !strings.Contains(res[3].Error, "open target") || !strings.Contains(res[3].Error, "no store there") {
		t.Errorf("error: %q", res[3].Error)
	}
	if w := Worst(res); w != StatusError || w.ExitCode() != 2 {
		t.Errorf("worst %s exit %d, want error and 2", w, w.ExitCode())
	}
	if w := Worst(res[:3]); w != StatusPartial || w.ExitCode() != 3 {
		t.Errorf("worst of the first three %s exit %d, want partial and 3", w, w.ExitCode())
	}
	if w := Worst(res[:2]); w.ExitCode() != 1 {
		t.Errorf("worst of ok and differ exits %d, want 1", w.ExitCode())
	}
	for _, want := range []string{`"msg":"run failed","job":"error","status":"error"`, `"msg":"run finished","job":"partial","status":"partial"`, `"msg":"apply: row quarantined","job":"partial","key":"key00007"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s:\n%s", want, logs.String())
		}
	}
	if _, err := s.RunOnce(context.Background()); err == nil {
		t.Error("a second RunOnce on one scheduler must fail")
	}
}

// TestMirroredHook: a mirror's target hears that the run wrote to it (Opened.Mirrored)
// after a run that ended without error, and not after a dry run, a diff or a failed run.
func TestMirroredHook(t *testing.T) {
	src, dst, dry := badgerStore(t, "src"), badgerStore(t, "dst"), badgerStore(t, "dry")
	withBadger(t, src, func(s *badger.Store) { putRows(t, s, 0, 20, 1, "x") })
	dryRun := reconcile.Options{DryRun: true}
	jobs := []Job{
		{Name: "mirror", Source: EndpointConfig{URL: src}, Target: EndpointConfig{URL: dst}, Mode: reconcile.Mirror, Interval: time.Hour},
		{Name: "dry", Source: EndpointConfig{URL: src}, Target: EndpointConfig{URL: dry}, Mode: reconcile.Mirror, Interval: time.Hour, Session: dryRun},
		{Name: "diff", Source: EndpointConfig{URL: src}, Target: EndpointConfig{URL: dst}, Mode: reconcile.Diff, Interval: time.Hour},
		{Name: "refused", Source: EndpointConfig{URL: dry}, Target: EndpointConfig{URL: src}, Mode: reconcile.Mirror, Interval: time.Hour},
	}
	o := &opener{}
	s, err := New(Config{Jobs: jobs}, Options{Open: o.open})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res[3].Status != StatusError || !strings.Contains(res[3].Error, "max-delete") {
		t.Fatalf("a mirror from an empty store: %s %q, want refused by the delete guard", res[3].Status, res[3].Error)
	}
	if want := map[string]int{"mirror": 1}; fmt.Sprint(o.mirrored) != fmt.Sprint(want) {
		t.Errorf("Mirrored calls %v, want %v", o.mirrored, want)
	}
}

// TestBackoff checks the waits after failures, and that a failing job in the daemon is
// retried with its failures counted.
func TestBackoff(t *testing.T) {
	js := &jobState{job: Job{Interval: time.Minute, Backoff: time.Second, MaxBackoff: 10 * time.Second}}
	var got []time.Duration
	for i := 1; i <= 6; i++ {
		js.failures = i
		got = append(got, js.nextDelay(Result{Status: StatusError}))
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("backoffs %v, want %v", got, want)
	}
	if d := js.nextDelay(Result{Status: StatusPartial}); d != time.Minute {
		t.Fatalf("after a partial run: %v, want the interval", d)
	}
	js.job.Jitter = time.Second
	for i := 0; i < 100; i++ {
		if d := js.nextDelay(Result{Status: StatusOK}); d < time.Minute || d >= time.Minute+time.Second {
			t.Fatalf("with jitter: %v, want [1m, 1m1s)", d)
		}
	}

	src := badgerStore(t, "src")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	o := &opener{}
	s, err := New(Config{Jobs: []Job{{Name: "broken", Source: EndpointConfig{URL: src}, Target: EndpointConfig{URL: "badger:///no/such/store"},
		Mode: reconcile.Diff, Interval: time.Hour, Backoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond}}},
		Options{Open: o.open, OnResult: func(r Result) {
			if n++; n == 4 {
				cancel()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	st := s.Jobs()[0]
	if n != 4 || st.ConsecutiveFailures != 4 || len(st.History) != 4 || st.LastSuccess != nil {
		t.Fatalf("%d runs, status %+v", n, st)
	}
}

// TestPeerEndpoints runs mirrors whose target, then whose source, answers as a Peer (as a
// `reconcile serve` server does; here in process over real Badger stores).
func TestPeerEndpoints(t *testing.T) {
	src, dst1, dst2 := badgerStore(t, "src"), badgerStore(t, "dst1"), badgerStore(t, "dst2")
	withBadger(t, src, func(s *badger.Store) { putRows(t, s, 0, 120, 1, "v") })
	withBadger(t, dst2, func(s *badger.Store) { putRows(t, s, 100, 130, 7, "stale") })
	base := &opener{}
	peerOf := map[string]bool{"push:" + dst1: true, "pull:" + src: true}
	open := func(ctx context.Context, req OpenRequest) (*Opened, error) {
		o, err := base.open(ctx, req)
		if err != nil || !peerOf[req.Job+":"+req.URL] {
			return o, err
		}
		peer := reconcile.NewLocal(o.Endpoint)
		return &Opened{Peer: peer, Close: func() error { peer.Close(); return o.Close() }}, nil
	}
	s, err := New(Config{Jobs: []Job{
		{Name: "push", Source: EndpointConfig{URL: src}, Target: EndpointConfig{URL: dst1}, Mode: reconcile.Mirror, Interval: time.Hour, Session: allRows()},
		{Name: "pull", Source: EndpointConfig{URL: src}, Target: EndpointConfig{URL: dst2}, Mode: reconcile.Mirror, Interval: time.Hour, Session: allRows()},
	}}, Options{Open: open})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.RunOnce(context.Background())
	if err != nil || Worst(res) != StatusOK {
		t.Fatalf("%v %+v", err, res)
	}
	if res[0].Report.Upserted != 120 || res[1].Report.Upserted != 120 || res[1].Report.Deleted != 10 {
		t.Fatalf("push %+v\npull %+v", res[0].Report, res[1].Report)
	}
	for _, d := range []string{dst1, dst2} {
		if a, b := rootOf(t, src), rootOf(t, d); a != b {
			t.Fatalf("%s: roots differ: %s %s", d, a, b)
		}
	}
}
