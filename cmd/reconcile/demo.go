package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/reconcile-dev/reconcile/bench"
	"github.com/reconcile-dev/reconcile/reconcile"
)

func demoCommand(std stdio) *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "build a source and a drifted replica, diff them, sync them, and prove the roots equal",
		Description: "demo writes two Badger stores under --dir: source, with a delete-heavy history\n" +
			"(as many rows deleted over time as are live), and replica, a copy of it with 0.1%\n" +
			"drift: updates, deletes, inserts, a rollback of the newest versions (as a restore\n" +
			"from backup) and count-preserving swaps. It then runs diff and sync --mode mirror\n" +
			"from source to replica and compares the roots. A directory left by an earlier demo\n" +
			"is wiped first; any other existing directory is refused.\n\n" +
			"The source's history is replayed in memory and its final rows written in version\n" +
			"order (as gen --bulk does): the rows and index that writing every step would leave,\n" +
			"several times faster. --replay writes every step through the store instead.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Value: "./reconcile-demo", Usage: "directory for the two stores", EnvVars: []string{"RECONCILE_DEMO_DIR"}},
			&cli.IntFlag{Name: "rows", Value: 1_000_000, Usage: "live rows in the source", EnvVars: []string{"RECONCILE_DEMO_ROWS"}},
			&cli.BoolFlag{Name: "replay", Usage: "write every step of the source's history through the store, not only its final rows"},
		},
		Action: func(c *cli.Context) error {
			if _, err := args(c, 0, 0, "[--dir DIR] [--rows N] [--replay]"); err != nil {
				return err
			}
			return runDemo(c.Context, demoOptions{stdio: std, dir: c.String("dir"), rows: c.Int("rows"), replay: c.Bool("replay")})
		},
	}
}

// demoOptions are the inputs of runDemo.
type demoOptions struct {
	stdio
	dir  string
	rows int
	// replay writes every step of the source's history through the store; without it the
	// history is replayed in memory and its final rows written (bench.FinalRows).
	replay bool
}

// demoMarker marks a directory runDemo made, the only kind it will wipe.
const demoMarker = ".reconcile-demo"

// demoDrift is the replica's drift: about 0.1% of the rows' keys differ, of every kind.
func demoDrift(rows int) bench.Drift {
	return bench.Drift{
		Updates: 0.0003, Deletes: 0.0002, Inserts: 0.0002,
		RollbackVersions: 0.00005, Swaps: max(1, rows/10_000), Seed: 2,
	}
}

