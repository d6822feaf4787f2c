package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/reconcile-dev/reconcile/bench"
	"github.com/reconcile-dev/reconcile/bench/baseline"
)

func benchCommand(std stdio) *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure this tool against the algorithms it replaces, side by side",
		Description: "bench builds (or takes from its cache) pairs of Badger stores holding a delete-heavy\n" +
			"history and a drifted copy, and runs every method on each: rows read, protocol bytes,\n" +
			"round trips, wall and CPU time, peak RSS, and whether the method's plan would make the\n" +
			"copies equal (checked against the generator's ground truth). Each method runs in a\n" +
			"process of its own so that its peak RSS is its own. See docs/bench.md.\n\n" +
			"Scenarios:\n" + bench.ScenarioHelp + "\n\nMethods:\n" + bench.MethodHelp,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "rows", Value: "100000,1000000", Usage: "live rows of each dataset, a comma list (the issue's scales: 100000,1000000,10000000)", EnvVars: []string{"RECONCILE_BENCH_ROWS_LIST"}},
			&cli.StringFlag{Name: "drift", Value: "0.001,0.01", Usage: "fractions of the rows that differ, a comma list"},
			&cli.StringFlag{Name: "scenarios", Value: strings.Join(bench.ScenarioNames, ","), Usage: "datasets, a comma list"},
			&cli.StringFlag{Name: "methods", Value: strings.Join(bench.MethodNames, ","), Usage: "methods, a comma list"},
			&cli.StringFlag{Name: "dir", Value: filepath.Join(os.TempDir(), "reconcile-bench"), Usage: "fixture cache (GBs at 10M rows)", EnvVars: []string{"RECONCILE_BENCH_DIR"}},
			&cli.BoolFlag{Name: "bulk", Usage: "build each source from its history's final rows, not by replaying every write (same index, minutes instead of hours at 10M rows; see docs/bench.md)"},
			&cli.IntFlag{Name: "reps", Value: 1, Usage: "runs of each method per dataset (the median is reported)"},
			&cli.Float64Flag{Name: "delete-ratio", Value: 1, Usage: "rows deleted over the history per live row"},
			&cli.Float64Flag{Name: "update-ratio", Value: 0.5, Usage: "updates over the history per live row"},
			&cli.Float64Flag{Name: "ttl-fraction", Value: 0.02, Usage: "fraction of writes with an expiry"},
			&cli.IntFlag{Name: "value-size", Value: 64, Usage: "bytes per value"},
			&cli.Int64Flag{Name: "seed", Value: 1, Usage: "selects the history"},
			&cli.IntFlag{Name: "chunk-rows", Value: baseline.DefaultChunkRows, Usage: "the chunked scan's batch size"},
			&cli.IntFlag{Name: "hash-bytes", Value: baseline.DefaultHashBytes, Usage: "bytes of each hash the baselines send"},
			&cli.StringFlag{Name: "mysql", Value: "mysql://root@127.0.0.1:3306/test", Usage: "MariaDB for the pt-table-sync comparison (an administrator); empty skips it", EnvVars: []string{"RECONCILE_BENCH_MYSQL"}},
			&cli.IntFlag{Name: "sql-max-rows", Value: 1_000_000, Usage: "largest dataset loaded into MariaDB for pt-table-sync"},
			&cli.StringFlag{Name: "sql-scenarios", Value: "mixed,swaps", Usage: "scenarios the pt-table-sync comparison runs on, a comma list"},
			&cli.BoolFlag{Name: "isolate", Value: true, Usage: "run each method in a process of its own (peak RSS per method)"},
			&cli.BoolFlag{Name: "warm", Value: true, Usage: "read both stores once before measuring a dataset (and report that time)"},
			&cli.StringFlag{Name: "save", Usage: "also write the JSON report to this file"},
			&cli.StringFlag{Name: "from", Usage: "measure nothing: print (and plot) JSON reports saved before, a comma list (merged)"},
			&cli.StringFlag{Name: "plot", Usage: "write plots into this directory"},
			&cli.BoolFlag{Name: "markdown", Usage: "print the tables as Markdown"},
			&cli.StringFlag{Name: "plot-format", Value: "svg", Usage: "png or svg"},
			&cli.BoolFlag{Name: "progress", Usage: "print progress lines on stderr even when it is not a terminal"},
			&cli.BoolFlag{Name: "worker", Hidden: true, Usage: "run one job read from stdin (used by --isolate)"},
			jsonFlag(),
		}, tuningFlags()...),
		Action: func(c *cli.Context) error {
			if _, err := args(c, 0, 0, "[flags]"); err != nil {
				return err
			}
			if c.Bool("worker") {
				return runBenchWorker(c.Context, std)
			}
			rows, err := intList(c.String("rows"))
			if err != nil {
				return fmt.Errorf("--rows: %w", err)
			}
			drifts, err := floatList(c.String("drift"))
			if err != nil {
				return fmt.Errorf("--drift: %w", err)
			}
			tun, err := tuning(c)
			if err != nil {
				return err
			}
			if c.Int("reps") < 1 {
				return fmt.Errorf("--reps %d: each method runs at least once", c.Int("reps"))
			}
			if c.Int("value-size") < 1 {
				return fmt.Errorf("--value-size %d: values of at least 1 byte", c.Int("value-size"))
			}
			if c.Bool("json") && c.Bool("markdown") {
				return errors.New("--json and --markdown: give one (--save FILE keeps the JSON while the table prints)")
			}
			if c.Bool("progress") {
				std.progress = true
			}
			return runBench(c.Context, benchOptions{
				stdio: std, json: c.Bool("json"), save: c.String("save"), from: c.String("from"),
				plot: c.String("plot"), plotFormat: c.String("plot-format"), isolate: c.Bool("isolate"), markdown: c.Bool("markdown"),
				command: strings.Join(os.Args, " "),
				config: bench.Config{
					Dir: c.String("dir"), Bulk: c.Bool("bulk"), Rows: rows, Drifts: drifts,
					Scenarios: benchList(c.String("scenarios")), Methods: benchList(c.String("methods")),
					Base: bench.History{DeleteRatio: c.Float64("delete-ratio"), UpdateRatio: c.Float64("update-ratio"),
						TTLFraction: c.Float64("ttl-fraction"), ValueSize: c.Int("value-size"), Seed: c.Int64("seed"), Now: bench.DefaultNow},
					Reps: c.Int("reps"), ChunkRows: c.Int("chunk-rows"), HashBytes: c.Int("hash-bytes"),
					Session: tun, Warm: c.Bool("warm"),
					MySQL: c.String("mysql"), SQLMaxRows: c.Int("sql-max-rows"), SQLScenarios: benchList(c.String("sql-scenarios")),
				},
			})
		},
	}
}

