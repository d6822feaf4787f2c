package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/urfave/cli/v2"

	remote "github.com/reconcile-dev/reconcile/adapters/http"
	"github.com/reconcile-dev/reconcile/reconcile"
)

func serveCommand(std stdio) *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serve ENDPOINT over HTTP(S), so that diff and sync elsewhere can use it as http(s)://host:port",
		Description: "Without --token-file the server listens only on a loopback address unless\n" +
			"--insecure-listen is given. Clients send the token from RECONCILE_TOKEN or from the\n" +
			"file named by ?token_file= in the URL. A missing Badger store is created unless\n" +
			"--read-only. The first line of output names the address served. See docs/http.md.",
		ArgsUsage: "ENDPOINT",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Usage: "address to listen on, host:port (port 0 picks one)", Required: true, EnvVars: []string{"RECONCILE_LISTEN"}},
			&cli.StringFlag{Name: "token-file", Usage: "file holding the bearer token clients must send", EnvVars: []string{"RECONCILE_TOKEN_FILE"}},
			&cli.StringFlag{Name: "tls-cert", Usage: "TLS certificate file (PEM); with --tls-key serves https"},
			&cli.StringFlag{Name: "tls-key", Usage: "TLS private key file (PEM)"},
			&cli.BoolFlag{Name: "read-only", Usage: "refuse every write (sync to this server fails; diff works)"},
			&cli.BoolFlag{Name: "insecure-listen", Usage: "allow a non-loopback address without a token"},
			&cli.StringFlag{Name: "max-body", Value: "64MiB", Usage: "largest request body accepted (bytes, or with KiB, MiB, GiB or KB, MB, GB)"},
			&cli.DurationFlag{Name: "idle-timeout", Value: 2 * time.Minute, Usage: "close a session and its snapshot after this long without requests"},
			&cli.DurationFlag{Name: "body-timeout", Value: 2 * time.Minute, Usage: "answer 408 and close the connection when a request's body has not arrived this long after its headers"},
			&cli.DurationFlag{Name: "write-timeout", Value: 2 * time.Minute, Usage: "close the connection when a client has taken none of an answer (a dump, a frame) for this long"},
			&cli.DurationFlag{Name: "request-timeout", Value: 10 * time.Minute, Usage: "bound the server's work on one request (a session's open reads a scan-mode table whole: raise it, with the clients' ?timeout=, for very large tables)"},
			&cli.IntFlag{Name: "max-sessions", Value: 64, Usage: "sessions and relays open at once, each holding a snapshot (more are answered 503, and clients retry)"},
			&cli.StringFlag{Name: "metrics-addr", Usage: "serve Prometheus /metrics on host:port (requests by route and status, their time and bytes, open sessions)", EnvVars: []string{"RECONCILE_METRICS_ADDR"}},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log records (sessions opened and closed, failed requests) as text or json, on standard error", EnvVars: []string{"RECONCILE_LOG_FORMAT"}},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug (every request too), info, warn (failures only) or error", EnvVars: []string{"RECONCILE_LOG_LEVEL"}},
		},
		Action: func(c *cli.Context) error {
			a, err := args(c, 1, 1, "ENDPOINT --listen ADDR")
			if err != nil {
				return err
			}
			maxBody, err := parseSize(c.String("max-body"))
			if err != nil {
				return fmt.Errorf("--max-body: %w", err)
			}
			log, err := newLogger(std.err, c.String("log-format"), c.String("log-level"))
			if err != nil {
				return err
			}
			return runServe(c.Context, serveOptions{
				stdio: std, endpoint: a[0], listen: c.String("listen"), tokenFile: c.String("token-file"),
				tlsCert: c.String("tls-cert"), tlsKey: c.String("tls-key"), metricsAddr: c.String("metrics-addr"),
				server: remote.ServerOptions{ReadOnly: c.Bool("read-only"), InsecureListen: c.Bool("insecure-listen"),
					MaxBody: maxBody, IdleTimeout: c.Duration("idle-timeout"), BodyTimeout: c.Duration("body-timeout"),
					WriteTimeout: c.Duration("write-timeout"), RequestTimeout: c.Duration("request-timeout"),
					MaxSessions: c.Int("max-sessions"), Logger: log},
			})
		},
	}
}

// serveOptions are the inputs of runServe.
type serveOptions struct {
	stdio
	endpoint, listen, tokenFile, tlsCert, tlsKey string
	// metricsAddr, when set, is where Prometheus /metrics is served.
	metricsAddr string
	server      remote.ServerOptions
}

