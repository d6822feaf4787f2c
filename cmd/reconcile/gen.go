package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/reconcile-dev/reconcile/adapters/badger"
	"github.com/reconcile-dev/reconcile/bench"
	"github.com/reconcile-dev/reconcile/reconcile"
)

func genCommand(std stdio) *cli.Command {
	return &cli.Command{
		Name:  "gen",
		Usage: "write a delete-heavy history (and optionally drift) into a new store",
		Description: "gen writes a deterministic history: the same flags give the same rows.\n" +
			"With --drift-* flags it then applies drift, making the store a diverged replica of\n" +
			"what gen writes without them. With --drift-only it applies only the drift, to a\n" +
			"store that already holds the history (a copy of one gen made): pass the same history\n" +
			"flags, including the --now that gen printed. With --bulk it replays the history in\n" +
			"memory and writes only its final rows, in version order: the same rows and index,\n" +
			"without the writes of the rows the history deleted, several times faster.",
		ArgsUsage: "ENDPOINT",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "rows", Value: 100_000, Usage: "live rows at the end of the history"},
			&cli.Float64Flag{Name: "delete-ratio", Value: 1, Usage: "rows deleted over the history per live row"},
			&cli.Float64Flag{Name: "update-ratio", Value: 0.5, Usage: "updates over the history per live row"},
			&cli.Int64Flag{Name: "seed", Value: 1, Usage: "selects the history"},
			&cli.Float64Flag{Name: "ttl-fraction", Value: 0.05, Usage: "fraction of rows with an expiry (a quarter of them already expired)"},
			&cli.IntFlag{Name: "value-size", Value: 64, Usage: "bytes per value"},
			&cli.Int64Flag{Name: "now", Usage: "unix ns that expiry times are relative to (default: the current time)"},
			&cli.Float64Flag{Name: "drift-updates", Usage: "fraction of rows to rewrite"},
			&cli.Float64Flag{Name: "drift-deletes", Usage: "fraction of rows to delete"},
			&cli.Float64Flag{Name: "drift-inserts", Usage: "fraction of rows to insert under new keys"},
			&cli.Float64Flag{Name: "drift-rollback", Usage: "fraction of the top of the version range to roll back, as a restore from backup"},
			&cli.IntFlag{Name: "drift-swaps", Usage: "number (not a fraction) of count-preserving swaps: each deletes a row and inserts another at its version"},
			&cli.Int64Flag{Name: "drift-seed", Value: 1, Usage: "selects which rows drift"},
			&cli.BoolFlag{Name: "drift-only", Usage: "apply only the drift, to a store that holds this history"},
			&cli.BoolFlag{Name: "bulk", Usage: "write only the history's final rows (replayed in memory), not every write"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			a, err := args(c, 1, 1, "ENDPOINT")
			if err != nil {
				return err
			}
			if c.Int("value-size") < 1 {
				return fmt.Errorf("--value-size %d: values of at least 1 byte", c.Int("value-size"))
			}
			return runGen(c.Context, genOptions{
				stdio: std, endpoint: a[0], json: c.Bool("json"), driftOnly: c.Bool("drift-only"), bulk: c.Bool("bulk"),
				history: bench.History{
					Rows: c.Int("rows"), DeleteRatio: c.Float64("delete-ratio"), UpdateRatio: c.Float64("update-ratio"),
					TTLFraction: c.Float64("ttl-fraction"), ValueSize: c.Int("value-size"), Seed: c.Int64("seed"), Now: c.Int64("now"),
				},
				drift: bench.Drift{
					Updates: c.Float64("drift-updates"), Deletes: c.Float64("drift-deletes"), Inserts: c.Float64("drift-inserts"),
					RollbackVersions: c.Float64("drift-rollback"), Swaps: c.Int("drift-swaps"), Seed: c.Int64("drift-seed"),
				},
			})
		},
	}
}

