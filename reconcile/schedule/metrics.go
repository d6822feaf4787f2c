package schedule

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the scheduler's Prometheus series, all labelled by job. Counters add what
// each run's report says, so they match the reports in /jobs exactly.
type metrics struct {
	runs        *prometheus.CounterVec   // job, status
	failures    *prometheus.CounterVec   // job
	differences *prometheus.CounterVec   // job, class
	written     *prometheus.CounterVec   // job, op
	quarantined *prometheus.CounterVec   // job
	raced       *prometheus.CounterVec   // job
	rounds      *prometheus.CounterVec   // job
	bytes       *prometheus.CounterVec   // job, direction
	waits       *prometheus.CounterVec   // job
	duration    *prometheus.HistogramVec // job
	lastSuccess *prometheus.GaugeVec     // job
	lastRun     *prometheus.GaugeVec     // job
	running     *prometheus.GaugeVec     // job
	failing     *prometheus.GaugeVec     // job
}

// Metric names (see docs/run.md).
const namespace = "reconcile"

func newMetrics(reg prometheus.Registerer, jobs []Job) (*metrics, error) {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: "job", Name: name, Help: help}, append([]string{"job"}, labels...))
	}
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "job", Name: name, Help: help}, []string{"job"})
	}
	m := &metrics{
		runs:        counter("runs_total", "Runs finished, by status: ok, differ (diff found differences), partial (quarantined or raced rows, or a target unequal after writing), error, stopped (shutdown).", "status"),
		failures:    counter("failures_total", "Runs that ended in an error."),
		differences: counter("differences_total", "Differing keys found, by class (only_source, only_target, changed), added up over runs.", "class"),
		written:     counter("rows_written_total", "Rows written to the target, by op (upsert, delete).", "op"),
		quarantined: counter("quarantined_total", "Rows quarantined: they kept failing to apply and were skipped."),
		raced:       counter("raced_total", "Rows skipped because the target changed under the session; the next run settles them."),
		rounds:      counter("rounds_total", "Protocol round trips."),
		bytes:       counter("bytes_total", "Protocol bytes, by direction (sent to the target, received from it).", "direction"),
		waits:       counter("waits_total", "Runs that waited for another run on one of their endpoints to finish (overlaps prevented)."),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Subsystem: "job", Name: "duration_seconds",
			Help: "Run duration: opening the endpoints, the session and closing them.",
			// From a session of an identical pair (milliseconds) to a full copy of a
			// large table (an hour).
			Buckets: []float64{0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 60, 180, 600, 1800, 3600}}, []string{"job"}),
		lastSuccess: gauge("last_success_timestamp_seconds", "Unix time of the end of the last run that did not end in an error (0: none yet)."),
		lastRun:     gauge("last_run_timestamp_seconds", "Unix time of the end of the last run (0: none yet)."),
		running:     gauge("running", "1 while a run of the job is going on."),
		failing:     gauge("consecutive_failures", "Runs in a row that ended in an error."),
	}
	for _, c := range []prometheus.Collector{m.runs, m.failures, m.differences, m.written, m.quarantined, m.raced,
		m.rounds, m.bytes, m.waits, m.duration, m.lastSuccess, m.lastRun, m.running, m.failing} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Every series exists from the start, at zero, so rates and alerts see a job before
	// its first run.
	for _, j := range jobs {
		for _, st := range []Status{StatusOK, StatusDiffer, StatusPartial, StatusError, StatusStopped} {
			m.runs.WithLabelValues(j.Name, string(st))
		}
		m.failures.WithLabelValues(j.Name)
		for _, c := range []string{"only_source", "only_target", "changed"} {
			m.differences.WithLabelValues(j.Name, c)
		}
		m.written.WithLabelValues(j.Name, "upsert")
		m.written.WithLabelValues(j.Name, "delete")
		m.quarantined.WithLabelValues(j.Name)
		m.raced.WithLabelValues(j.Name)
		m.rounds.WithLabelValues(j.Name)
		m.bytes.WithLabelValues(j.Name, "sent")
		m.bytes.WithLabelValues(j.Name, "received")
		m.waits.WithLabelValues(j.Name)
		m.duration.WithLabelValues(j.Name)
		m.lastSuccess.WithLabelValues(j.Name)
		m.lastRun.WithLabelValues(j.Name)
		m.running.WithLabelValues(j.Name)
		m.failing.WithLabelValues(j.Name)
	}
	return m, nil
}

// record adds one finished run.
func (m *metrics) record(r *Result, consecutiveFailures int) {
	job := r.Job
	m.runs.WithLabelValues(job, string(r.Status)).Inc()
	if r.Status == StatusError {
		m.failures.WithLabelValues(job).Inc()
	} else if r.Status != StatusStopped {
		m.lastSuccess.WithLabelValues(job).Set(float64(r.Finished.UnixNano()) / 1e9)
	}
	if r.Waited {
		m.waits.WithLabelValues(job).Inc()
	}
	m.duration.WithLabelValues(job).Observe(r.Finished.Sub(r.Started).Seconds())
	m.lastRun.WithLabelValues(job).Set(float64(r.Finished.UnixNano()) / 1e9)
	m.failing.WithLabelValues(job).Set(float64(consecutiveFailures))
	rep := r.Report
	if rep == nil {
		return
	}
	m.differences.WithLabelValues(job, "only_source").Add(float64(rep.OnlySource))
	m.differences.WithLabelValues(job, "only_target").Add(float64(rep.OnlyTarget))
	m.differences.WithLabelValues(job, "changed").Add(float64(rep.Changed))
	if !rep.DryRun {
		m.written.WithLabelValues(job, "upsert").Add(float64(rep.Upserted))
		m.written.WithLabelValues(job, "delete").Add(float64(rep.Deleted))
	}
	m.quarantined.WithLabelValues(job).Add(float64(rep.Quarantined))
	m.raced.WithLabelValues(job).Add(float64(rep.Raced))
	m.rounds.WithLabelValues(job).Add(float64(rep.Rounds))
	m.bytes.WithLabelValues(job, "sent").Add(float64(rep.BytesSent))
	m.bytes.WithLabelValues(job, "received").Add(float64(rep.BytesReceived))
}