// runDemo builds the two stores, diffs and syncs them, and checks the roots. It fails if
// the diff does not find exactly the drift it made or the roots differ after the sync.
func runDemo(ctx context.Context, o demoOptions) error {
	if o.rows <= 0 {
		return errors.New("demo: --rows must be positive")
	}
	dir := filepath.Clean(o.dir)
	srcURL, dstURL := demoURL(dir, "source"), demoURL(dir, "replica")
	var timings []phase
	timed := func(name string, fn func() error) error {
		start := time.Now()
		err := fn()
		timings = append(timings, phase{name, time.Since(start)})
		return err
	}
	out := o.out
	if err := prepareDemoDir(out, dir); err != nil {
		return err
	}
	fmt.Fprintf(out, "reconcile demo: %d live rows in %s\n", o.rows, dir)

	now := time.Now().UnixNano()
	h := bench.History{Rows: o.rows, DeleteRatio: 1, UpdateRatio: 0.5, TTLFraction: 0.05, ValueSize: 64, Seed: 1, Now: now}
	var st bench.Stats
	fmt.Fprintf(out, "\n== generate %s\n", srcURL)
	err := timed("generate source", func() error {
		ep, err := openEndpoint(srcURL, create)
		if err != nil {
			return err
		}
		err = writeMetered(ctx, o.stdio, ep, "generate source", func(s bench.Sink) error {
			if o.replay {
				st, err = h.Generate(s)
				return err
			}
			final := bench.FinalRows{}
			if st, err = h.Generate(final); err != nil {
				return err
			}
			return final.WriteTo(s)
		})
		if cerr := ep.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("demo: generate source: %w", err)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	printHistory(tw, h, st)
	if o.replay {
		fmt.Fprintf(tw, "written	every step, %d writes, through the store\n", st.Inserts+st.Updates+st.Deletes)
	} else {
		fmt.Fprintf(tw, "written	the final %s, in version order (--replay writes all %d steps)\n", count(st.Live, "row"), st.Inserts+st.Updates+st.Deletes)
	}
	tw.Flush()

	fmt.Fprintf(out, "\n== copy the source directory to %s and drift it\n", dstURL)
	err = timed("copy source to replica", func() error {
		return bench.CopyDir(filepath.Join(dir, "source"), filepath.Join(dir, "replica"))
	})
	if err != nil {
		return fmt.Errorf("demo: copy source: %w", err)
	}
	var ds bench.DriftStats
	err = timed("drift replica", func() error {
		ep, err := openEndpoint(dstURL, readWrite)
		if err != nil {
			return err
		}
		err = writeMetered(ctx, o.stdio, ep, "drift replica", func(s bench.Sink) error {
			ds, err = h.ApplyDrift(s, demoDrift(o.rows))
			return err
		})
		if cerr := ep.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("demo: drift replica: %w", err)
	}
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	printDrift(tw, ds, "replica")
	tw.Flush()

	// Both sessions run at the history's clock so that expiry is judged exactly as the
	// drift's expected counts were.
	fmt.Fprintf(out, "\n== reconcile diff %s %s\n", srcURL, dstURL)
	var rep *reconcile.Report
	err = timed("diff", func() error {
		rep, err = runSession(ctx, o.stdio, srcURL, dstURL, readOnly, reconcile.Options{Mode: reconcile.Diff, Now: now})
		return err
	})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if err := printReport(out, rep, false); err != nil {
		return err
	}
	if rep.OnlySource != ds.OnlySource || rep.OnlyTarget != ds.OnlyTarget || rep.Changed != ds.Changed {
		return fmt.Errorf("demo: diff found %d only in source, %d only in replica, %d changed; the drift made %d, %d, %d",
			rep.OnlySource, rep.OnlyTarget, rep.Changed, ds.OnlySource, ds.OnlyTarget, ds.Changed)
	}
	fmt.Fprintf(out, "diff found exactly the %s the drift changed\n", count(ds.Differing(), "key"))

	fmt.Fprintf(out, "\n== reconcile sync --mode mirror %s %s\n", srcURL, dstURL)
	err = timed("sync", func() error {
		rep, err = runSession(ctx, o.stdio, srcURL, dstURL, readWrite, reconcile.Options{Mode: reconcile.Mirror, Now: now})
		return err
	})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if err := printReport(out, rep, false); err != nil {
		return err
	}
	if rep.Partial() {
		return &exitErr{code: exitPartial, err: errors.New("demo: sync " + rep.PartialReason())}
	}

	fmt.Fprintf(out, "\n== reconcile root\n")
	var roots [2]rootJSON
	err = timed("roots", func() error {
		for i, u := range []string{srcURL, dstURL} {
			ep, err := openEndpoint(u, readOnly)
			if err != nil {
				return err
			}
			roots[i], err = endpointRoot(ctx, ep, now)
			ep.Close()
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "source\t%s\t%s\n", roots[0].Fingerprint, count(roots[0].Count, "row"))
	fmt.Fprintf(tw, "replica\t%s\t%s\n", roots[1].Fingerprint, count(roots[1].Count, "row"))
	tw.Flush()
	if roots[0] != roots[1] {
		return fmt.Errorf("demo: the roots differ after the sync")
	}
	fmt.Fprintf(out, "the roots are equal: the replica holds exactly the source's live rows\n")

	fmt.Fprintf(out, "\n== timings\n")
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, p := range timings {
		fmt.Fprintf(tw, "%s\t%s\t\n", p.name, p.d.Round(time.Millisecond))
	}
	tw.Flush()
	fmt.Fprintf(out, "\ntry: reconcile root %s\n", srcURL)
	return nil
}

type phase struct {
	name string
	d    time.Duration
}

// demoURL is the badger URL of a store under dir.
func demoURL(dir, name string) string {
	p := filepath.ToSlash(filepath.Join(dir, name))
	if filepath.IsAbs(p) {
		return "badger://" + p
	}
	if p[0] != '.' {
		p = "./" + p
	}
	return "badger://" + p
}

// prepareDemoDir creates dir, or wipes one an earlier demo made. It refuses to touch a
// directory it did not make, since --dir might name anything.
func prepareDemoDir(out io.Writer, dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("demo: %w", err)
	case len(entries) == 0:
	default:
		if _, err := os.Stat(filepath.Join(dir, demoMarker)); err != nil {
			return fmt.Errorf("demo: %s exists and was not made by reconcile demo; remove it or pick another --dir", dir)
		}
		fmt.Fprintf(out, "removing the previous demo in %s\n", dir)
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, demoMarker), []byte("made by reconcile demo; removed by the next one\n"), 0o644)
}
