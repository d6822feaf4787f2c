package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/urfave/cli/v2"

	remote "github.com/reconcile-dev/reconcile/adapters/http"
	sqlep "github.com/reconcile-dev/reconcile/adapters/sql"
	"github.com/reconcile-dev/reconcile/reconcile"
	"github.com/reconcile-dev/reconcile/reconcile/schedule"
)

func runCommand(std stdio) *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "run the scheduled anti-entropy jobs of a config file (--once: each job once, exit with the worst status)",
		Description: "Jobs, their endpoints, modes, intervals and limits come from the YAML file given\n" +
			"with --config (docs/run.md). SIGINT, SIGTERM or SIGHUP stop new runs; runs in flight finish\n" +
			"their current apply batch (bounded by the config's grace-period) and the command\n" +
			"exits 0. With --once the exit status is the worst of the jobs': 0 ok, 1 a diff job\n" +
			"found differences, 2 an error, 3 partial (quarantined or raced rows, a target unequal after writing, or stopped).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "YAML file of jobs (see docs/run.md)", Required: true, EnvVars: []string{"RECONCILE_CONFIG"}},
			&cli.BoolFlag{Name: "once", Usage: "run every job once and exit with the worst status"},
			&cli.StringFlag{Name: "metrics-addr", Usage: "serve /metrics, /healthz, /readyz and /jobs on host:port", EnvVars: []string{"RECONCILE_METRICS_ADDR"}},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log records as text or json (on standard error)", EnvVars: []string{"RECONCILE_LOG_FORMAT"}},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: []string{"RECONCILE_LOG_LEVEL"}},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			if _, err := args(c, 0, 0, "--config FILE [--once]"); err != nil {
				return err
			}
			if c.Bool("json") && !c.Bool("once") {
				// A daemon's runs report in its log (--log-format json) and on /jobs. Not
				// refused: RECONCILE_JSON may be set for every command.
				fmt.Fprintln(std.err, "reconcile run: --json prints the reports of a --once run and does nothing here; a running daemon's reports are in its log (--log-format json) and on /jobs")
			}
			return runRun(c.Context, runOptions{
				stdio: std, config: c.String("config"), once: c.Bool("once"), metricsAddr: c.String("metrics-addr"),
				logFormat: c.String("log-format"), logLevel: c.String("log-level"), json: c.Bool("json"),
			})
		},
	}
}

// runOptions are the inputs of runRun.
type runOptions struct {
	stdio
	config              string
	once, json          bool
	metricsAddr         string
	logFormat, logLevel string
	// listening, when set, is called with the metrics server's address once it listens.
	listening func(net.Addr)
}

// runRun loads the config, then runs the jobs until ctx ends (or each once with --once,
// returning an exitErr with the worst status).
func runRun(ctx context.Context, o runOptions) error {
	log, err := newLogger(o.err, o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	cfg, err := schedule.LoadFile(o.config, checkJobEndpoint)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s, err := schedule.New(*cfg, schedule.Options{Open: openJobEndpoint, Check: checkJobEndpoint, Logger: log, Registry: reg})
	if err != nil {
		return fmt.Errorf("config %s: %w", o.config, err)
	}
	if o.metricsAddr != "" {
		stop, err := serveMetrics(o.metricsAddr, s.Handler(), log, o.listening)
		if err != nil {
			return err
		}
		defer stop()
	}
	if !o.once {
		return s.Run(ctx)
	}
	results, err := s.RunOnce(ctx)
	if err != nil {
		return err
	}
	if err := printResults(o.out, results, o.json); err != nil {
		return err
	}
	worst := schedule.Worst(results)
	switch code := worst.ExitCode(); code {
	case exitOK:
		return nil
	case exitDiffer:
		return &exitErr{code: code}
	default:
		var bad []string
		for _, r := range results {
			if r.Status == worst {
				bad = append(bad, r.Job)
			}
		}
		return &exitErr{code: code, err: fmt.Errorf("run --once: %s: %s", worst, strings.Join(bad, ", "))}
	}
}

// newLogger returns the logger of `run` and `serve`: text or JSON records on w.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// serveMetrics serves h on addr until the returned function is called.
func serveMetrics(addr string, h http.Handler, log *slog.Logger, listening func(net.Addr)) (stop func(), err error) {
	return serveHTTPOn(addr, h, log, listening, "serving /metrics, /healthz, /readyz and /jobs")
}

// serveHTTPOn serves h on addr until the returned function is called, logging what.
func serveHTTPOn(addr string, h http.Handler, log *slog.Logger, listening func(net.Addr), what string) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	// Its answers are small: a whole request gets 30 s, and an idle connection 2 min, so a
	// client that sends or reads slowly (or not at all) cannot hold connections for ever.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "error", err)
		}
	}()
	log.Info(what, "addr", ln.Addr().String())
	if listening != nil {
		listening(ln.Addr())
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	}, nil
}

