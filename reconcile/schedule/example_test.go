package schedule_test

import (
	"context"
	"fmt"
	"time"

	"github.com/reconcile-dev/reconcile/adapters/memory"
	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
	"github.com/reconcile-dev/reconcile/reconcile/schedule"
)

// A service keeps two tiers converged: its own endpoints (here in memory) are named in
// the jobs, and Open hands them to the scheduler. Run would repeat the jobs every
// interval until its context is cancelled; RunOnce runs each once.
func Example() {
	sessions, data, cache := memory.New(merkle.VersionOrder), memory.New(merkle.VersionOrder), memory.New(merkle.VersionOrder)
	for i := 0; i < 100; i++ {
		r := reconcile.Row{Key: []byte(fmt.Sprintf("session/%03d", i)), Version: uint64(i + 1), Value: []byte("state")}
		sessions.Put(r)
		if i >= 2 {
			cache.Put(r)
		}
	}
	data.Put(reconcile.Row{Key: []byte("session/007"), Version: 8, Value: []byte("lost update")})
	endpoints := map[string]reconcile.Endpoint{"mem://sessions": sessions, "mem://data": data, "mem://cache": cache}
	job := func(name, source, target string, mode reconcile.Mode) schedule.Job {
		return schedule.Job{Name: name, Mode: mode, Interval: time.Minute,
			Source: schedule.EndpointConfig{URL: source}, Target: schedule.EndpointConfig{URL: target}}
	}

	s, err := schedule.New(schedule.Config{Jobs: []schedule.Job{
		job("repair", "mem://sessions", "mem://data", reconcile.Mirror),
		job("audit", "mem://sessions", "mem://cache", reconcile.Diff),
	}}, schedule.Options{
		Open: func(_ context.Context, req schedule.OpenRequest) (*schedule.Opened, error) {
			ep, ok := endpoints[req.URL]
			if !ok {
				return nil, fmt.Errorf("no endpoint %s", req.URL)
			}
			return &schedule.Opened{Endpoint: ep}, nil
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	results, err := s.RunOnce(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range results {
		fmt.Printf("%s: %s, only on the source %d, changed %d, written %d\n",
			r.Job, r.Status, r.Report.OnlySource, r.Report.Changed, r.Report.Upserted+r.Report.Deleted)
	}
	worst := schedule.Worst(results)
	fmt.Printf("worst: %s (exit status %d)\n", worst, worst.ExitCode())
	// Output:
	// repair: ok, only on the source 99, changed 1, written 100
	// audit: differ, only on the source 2, changed 0, written 0
	// worst: differ (exit status 1)
}

// A configuration file as `reconcile run --config` reads it; Parse refuses unknown fields
// and names the job and field of every problem, all of them at once.
func ExampleParse() {
	_, err := schedule.Parse([]byte(`
jobs:
  - name: users
    source: postgres://app@db1/app?table=users&version=updated_at
    target: badger:///var/lib/replica/users
    mode: mirror
    interval: 5
    max-delet: 1%
`))
	fmt.Println(err)
	// Output:
	// invalid config:
	//   job "users": unknown field "max-delet" (line 8)
	//   job "users": interval: "5" is not a duration (a number needs a unit): write it as 30s, 5m or 1h30m
}