// benchOptions are the inputs of runBench.
type benchOptions struct {
	stdio
	config     bench.Config
	json       bool
	save, from string
	plot       string
	plotFormat string
	isolate    bool
	markdown   bool
	command    string
}

// runBench measures (or reads a saved report), prints the table or JSON, and plots.
func runBench(ctx context.Context, o benchOptions) error {
	var rep *bench.Report
	if o.from != "" {
		// One report, or several merged (their results in order; the first's header).
		for _, path := range benchList(o.from) {
			f, err := os.Open(path)
			if err != nil {
				return fmt.Errorf("bench --from: %w", err)
			}
			r, err := bench.ReadReport(f)
			f.Close()
			if err != nil {
				return fmt.Errorf("bench --from %s: %w", path, err)
			}
			if rep == nil {
				rep = r
			} else {
				rep.Results = append(rep.Results, r.Results...)
				rep.Command += "\n" + r.Command
			}
		}
		rep.Targets = bench.CheckTargets(rep.Results)
	} else {
		cfg := o.config
		if o.stdio.progress {
			cfg.Log = func(s string) { fmt.Fprintln(o.stdio.err, s) }
		}
		if o.isolate {
			cfg.Runner = isolatedRunner
		}
		if o.save != "" {
			cfg.Partial = func(r *bench.Report) {
				r.Command = o.command
				writeReport(o.save, r) // best effort; the final write reports errors
			}
		}
		var err error
		rep, err = bench.Run(ctx, cfg)
		if rep != nil {
			rep.Command = o.command
		}
		if err != nil {
			if rep != nil && len(rep.Results) > 0 && o.save != "" {
				writeReport(o.save, rep) // keep what was measured
			}
			return err // bench.Run's errors say "bench" first
		}
	}
	if o.save != "" {
		if err := writeReport(o.save, rep); err != nil {
			return err
		}
	}
	if o.plot != "" {
		paths, err := bench.WritePlots(rep, o.plot, o.plotFormat)
		if err != nil {
			return err
		}
		fmt.Fprintf(o.err, "plots written: %s\n", strings.Join(paths, ", "))
		if !slices.ContainsFunc(paths, func(p string) bool { return strings.Contains(filepath.Base(p), "bytes-vs-differing") }) {
			fmt.Fprintln(o.err, "bytes-vs-differing not drawn: it needs two drifts or more measured at one size (--drift 0.001,0.01)")
		}
	}
	switch {
	case o.json:
		return rep.WriteJSON(o.out)
	case o.markdown:
		return rep.WriteMarkdown(o.out)
	}
	return rep.WriteTable(o.out)
}

func writeReport(path string, rep *bench.Report) error {
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		return err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("bench --save: %w", err)
	}
	return nil
}

// isolatedRunner runs one job in a child process (this program's `bench --worker`), so
// that the child's peak RSS (which it reports itself: bench.PeakRSS) is the method's.
func isolatedRunner(ctx context.Context, job bench.Job) (bench.Result, error) {
	exe, err := os.Executable()
	if err != nil {
		return bench.Result{}, fmt.Errorf("run job: %w", err)
	}
	in, err := json.Marshal(job)
	if err != nil {
		return bench.Result{}, fmt.Errorf("run job: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, "bench", "--worker")
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return bench.Result{}, fmt.Errorf("run job in a child process: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var res bench.Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return bench.Result{}, fmt.Errorf("run job: read the child's result: %w", err)
	}
	res.RSSScope = "method" // the child's own peak (bench.PeakRSS), not its rusage
	return res, nil
}

// runBenchWorker runs the job on stdin in this process and writes its result to stdout.
func runBenchWorker(ctx context.Context, std stdio) error {
	var job bench.Job
	if err := json.NewDecoder(std.in).Decode(&job); err != nil {
		return fmt.Errorf("bench worker: read job: %w", err)
	}
	res, err := bench.RunJob(ctx, job)
	if err != nil {
		return fmt.Errorf("bench worker: %w", err)
	}
	return writeJSON(std.out, res)
}

func benchList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range benchList(s) {
		n, err := strconv.Atoi(strings.ReplaceAll(f, "_", ""))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a row count (1 or more)", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no values")
	}
	return out, nil
}

func floatList(s string) ([]float64, error) {
	var out []float64
	for _, f := range benchList(s) {
		x, err := strconv.ParseFloat(f, 64)
		if err != nil || x < 0 || x > 1 {
			return nil, fmt.Errorf("%q is not a fraction between 0 and 1", f)
		}
		out = append(out, x)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no values")
	}
	return out, nil
}
