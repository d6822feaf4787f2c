package schedule

import (
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/reconcile-dev/reconcile/reconcile"
)

// JobStatus is what /jobs shows of one job.
type JobStatus struct {
	Name     string         `json:"name"`
	Mode     reconcile.Mode `json:"mode"`
	Source   string         `json:"source"` // URL, any password redacted
	Target   string         `json:"target"`
	Interval string         `json:"interval"`
	Running  bool           `json:"running"`
	// RunningSince and Progress describe the run going on, if any.
	RunningSince *time.Time          `json:"running_since,omitempty"`
	Progress     *reconcile.Progress `json:"progress,omitempty"`
	// NextRun is when the next run is due (daemon mode).
	NextRun             *time.Time `json:"next_run,omitempty"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
	LastSuccess         *time.Time `json:"last_success,omitempty"`
	// History holds the most recent results, newest first (at most Config.History).
	History []Result `json:"history"`
}

// Jobs returns every job's status, in the order of Config.Jobs.
func (s *Scheduler) Jobs() []JobStatus {
	out := make([]JobStatus, 0, len(s.jobs))
	for _, js := range s.jobs {
		j := js.job
		st := JobStatus{Name: j.Name, Mode: j.Mode, Source: j.Source.Redacted(), Target: j.Target.Redacted(), Interval: j.Interval.String()}
		js.mu.Lock()
		st.Running, st.ConsecutiveFailures = js.running, js.failures
		if js.running {
			since, p := js.started, js.progress
			st.RunningSince, st.Progress = &since, &p
		}
		if !js.next.IsZero() && !js.running {
			next := js.next
			st.NextRun = &next
		}
		if !js.lastSuccess.IsZero() {
			ls := js.lastSuccess
			st.LastSuccess = &ls
		}
		st.History = slices.Clone(js.history)
		js.mu.Unlock()
		slices.Reverse(st.History)
		out = append(out, st)
	}
	return out
}

// Handler serves the scheduler's endpoints:
//
//	/metrics  Prometheus metrics (Options.Registry)
//	/healthz  200 while the process serves (liveness)
//	/readyz   200 while the scheduler runs its jobs; 503 before it starts and once it is
//	          shutting down
//	/jobs     JSON: every job's status and recent results (JobStatus)
func (s *Scheduler) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		switch s.state.Load() {
		case stateRunning:
			w.Write([]byte("ready\n"))
		case stateIdle:
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("not started\n"))
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("shutting down\n"))
		}
	})
	mux.HandleFunc("GET /jobs", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(s.Jobs())
	})
	return mux
}