// runServe serves one endpoint until ctx ends (Ctrl-C, SIGTERM).
func runServe(ctx context.Context, o serveOptions) error {
	loc, err := parseEndpoint(o.endpoint)
	if err != nil {
		return err
	}
	if loc.server != "" {
		return fmt.Errorf("serve: %s is already a server: serve the store itself", loc.server)
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return fmt.Errorf("serve: --tls-cert and --tls-key go together")
	}
	if o.server.IdleTimeout <= 0 {
		return fmt.Errorf("serve: --idle-timeout must be positive")
	}
	if o.server.BodyTimeout <= 0 {
		return fmt.Errorf("serve: --body-timeout must be positive")
	}
	if o.server.WriteTimeout <= 0 {
		return fmt.Errorf("serve: --write-timeout must be positive")
	}
	if o.server.RequestTimeout <= 0 {
		return fmt.Errorf("serve: --request-timeout must be positive")
	}
	if o.server.MaxSessions <= 0 {
		return fmt.Errorf("serve: --max-sessions must be at least 1")
	}
	if o.tokenFile != "" {
		if o.server.Token, err = readToken(o.tokenFile); err != nil {
			return fmt.Errorf("serve: %w", err)
		}
	}
	if o.tlsCert != "" {
		// Checked here, before the store is opened and the "serving" line printed.
		if _, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey); err != nil {
			return fmt.Errorf("serve: --tls-cert %s and --tls-key %s: %w", o.tlsCert, o.tlsKey, err)
		}
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer ln.Close()
	var served atomic.Pointer[remote.Server]
	if o.metricsAddr != "" {
		stop, err := serveServerMetrics(&o, &served)
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		defer stop()
	}
	a := create
	if o.server.ReadOnly {
		a = readOnly
	}
	fresh := freshStore(loc)
	ep, err := openEndpoint(o.endpoint, a)
	if err != nil {
		return err
	}
	defer ep.Close()
	if ep.scan != nil {
		o.server.Dump = func(ctx context.Context, w io.Writer) error { return dumpRows(ctx, ep, w) }
	}
	if ep.write != nil {
		o.server.Load = serveLoad(ep)
	}
	if ep.table != nil {
		o.server.KeyFormat = ep.table.KeyFormat()         // clients name rows by their key columns
		o.server.VersionFormat = ep.table.VersionFormat() // and show timestamp versions as times
	} else if ep.keyFormat != "" {
		o.server.KeyFormat = ep.keyFormat // a Badger replica of a table names rows as it does
	}
	srv := remote.NewServer(ep.Endpoint, o.server)
	served.Store(srv)
	if err := srv.CheckListener(ln); err != nil {
		err = fmt.Errorf("serve: %w", err)
		if fresh != nil && a == create {
			ep.Close()
			err = fresh.remove(err)
		}
		return err
	}
	scheme := "http"
	if o.tlsCert != "" {
		scheme = "https"
	}
	mode := "read-write"
	if o.server.ReadOnly {
		mode = "read-only"
	}
	fmt.Fprintf(o.out, "serving %s (%s) at %s://%s\n", reconcile.RedactURL(o.endpoint), mode, scheme, servedAddr(o.listen, ln.Addr()))
	if fresh != nil && a == create && loc.ordering == 0 {
		// The store's ordering is fixed now, before any sync says which it needs.
		fmt.Fprintf(o.err, "created %s, empty and in version order: a sync from a key-ordered source (a SQL table without &version=, a store made with ?ordering=key) will be refused; for one, serve a new store with ?ordering=key\n", reconcile.RedactURL(o.endpoint))
	}
	if err := srv.Serve(ctx, ln, o.tlsCert, o.tlsKey); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// servedAddr renders the address a server listens on for its "serving" line: addr (the
// port bound, for port 0), except that a wildcard host (empty, 0.0.0.0, ::), which Go
// reports as [::] whatever was asked, reads as it was written (empty as 0.0.0.0) and is
// named "all interfaces", so that it is not taken for an IPv6-only address.
func servedAddr(listen string, addr net.Addr) string {
	ta, ok := addr.(*net.TCPAddr)
	host, _, err := net.SplitHostPort(listen)
	if !ok || err != nil {
		return addr.String()
	}
	switch ip := net.ParseIP(host); {
	case host == "" || ip != nil && ip.To4() != nil && ip.IsUnspecified():
		host = "0.0.0.0"
	case ip != nil && ip.IsUnspecified():
		host = "::"
	default:
		return addr.String() // a name or an interface's address: what was bound
	}
	return net.JoinHostPort(host, strconv.Itoa(ta.Port)) + " (all interfaces)"
}

// parseSize reads a byte count: digits, optionally followed by a unit, in any case:
// KiB, MiB, GiB (powers of 1024), KB, MB, GB (powers of 1000) or B.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	num := strings.TrimSpace(s)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}} {
		if len(num) > len(u.suffix) && strings.EqualFold(num[len(num)-len(u.suffix):], u.suffix) {
			num, mult = strings.TrimSpace(num[:len(num)-len(u.suffix)]), u.m
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("%q is not a size from 1 byte to 1 TiB (e.g. 67108864, 64MiB or 64MB)", s)
	}
	return n * mult, nil
}

// serveServerMetrics serves Prometheus /metrics on o.metricsAddr: requests by route and
// status, their time and body bytes (through ServerOptions.OnRequest, which it sets), and
// the sessions open on the server served holds once it is made.
func serveServerMetrics(o *serveOptions, served *atomic.Pointer[remote.Server]) (stop func(), err error) {
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "reconcile_serve_requests_total",
		Help: "requests answered, by route (the pattern that served it; \"refused\" for one refused before routing: a wrong token, another protocol) and status"},
		[]string{"route", "status"})
	seconds := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "reconcile_serve_request_seconds",
		Help: "time to answer a request, by route", Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}, []string{"route"})
	written := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "reconcile_serve_response_bytes_total",
		Help: "answer body bytes written, by route"}, []string{"route"})
	sessions := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "reconcile_serve_sessions",
		Help: "sessions open, each holding a snapshot"}, func() float64 {
		if srv := served.Load(); srv != nil {
			return float64(srv.Sessions())
		}
		return 0
	})
	reg.MustRegister(requests, seconds, written, sessions,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	o.server.OnRequest = func(route string, status int, took time.Duration, bytes int64) {
		if route == "" {
			route = "refused"
		}
		requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
		seconds.WithLabelValues(route).Observe(took.Seconds())
		written.WithLabelValues(route).Add(float64(bytes))
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	log := o.server.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return serveHTTPOn(o.metricsAddr, mux, log, nil, "serving /metrics")
}
