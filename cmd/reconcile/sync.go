package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/reconcile-dev/reconcile/reconcile"
)

func syncCommand(std stdio) *cli.Command {
	return &cli.Command{
		Name:      "sync",
		Usage:     "make DST equal to SRC, creating DST if missing (exit 0 synced, 2 error or refused, 3 partial)",
		ArgsUsage: "SRC DST",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "mode", Value: "mirror", Usage: "resolution: mirror (DST becomes a copy of SRC)", EnvVars: []string{"RECONCILE_MODE"}},
			&cli.BoolFlag{Name: "dry-run", Usage: "compute what would be written, write nothing"},
			&cli.StringFlag{Name: "max-delete", Usage: "refuse a sync that deletes more than N rows or P% of DST's rows (default 10%)", EnvVars: []string{"RECONCILE_MAX_DELETE"}},
			&cli.BoolFlag{Name: "force", Usage: "sync even when --max-delete would refuse"},
			jsonFlag(),
		}, tuningFlags()...),
		Action: func(c *cli.Context) error {
			a, err := args(c, 2, 2, "SRC DST")
			if err != nil {
				return err
			}
			tun, err := tuning(c)
			if err != nil {
				return err
			}
			return runSync(c.Context, syncOptions{
				stdio: std, source: a[0], target: a[1],
				mode: c.String("mode"), dryRun: c.Bool("dry-run"), maxDelete: c.String("max-delete"),
				force: c.Bool("force"), json: c.Bool("json"), session: tun,
			})
		},
	}
}

// syncOptions are the inputs of runSync.
type syncOptions struct {
	stdio
	source, target string
	mode           string
	dryRun         bool
	maxDelete      string // "N" or "P%"; empty means the default
	force          bool
	json           bool
	// session tunes the session (tests set Now); the fields above override it.
	session reconcile.Options
}

// runSync runs a sync and prints its report. A refused sync returns exitError with a
// message that says nothing was written; a sync that left rows quarantined or raced, or
// the target unequal after writing, returns exitPartial.
func runSync(ctx context.Context, o syncOptions) error {
	opts := o.session
	switch o.mode {
	case "mirror", "":
		opts.Mode = reconcile.Mirror
	default:
		return fmt.Errorf("--mode %q: this build supports mirror", o.mode)
	}
	if o.maxDelete != "" {
		l, err := reconcile.ParseDeleteLimit(o.maxDelete)
		if err != nil {
			return err
		}
		opts.MaxDelete = l
	}
	opts.DryRun, opts.Force = o.dryRun, o.force
	// A missing target is created (a new replica receives the source's live rows); a dry
	// run writes nothing, so it compares with an empty store instead (runSession).
	target := create
	if o.dryRun {
		target = readOnly
	}
	rep, err := runSession(ctx, o.stdio, o.source, o.target, target, opts)
	if err != nil {
		if o.dryRun && !o.json && rep != nil && errors.Is(err, reconcile.ErrDeleteGuard) {
			// A dry run is asked for to see what a sync would do: what the guard would
			// refuse is shown too, so that it can be judged (--json has it in any case).
			if perr := printReport(o.out, rep, false); perr != nil {
				return perr
			}
		}
		return printFailure(o.out, rep, err, o.json)
	}
	if err := printReport(o.out, rep, o.json); err != nil {
		return err
	}
	if rep.Partial() {
		return &exitErr{code: exitPartial, err: errors.New("sync " + rep.PartialReason())}
	}
	return nil
}
