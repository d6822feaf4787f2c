package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/reconcile-dev/reconcile/reconcile"
)

// tuningFlags are the session's knobs, shared by diff and sync, with the measured defaults
// of reconcile.Options.Defaults (see the README's benchmark section).
func tuningFlags() []cli.Flag {
	d := reconcile.Options{}.Defaults()
	return []cli.Flag{
		&cli.IntFlag{Name: "fanout", Value: d.Fanout, Usage: "fewest parts a mismatching range is cut into", EnvVars: []string{"RECONCILE_FANOUT"}},
		&cli.IntFlag{Name: "leaf-max", Value: d.LeafMax, Usage: "target entries at or below which a range is listed instead of cut", EnvVars: []string{"RECONCILE_LEAF_MAX"}},
		&cli.IntFlag{Name: "fingerprint-bytes", Value: d.FingerprintBytes, Usage: "most bytes of the short fingerprints sent while descending, 1-16 (rounds where few parts can mismatch use fewer bits, down to 16 bits or this length if shorter)", EnvVars: []string{"RECONCILE_FINGERPRINT_BYTES"}},
		&cli.IntFlag{Name: "batch-rows", Value: d.BatchRows, Usage: "first apply batch size; it doubles on success and halves on failure", EnvVars: []string{"RECONCILE_BATCH_ROWS"}},
		&cli.BoolFlag{Name: "list", Usage: fmt.Sprintf("list every differing key in the report, not only the first %d", reconcile.DifferenceSample)},
	}
}

// tuning reads tuningFlags into session options, refusing values outside their range
// (reconcile.Options would quietly take its defaults for them).
func tuning(c *cli.Context) (reconcile.Options, error) {
	o := reconcile.Options{
		Fanout:           c.Int("fanout"),
		LeafMax:          c.Int("leaf-max"),
		FingerprintBytes: c.Int("fingerprint-bytes"),
		BatchRows:        c.Int("batch-rows"),
	}
	for _, f := range []struct {
		name        string
		v, low, top int
	}{{"fanout", o.Fanout, 2, 1 << 16}, {"leaf-max", o.LeafMax, 1, 1 << 20}, {"fingerprint-bytes", o.FingerprintBytes, 1, 16}, {"batch-rows", o.BatchRows, 1, o.Defaults().MaxBatchRows}} {
		if f.v < f.low || f.v > f.top {
			return o, fmt.Errorf("--%s %d: give a number from %d to %d", f.name, f.v, f.low, f.top)
		}
	}
	if c.Bool("list") {
		o.MaxDifferences = -1
	}
	return o, nil
}
