package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/reconcile-dev/reconcile/adapters/memory"
	sqlep "github.com/reconcile-dev/reconcile/adapters/sql"
	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// jsonFlag is the --json flag every command takes (a new one each time: cli keeps parse
// state in flags).
func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print the result as JSON", EnvVars: []string{"RECONCILE_JSON"}}
}

func diffCommand(std stdio) *cli.Command {
	return &cli.Command{
		Name:      "diff",
		Usage:     "report how SRC and DST differ, writing nothing (exit 0 same, 1 differ)",
		ArgsUsage: "SRC DST",
		Flags:     append([]cli.Flag{jsonFlag()}, tuningFlags()...),
		Action: func(c *cli.Context) error {
			a, err := args(c, 2, 2, "SRC DST")
			if err != nil {
				return err
			}
			tun, err := tuning(c)
			if err != nil {
				return err
			}
			return runDiff(c.Context, diffOptions{stdio: std, source: a[0], target: a[1], json: c.Bool("json"), session: tun})
		},
	}
}

// diffOptions are the inputs of runDiff.
type diffOptions struct {
	stdio
	source, target string
	json           bool
	// session tunes the session (tests set Now); Mode is set by runDiff.
	session reconcile.Options
}

// runDiff compares two endpoints and prints the report. It returns an exitErr with
// exitDiffer, and no message, when they differ.
func runDiff(ctx context.Context, o diffOptions) error {
	opts := o.session
	opts.Mode = reconcile.Diff
	rep, err := runSession(ctx, o.stdio, o.source, o.target, readOnly, opts)
	if err != nil {
		return printFailure(o.out, rep, err, o.json)
	}
	if err := printReport(o.out, rep, o.json); err != nil {
		return err
	}
	if rep.Differ() {
		return &exitErr{code: exitDiffer}
	}
	return nil
}

// runSession opens both endpoints (the source read-only, the target with targetAccess),
// runs one session with a progress line on a terminal, and closes them. With an error it
// returns the report as far as the session got (nil if it did not start).
func runSession(ctx context.Context, std stdio, source, target string, targetAccess access, opts reconcile.Options) (*reconcile.Report, error) {
	src, err := parseEndpoint(source)
	if err != nil {
		return nil, err
	}
	dst, err := parseEndpoint(target)
	if err != nil {
		return nil, err
	}
	if sameStore(src, dst) {
		where := src.path
		switch {
		case src.server != "":
			where = src.server
		case src.sql != nil:
			where = fmt.Sprintf("%s and %s name one table", src, dst)
		}
		return nil, fmt.Errorf("source and target are the same store (%s)", where)
	}
	s, err := openEndpoint(source, readOnly)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	// A Badger target a sync creates is ordered as its source, and removed again if the
	// sync fails before writing a row (below); a dry run compares with the empty store a
	// sync would create.
	var fresh *newStore
	if targetAccess == create || opts.DryRun {
		if fresh = freshStore(dst); fresh != nil && dst.ordering == 0 {
			if o, ok := s.Endpoint.(ordered); ok {
				dst.ordering = o.Ordering()
			}
		}
	}
	// A dry run into a target that does not exist yet compares with an empty one.
	againstEmpty := func(what string, ord merkle.Ordering) (*reconcile.Report, error) {
		fmt.Fprintf(std.err, "reconcile: %s does not exist yet: the dry run compares with the empty %s a sync would create\n", what, strings.Fields(what)[0])
		return runOpened(ctx, std, s, &endpoint{Endpoint: memory.New(ord), loc: dst}, source, target, opts)
	}
	if fresh != nil && targetAccess != create {
		return againstEmpty("store "+dst.String(), cmp.Or(dst.ordering, merkle.VersionOrder))
	}
	scheme, _ := lookupScheme(dst.scheme)
	t, err := scheme.open(dst, targetAccess)
	if err != nil && opts.DryRun && errors.Is(err, sqlep.ErrNoTable) && s.table != nil {
		if cerr := sqlep.CheckCreate(*dst.sql, s.table); cerr != nil {
			return nil, fmt.Errorf("%s: %w", dst, cerr) // as the sync itself would be refused
		}
		return againstEmpty(fmt.Sprintf("table %s in %s", dst.sql.Table, dst), s.table.Ordering())
	}
	createdTable, newFile := false, ""
	if err != nil && targetAccess == create && errors.Is(err, sqlep.ErrNoTable) && s.table != nil {
		if _, serr := os.Stat(dst.sql.DSN); dst.sql.Dialect == "sqlite" && errors.Is(serr, fs.ErrNotExist) {
			newFile = dst.sql.DSN // CreateTable makes the database file too
		}
		// A SQL target that does not exist yet is made like the SQL source (a new replica).
		ctx, cancel := context.WithTimeout(ctx, sqlOpenTimeout)
		err = sqlep.CreateTable(ctx, *dst.sql, s.table)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", dst, err)
		}
		fmt.Fprintf(std.err, "reconcile: created table %s in %s with the source's columns\n", dst.sql.Table, dst)
		createdTable = true
		t, err = scheme.open(dst, targetAccess)
	} else if err != nil && targetAccess == create && errors.Is(err, sqlep.ErrNoTable) {
		err = fmt.Errorf("%w; sync creates a missing SQL table only from a SQL source, whose columns it copies", err)
	}
	if err != nil {
		return nil, err // (not removed: another process may have made it meanwhile)
	}
	rep, err := runOpened(ctx, std, s, t, source, target, opts)
	if cerr := t.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", t.loc, cerr)
	}
	// A new target the failed sync wrote nothing into is removed again; one it wrote
	// rows into is kept (the message says how many), so that a run again goes on
	// from there rather than from nothing.
	var inDoubt *reconcile.InDoubtError
	wrote := rep != nil && rep.Upserted+rep.Deleted > 0 || errors.As(err, &inDoubt)
	if err != nil && !wrote && fresh != nil && targetAccess == create {
		err = fresh.remove(err)
	}
	if err != nil && !wrote && createdTable {
		ctx, cancel := context.WithTimeout(context.Background(), sqlOpenTimeout)
		if derr := sqlep.DropTable(ctx, *dst.sql); derr != nil {
			err = fmt.Errorf("%w; table %s was created by this sync and could not be dropped again (%v): drop it", err, dst.sql.Table, derr)
		} else {
			err = fmt.Errorf("%w; table %s was created by this sync and is dropped again", err, dst.sql.Table)
			if newFile != "" {
				for _, f := range []string{newFile, newFile + "-wal", newFile + "-shm", newFile + "-journal"} {
					os.Remove(f) // the database file it was made in, too
				}
			}
		}
		cancel()
	}
	return rep, err
}