// printResults writes --once results: a table, or JSON.
func printResults(w io.Writer, results []schedule.Result, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "job\tstatus\tonly_source\tonly_target\tchanged\tupserted\tdeleted\tquarantined\traced\tduration\terror")
	for _, r := range results {
		var rep reconcile.Report
		if r.Report != nil {
			rep = *r.Report
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", r.Job, r.Status,
			rep.OnlySource, rep.OnlyTarget, rep.Changed, rep.Upserted, rep.Deleted, rep.Quarantined, rep.Raced,
			r.Finished.Sub(r.Started).Round(time.Millisecond), r.Error)
	}
	return tw.Flush()
}

// checkJobEndpoint validates a job's endpoint URL as every command does, and names the
// store it points at for the scheduler (which keeps runs on one store apart).
func checkJobEndpoint(raw string, _ schedule.Role) (schedule.Store, error) {
	loc, err := parseEndpoint(raw)
	if err != nil {
		return schedule.Store{}, err
	}
	switch {
	case loc.server != "":
		return schedule.Store{Name: "http\x00" + loc.server}, nil
	case loc.sql != nil:
		return schedule.Store{Name: "sql\x00" + sqlStore(loc.sql)}, nil
	}
	abs, err := filepath.Abs(loc.path)
	if err != nil {
		return schedule.Store{}, fmt.Errorf("endpoint %q: %w", reconcile.RedactURL(raw), err)
	}
	return schedule.Store{Name: loc.scheme + "\x00" + abs}, nil
}

// openJobEndpoint opens a job's endpoint for one run, with the secrets the config points
// at: a password goes into a database URL, a token to an http(s) server. A mirror's
// Badger target, or SQL target with a SQL source, is created when missing, as sync
// creates it.
func openJobEndpoint(ctx context.Context, req schedule.OpenRequest) (*schedule.Opened, error) {
	loc, err := parseEndpoint(req.URL)
	if err != nil {
		return nil, err
	}
	if req.Password != "" && loc.sql == nil {
		return nil, fmt.Errorf("endpoint %s: a password is given but the URL is not a database server's", reconcile.RedactURL(req.URL))
	}
	switch {
	case loc.server != "":
		c, err := httpClient(loc, req.Token, "the job's token-file or token-env",
			"give the job's endpoint a token-file or token-env (or ?token_file= in its URL, or "+tokenEnv+")")
		if err != nil {
			return nil, err
		}
		return &schedule.Opened{
			Peer: c,
			// Two servers: the source's runs the session, this process carries its requests.
			Relay: func(ctx context.Context, target reconcile.Peer, opts reconcile.Options) (*reconcile.Report, error) {
				tc, ok := target.(*remote.Client)
				if !ok {
					return nil, fmt.Errorf("relay from %s: the target is not an http(s) server", loc.server)
				}
				return c.Relay(ctx, tc, opts)
			},
			Close: func() error {
				err := c.Close() // ends the session on the server, releasing its snapshot
				c.CloseIdleConnections()
				return err
			},
		}, nil
	case loc.sql != nil:
		raw := req.URL
		if req.Password != "" {
			if raw, err = withPassword(raw, req.Password); err != nil {
				return nil, err
			}
		}
		cfg, err := sqlep.ParseURL(raw)
		if err != nil {
			return nil, fmt.Errorf("endpoint %s: %w", reconcile.RedactURL(req.URL), err)
		}
		t, err := sqlep.Open(ctx, cfg)
		if like, ok := req.Like.(*sqlep.Table); ok && req.Write && errors.Is(err, sqlep.ErrNoTable) {
			// A mirror's missing SQL target is made like its SQL source, as sync makes it.
			if err = sqlep.CreateTable(ctx, cfg, like); err == nil {
				t, err = sqlep.Open(ctx, cfg)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", reconcile.RedactURL(req.URL), err)
		}
		t.ReadOnly = !req.Write
		return &schedule.Opened{Endpoint: t, Close: t.Close}, nil
	}
	a := readOnly
	if req.Write {
		a = create
		if o, ok := req.Like.(ordered); ok && loc.ordering == 0 && freshStore(loc) != nil {
			loc.ordering = o.Ordering() // a new replica is ordered as its source, as sync makes it
		}
	}
	s, _ := lookupScheme(loc.scheme)
	ep, err := s.open(loc, a)
	if err != nil {
		return nil, err
	}
	o := &schedule.Opened{Endpoint: ep.Endpoint, Close: ep.Close}
	if req.Write {
		o.Mirrored = func() error { return ep.recordKeyFormat(keyFormatOf(req.Like)) }
	}
	return o, nil
}

// withPassword sets the password of a database URL.
func withPassword(raw, password string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("endpoint %s: %w", reconcile.RedactURL(raw), err)
	}
	if u.Scheme == "sqlite" {
		return "", fmt.Errorf("endpoint %s: sqlite takes no password", reconcile.RedactURL(raw))
	}
	user := ""
	if u.User != nil {
		user = u.User.Username()
	}
	u.User = url.UserPassword(user, password)
	return u.String(), nil
}
