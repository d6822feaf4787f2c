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
		&cli.IntFlag{Name: "fingerprint-bytes", Value: d.FingerprintBytes, Usage: "most bytes of the short fingerprints sent while descending, 1-16 (rounds where few parts can mismatch use fewer bits, down to 16)", EnvVars: []string{"RECONCILE_FINGERPRINT_BYTES"}},
		&cli.IntFlag{Name: "batch-rows", Value: d.BatchRows, Usage: "first apply batch size; it doubles on success and halves on failure", EnvVars: []string{"RECONCILE_BATCH_ROWS"}},
		&cli.BoolFlag{Name: "list", Usage: fmt.Sprintf("list every differing key in the report, not only the first %d", reconcile.DifferenceSample)},
	}
}

// tuning reads tuningFlags into session options.
func tuning(c *cli.Context) reconcile.Options {
	o := reconcile.Options{
		Fanout:           c.Int("fanout"),
		LeafMax:          c.Int("leaf-max"),
		FingerprintBytes: c.Int("fingerprint-bytes"),
		BatchRows:        c.Int("batch-rows"),
	}
	if c.Bool("list") {
		o.MaxDifferences = -1
	}
	return o
}