// genOptions are the inputs of runGen.
type genOptions struct {
	stdio
	endpoint  string
	history   bench.History
	drift     bench.Drift
	driftOnly bool
	// bulk writes the final rows of the history (and drift) rather than every write.
	bulk bool
	json bool
}

// genResult is what gen prints.
type genResult struct {
	History *bench.Stats      `json:"history,omitempty"`
	Drift   *bench.DriftStats `json:"drift,omitempty"`
}

func hasDrift(d bench.Drift) bool {
	d.Seed = 0
	return d != bench.Drift{}
}

// runGen writes the history, the history and its drift, or (driftOnly) only the drift.
func runGen(ctx context.Context, o genOptions) error {
	loc, err := parseEndpoint(o.endpoint)
	if err != nil {
		return err
	}
	h := o.history
	if o.driftOnly {
		if h.Now == 0 {
			return errors.New("gen --drift-only needs the --now the history was generated with (gen printed it)")
		}
		if !hasDrift(o.drift) {
			return errors.New("gen --drift-only needs some --drift-* flags")
		}
		if o.bulk {
			return errors.New("gen --bulk writes a new history's final rows; a drift alone (--drift-only) is written as it is")
		}
	}
	if err := h.Check(); err != nil {
		return fmt.Errorf("gen: %w; nothing was written", err)
	}
	if err := o.drift.Check(); err != nil {
		return fmt.Errorf("gen: %w; nothing was written", err)
	}
	if h.Now == 0 {
		h.Now = time.Now().UnixNano()
	}
	a := create
	var fresh *newStore // removed again if gen fails: a partial history is no use
	if o.driftOnly {
		a = readWrite
	} else {
		fresh = freshStore(loc)
	}
	ep, err := openEndpoint(loc.raw, a)
	if err != nil {
		return err
	}
	closed := false
	defer func() {
		if !closed {
			ep.Close()
		}
	}()
	if ep.remote != nil {
		return fmt.Errorf("gen into %s: http(s) endpoints do not take gen's writes (docs/http.md): gen into a local store, then `reconcile sync` it to the server (or run gen on the server's machine and serve the store)", ep.loc.server)
	}
	if ep.write == nil || ep.scan == nil {
		return fmt.Errorf("gen: %s endpoints take no raw writes", loc.scheme)
	}
	empty, err := isEmpty(ep)
	if err != nil {
		return err
	}
	switch {
	case o.driftOnly && empty:
		return fmt.Errorf("gen --drift-only: %s holds no rows; generate the history first (or copy a store gen made)", loc)
	case !o.driftOnly && !empty:
		return fmt.Errorf("gen: %s already holds rows; gen writes a fresh history into a new store (to drift a copy of a generated store, use --drift-only; if a gen into it was killed, remove the directory and run gen again)", loc)
	}

	var res genResult
	err = writeMetered(ctx, o.stdio, ep, "gen", func(s bench.Sink) error {
		if o.driftOnly {
			ds, err := h.ApplyDrift(s, o.drift)
			res.Drift = &ds
			return err
		}
		to := s
		var final bench.FinalRows
		if o.bulk {
			final = bench.FinalRows{}
			to = final
		}
		st, ds, err := generate(h, o.drift, to)
		res.History, res.Drift = &st, ds
		if err != nil || !o.bulk {
			return err
		}
		return final.WriteTo(s)
	})
	if err != nil {
		var werr *badger.WriteError
		switch {
		case ctx.Err() != nil && errors.Is(err, ctx.Err()) && fresh != nil:
			err = fmt.Errorf("gen into %s: interrupted", loc)
		case ctx.Err() != nil && errors.Is(err, ctx.Err()) && errors.As(err, &werr):
			err = fmt.Errorf("gen --drift-only into %s: interrupted after %s of the drift committed (each write is whole); the store holds part of the drift: make the copy again to drift it from the start", loc, count(werr.Committed, "write"))
		default:
			err = fmt.Errorf("gen into %s: %w", loc, err)
		}
		if fresh != nil {
			closed = true
			ep.Close()
			return fresh.remove(err)
		}
		return err
	}
	closed = true
	if err := ep.Close(); err != nil {
		return fmt.Errorf("gen into %s: %w", loc, err)
	}
	if o.json {
		return writeJSON(o.out, res)
	}
	tw := tabwriter.NewWriter(o.out, 0, 0, 2, ' ', 0)
	if res.History != nil {
		printHistory(tw, h, *res.History)
	}
	if res.Drift != nil {
		printDrift(tw, *res.Drift, "target")
	}
	return tw.Flush()
}