// runOpened runs one session between opened endpoints, with a progress line on a
// terminal; it closes neither. With an error it returns what report it has (nil before
// the session's end), for what was written.
func runOpened(ctx context.Context, std stdio, s, t *endpoint, source, target string, opts reconcile.Options) (*reconcile.Report, error) {
	var err error
	progress, done := std.sessionProgress(string(opts.Mode))
	opts.Progress = progress
	var rep *reconcile.Report
	switch {
	case s.remote != nil && t.remote != nil:
		// Two servers: the source's runs the session, this process carries its requests.
		rep, err = s.remote.Relay(ctx, t.remote, opts)
	case t.remote != nil:
		rep, err = runPeerSession(ctx, s.Endpoint, t, opts)
	case s.remote != nil:
		rep, err = runPullSession(ctx, s, t.Endpoint, opts)
	default:
		// The opened endpoints themselves, as `run` passes them: the wrapper would hide
		// their optional interfaces (reconcile.KeyFormatter).
		rep, err = reconcile.Run(ctx, s.Endpoint, t.Endpoint, opts)
	}
	done()
	if err == nil && opts.Mode == reconcile.Mirror && !opts.DryRun {
		// A Badger replica of a SQL table (or of another such replica) remembers how its
		// keys read (id=18), so that its own diffs and reports show them as the table's do.
		if err := t.recordKeyFormat(keyFormatOf(s.Endpoint)); err != nil {
			fmt.Fprintf(std.err, "reconcile: %v\n", err)
		}
	}
	if err != nil {
		if errors.Is(err, reconcile.ErrDeleteGuard) {
			return rep, err // its message says nothing was written and how to override
		}
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return rep, fmt.Errorf("%s %s %s: %s", opts.Mode, source, target, interrupted(opts, rep, err))
		}
		if opts.Mode == reconcile.Mirror && !opts.DryRun && rep != nil && rep.Upserted+rep.Deleted > 0 {
			// What was written before the failure stays (each batch one transaction).
			return rep, fmt.Errorf("%s %s %s: %w; before it, %s upserted and %d deleted, each batch whole: run the sync again to finish", opts.Mode, source, target, err, count(rep.Upserted, "row"), rep.Deleted)
		}
		return rep, fmt.Errorf("%s %s %s: %w", opts.Mode, source, target, err)
	}
	return rep, nil
}

// interrupted says what an interrupted session (SIGINT, SIGTERM, SIGHUP) left behind: each apply
// batch is one transaction on the target, so what was written is whole.
func interrupted(opts reconcile.Options, rep *reconcile.Report, err error) string {
	if opts.Mode != reconcile.Mirror || opts.DryRun {
		return "interrupted; nothing was written"
	}
	if rep == nil {
		return "interrupted; the batches applied before it are committed whole (each is one transaction) and no row is half-written: run the sync again to finish"
	}
	inDoubt := ""
	var d *reconcile.InDoubtError
	if errors.As(err, &d) {
		inDoubt = fmt.Sprintf(" (and a batch of %s was being written: its answer did not arrive, so whether it committed is not known)", count(d.Rows, "row"))
	}
	return fmt.Sprintf("interrupted after %s upserted and %d deleted%s; each batch is one transaction, so no row is half-written: run the sync again to finish", count(rep.Upserted, "row"), rep.Deleted, inDoubt)
}
