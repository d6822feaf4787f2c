package schedule

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/reconcile-dev/reconcile/adapters/badger"
	"github.com/reconcile-dev/reconcile/reconcile"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetricsMatchReports runs a mirror job and a diff job for a few runs with drift in
// between, then scrapes /metrics and checks every counter against the sum of the reports
// that /jobs lists.
func TestMetricsMatchReports(t *testing.T) {
	src, dst := badgerStore(t, "src"), badgerStore(t, "dst")
	withBadger(t, src, func(s *badger.Store) { putRows(t, s, 0, 400, 1, "v") })
	a, b := badgerStore(t, "a"), badgerStore(t, "b")
	withBadger(t, a, func(s *badger.Store) { putRows(t, s, 0, 100, 1, "v") })
	withBadger(t, b, func(s *badger.Store) { putRows(t, s, 20, 130, 1, "v"); putRows(t, s, 50, 60, 500, "other") })

	const runs = 4
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var srv *httptest.Server
	var mu sync.Mutex
	n := map[string]int{}
	s, err := New(Config{History: maxHistory, Jobs: []Job{
		{Name: "mirror", Source: EndpointConfig{URL: src}, Target: EndpointConfig{URL: dst}, Mode: reconcile.Mirror, Interval: time.Millisecond, Session: allRows()},
		{Name: "audit", Source: EndpointConfig{URL: a}, Target: EndpointConfig{URL: b}, Mode: reconcile.Diff, Interval: time.Millisecond},
	}}, Options{Open: (&opener{}).open, OnResult: func(r Result) {
		mu.Lock()
		defer mu.Unlock()
		n[r.Job]++
		if n[r.Job] > runs {
			return
		}
		if code, body := get(t, srv.URL+"/readyz"); code != http.StatusOK {
			t.Errorf("/readyz while running: %d %s", code, body)
		}
		if r.Job == "mirror" && n[r.Job] < runs {
			driftBadger(t, src, dst, n[r.Job])
		}
		if n["mirror"] >= runs && n["audit"] >= runs {
			cancel()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv = httptest.NewServer(s.Handler())
	defer srv.Close()
	if code, _ := get(t, srv.URL+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before Run: %d, want 503", code)
	}
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, srv.URL+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "shutting down") {
		t.Fatalf("/readyz after Run: %d %q", code, body)
	}
	if code, body := get(t, srv.URL+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d %q", code, body)
	}

	_, body := get(t, srv.URL+"/jobs")
	var jobs []JobStatus
	if err := json.Unmarshal([]byte(body), &jobs); err != nil {
		t.Fatalf("/jobs: %v\n%s", err, body)
	}
	_, text := get(t, srv.URL+"/metrics")
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	value := func(name string, labels ...string) float64 {
		f := families["reconcile_job_"+name]
		if f == nil {
			t.Fatalf("/metrics lacks reconcile_job_%s", name)
		}
	next:
		for _, m := range f.Metric {
			got := map[string]string{}
			for _, l := range m.Label {
				got[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if got[labels[i]] != labels[i+1] {
					continue next
				}
			}
			return metricValue(m)
		}
		t.Fatalf("no reconcile_job_%s%v", name, labels)
		return 0
	}

	for _, j := range jobs {
		if len(j.History) == 0 {
			t.Fatalf("job %s has no history", j.Name)
		}
		var sum reconcile.Report
		statuses := map[Status]int{}
		for _, r := range j.History {
			statuses[r.Status]++
			if rep := r.Report; rep != nil {
				sum.OnlySource += rep.OnlySource
				sum.OnlyTarget += rep.OnlyTarget
				sum.Changed += rep.Changed
				sum.Upserted += rep.Upserted
				sum.Deleted += rep.Deleted
				sum.Quarantined += rep.Quarantined
				sum.Raced += rep.Raced
				sum.Rounds += rep.Rounds
				sum.BytesSent += rep.BytesSent
				sum.BytesReceived += rep.BytesReceived
			}
		}
		for _, c := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"differences_total", []string{"class", "only_source"}, float64(sum.OnlySource)},
			{"differences_total", []string{"class", "only_target"}, float64(sum.OnlyTarget)},
			{"differences_total", []string{"class", "changed"}, float64(sum.Changed)},
			{"rows_written_total", []string{"op", "upsert"}, float64(sum.Upserted)},
			{"rows_written_total", []string{"op", "delete"}, float64(sum.Deleted)},
			{"quarantined_total", nil, float64(sum.Quarantined)},
			{"raced_total", nil, float64(sum.Raced)},
			{"rounds_total", nil, float64(sum.Rounds)},
			{"bytes_total", []string{"direction", "sent"}, float64(sum.BytesSent)},
			{"bytes_total", []string{"direction", "received"}, float64(sum.BytesReceived)},
			{"runs_total", []string{"status", "ok"}, float64(statuses[StatusOK])},
			{"runs_total", []string{"status", "differ"}, float64(statuses[StatusDiffer])},
			{"runs_total", []string{"status", "error"}, float64(statuses[StatusError])},
			{"failures_total", nil, float64(statuses[StatusError])},
			{"duration_seconds", nil, float64(len(j.History))},
			{"running", nil, 0},
		} {
			if got := value(c.name, append([]string{"job", j.Name}, c.labels...)...); got != c.want {
				t.Errorf("%s: reconcile_job_%s%v = %v, the reports say %v", j.Name, c.name, c.labels, got, c.want)
			}
		}
		if last := value("last_success_timestamp_seconds", "job", j.Name); j.LastSuccess == nil || last != float64(j.LastSuccess.UnixNano())/1e9 {
			t.Errorf("%s: last success %v, /jobs says %v", j.Name, last, j.LastSuccess)
		}
	}
	// The runs did something worth counting.
	mirror := jobs[0]
	if mirror.Name != "mirror" || value("rows_written_total", "job", "mirror", "op", "upsert") < 400 || value("rows_written_total", "job", "mirror", "op", "delete") == 0 {
		t.Fatalf("mirror wrote too little: %s", text)
	}
	// Every audit run that finished found the ten changed rows (the last one may have
	// been stopped by the shutdown).
	differ := value("runs_total", "job", "audit", "status", "differ")
	if differ < runs || value("differences_total", "job", "audit", "class", "changed") != 10*differ {
		t.Fatalf("audit: %v runs found differences, %v changed rows counted", differ, value("differences_total", "job", "audit", "class", "changed"))
	}
}

// metricValue reads a counter, gauge or histogram (its count).
func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

// TestJobsPhaseWhileOpening: a job that is opening its endpoints shows the phase "open" on
// /jobs (it showed "", until the first round).
func TestJobsPhaseWhileOpening(t *testing.T) {
	src, dst := badgerStore(t, "src"), badgerStore(t, "dst")
	opening, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	open := func(ctx context.Context, req OpenRequest) (*Opened, error) {
		once.Do(func() { close(opening); <-release })
		return (&opener{}).open(ctx, req)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := New(Config{History: maxHistory, Jobs: []Job{
		{Name: "audit", Source: EndpointConfig{URL: src}, Target: EndpointConfig{URL: dst}, Mode: reconcile.Diff, Interval: time.Hour},
	}}, Options{Open: open, OnResult: func(Result) { cancel() }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	<-opening
	_, body := get(t, srv.URL+"/jobs")
	close(release)
	if !strings.Contains(body, `"phase":"open"`) && !strings.Contains(body, `"phase": "open"`) {
		t.Errorf("/jobs while opening: %s", body)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