// generate writes history h, with drift d if it has any, to s.
func generate(h bench.History, d bench.Drift, s bench.Sink) (bench.Stats, *bench.DriftStats, error) {
	if !hasDrift(d) {
		st, err := h.Generate(s)
		return st, nil, err
	}
	st, ds, err := h.GenerateDrifted(s, d)
	return st, &ds, err
}

func isEmpty(ep *endpoint) (bool, error) {
	empty := true
	err := ep.scan(func(reconcile.Row) bool { empty = false; return false })
	return empty, err
}

func printHistory(w io.Writer, h bench.History, st bench.Stats) {
	fmt.Fprintf(w, "history\t%s (%d expired at now, %d binary keys), %d inserted, %d updates, %d deleted\n",
		count(st.Live, "live row"), st.Expired, st.BinaryKeys, st.Inserts, st.Updates, st.Deletes)
	fmt.Fprintf(w, "versions\t%d..%d, %s written in bulk commits\n", st.MinVersion, st.MaxVersion, count(st.BulkRows, "row"))
	fmt.Fprintf(w, "reproduce\t--rows %d --delete-ratio %g --update-ratio %g --ttl-fraction %g --value-size %d --seed %d --now %d\n",
		h.Rows, h.DeleteRatio, h.UpdateRatio, h.TTLFraction, h.ValueSize, h.Seed, st.Now)
}

func printDrift(w io.Writer, d bench.DriftStats, target string) {
	fmt.Fprintf(w, "drift\t%d updated (%d at their own version), %d deleted, %d inserted, %d swapped\n",
		d.Updated, d.SameVersion, d.Deleted, d.Inserted, d.Swapped)
	if d.RolledBack+d.Removed > 0 {
		fmt.Fprintf(w, "rollback\tversions above %d: %s restored to older versions, %d removed\n", d.Cutoff, count(d.RolledBack, "row"), d.Removed)
	}
	fmt.Fprintf(w, "expected\t%s: %d only in source, %d only in %s, %d changed\n",
		count(d.Differing(), "differing key"), d.OnlySource, d.OnlyTarget, target, d.Changed)
}

// writeMetered runs fn against the endpoint's writer, counting writes on a progress line
// and stopping when ctx is done.
func writeMetered(ctx context.Context, std stdio, ep *endpoint, label string, fn func(bench.Sink) error) error {
	show, done := std.meter()
	defer done()
	return ep.write(func(s bench.Sink) error {
		return fn(&meteredSink{Sink: s, ctx: ctx, show: show, label: label})
	})
}

// meteredSink counts writes for a progress line and checks for cancellation.
type meteredSink struct {
	bench.Sink
	ctx   context.Context
	show  func(string)
	label string
	n     int
}

func (m *meteredSink) tick() error {
	m.n++
	if m.n%4096 != 0 {
		return nil
	}
	m.show(fmt.Sprintf("%s: %d writes", m.label, m.n))
	return m.ctx.Err()
}

func (m *meteredSink) Put(key, value []byte, version uint64, expiresAt int64) error {
	if err := m.tick(); err != nil {
		return err
	}
	return m.Sink.Put(key, value, version, expiresAt)
}

func (m *meteredSink) Delete(key []byte) error {
	if err := m.tick(); err != nil {
		return err
	}
	return m.Sink.Delete(key)
}
