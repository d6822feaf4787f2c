package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/reconcile-dev/reconcile/adapters/badger"
	sqlep "github.com/reconcile-dev/reconcile/adapters/sql"
)

func indexCommand(std stdio) *cli.Command {
	// sub runs runSQL on a SQL table, or runBadger (nil: not for Badger) on a Badger store.
	sub := func(name string, aliases []string, usage string, runSQL func(ctx context.Context, t *sqlep.Table, o indexOptions) error,
		runBadger func(ctx context.Context, s *badger.Store, o indexOptions) error) *cli.Command {
		return &cli.Command{
			Name:      name,
			Aliases:   aliases,
			Usage:     usage,
			ArgsUsage: "ENDPOINT",
			Flags:     []cli.Flag{jsonFlag()},
			Action: func(c *cli.Context) error {
				ep, err := oneEndpoint(c, readWrite)
				if err != nil {
					return err
				}
				defer ep.Close()
				o := indexOptions{stdio: std, json: c.Bool("json"), endpoint: ep.loc.String()}
				if s := ep.store; s != nil && runBadger != nil {
					return runBadger(c.Context, s, o)
				}
				if ep.table == nil && ep.loc.server != "" {
					return fmt.Errorf("index %s runs where the store is: run it on the server's machine against the store `reconcile serve` serves", name)
				}
				if ep.table == nil {
					return fmt.Errorf("index %s: %s endpoints keep their index themselves; only SQL tables take an installed one, and Badger stores take install and verify", name, ep.loc.scheme)
				}
				return runSQL(c.Context, ep.table, o)
			},
		}
	}
	return &cli.Command{
		Name:  "index",
		Usage: "install, verify or remove the maintained index of a SQL table; verify or rebuild a Badger store's",
		Description: "install creates, in the table's own database, the index tables and the triggers that\n" +
			"keep them current (rebuilding them if present); sessions then catch up on what changed\n" +
			"and answer from the index instead of reading the whole table. verify rebuilds the index\n" +
			"in memory from one read of the table and compares (exit 1 when it differs). uninstall\n" +
			"removes everything install created. See docs/sql.md.\n\n" +
			"On a Badger store, verify reads every row and index record once and checks the index\n" +
			"and the expiry index against the rows (exit 1 when they differ), and install rebuilds\n" +
			"both from the rows; a rebuild that is cut short is finished by the next command that opens the store.",
		Subcommands: []*cli.Command{
			sub("install", []string{"rebuild"}, "create (or rebuild) the maintained index", runIndexInstall, runBadgerRebuild),
			sub("verify", nil, "compare the index with a fresh read of the table", runIndexVerify, runBadgerVerify),
			sub("uninstall", nil, "remove the index's tables and triggers", runIndexUninstall, nil),
		},
		// Without an Action, urfave/cli takes an unknown subcommand for a help topic ("No
		// help topic for 'instal'").
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return cli.ShowSubcommandHelp(c)
			}
			return fmt.Errorf("index: unknown subcommand %q: want install (or rebuild), verify or uninstall (see reconcile index --help)", c.Args().First())
		},
	}
}

func runBadgerRebuild(ctx context.Context, s *badger.Store, o indexOptions) error {
	n, err := s.RebuildIndex(ctx)
	if err == nil {
		err = s.Compact() // as after any bulk write: the next session need not step over stale versions
	}
	switch {
	case err != nil && ctx.Err() != nil && errors.Is(err, badger.ErrRebuildInterrupted):
		return fmt.Errorf("index install %s: interrupted, so the index is half built: no row was changed, and the next command to open the store finishes the rebuild first (run `reconcile index install` again to finish it now)", o.endpoint)
	case err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return fmt.Errorf("index install %s: interrupted before the rebuild began; nothing was changed", o.endpoint)
	case err != nil:
		return err
	}
	if o.json {
		return writeJSON(o.out, map[string]any{"installed": true, "entries": n})
	}
	_, err = fmt.Fprintf(o.out, "rebuilt the index of %s: %s\n", o.endpoint, count(n, "row"))
	return err
}

func runBadgerVerify(ctx context.Context, s *badger.Store, o indexOptions) error {
	c, err := s.VerifyIndex(ctx)
	if err != nil {
		return err
	}
	if o.json {
		err = writeJSON(o.out, map[string]any{"ok": c.OK(), "rows": c.Rows, "entries": c.Index.Entries,
			"nodes": c.Index.Nodes, "bad_entries": c.Index.BadEntries, "bad_nodes": c.Index.BadNodes,
			"rows_match": c.RowsMatch, "expiring": c.Expiring, "expiry_match": c.ExpiryMatch})
	} else if c.OK() {
		_, err = fmt.Fprintf(o.out, "the index of %s matches its rows: %s (%d with an expiry, expired ones not yet purged included, which root leaves out), %s\n", o.endpoint, count(c.Rows, "row"), c.Expiring, count(c.Index.Nodes, "index node"))
	} else {
		_, err = fmt.Fprintf(o.out, "the index of %s differs from its rows: %s, %s, entries match the rows %v, expiry index matches %v; rebuild it with `reconcile index install`\n",
			o.endpoint, count(c.Index.BadEntries, "bad entry"), count(c.Index.BadNodes, "bad node"), c.RowsMatch, c.ExpiryMatch)
	}
	if err == nil && !c.OK() {
		return &exitErr{code: exitDiffer}
	}
	return err
}

type indexOptions struct {
	stdio
	endpoint string
	json     bool
}

func runIndexInstall(ctx context.Context, t *sqlep.Table, o indexOptions) error {
	n, err := t.InstallIndex(ctx)
	if err != nil {
		return err
	}
	if warn, err := t.IndexWarning(ctx); err != nil {
		return err
	} else if warn != "" {
		fmt.Fprintf(o.err, "reconcile: note: %s\n", warn)
	}
	if o.json {
		return writeJSON(o.out, map[string]any{"installed": true, "entries": n})
	}
	_, err = fmt.Fprintf(o.out, "installed the index of %s: %d entries\n", o.endpoint, n)
	return err
}

func runIndexVerify(ctx context.Context, t *sqlep.Table, o indexOptions) error {
	st, err := t.VerifyIndex(ctx)
	if err != nil {
		return err
	}
	if o.json {
		err = writeJSON(o.out, map[string]any{"ok": st.OK(), "entries": st.Entries, "missing": st.Missing,
			"extra": st.Extra, "bad_chunks": st.BadChunks, "root_ok": st.RootOK, "caught_up": st.CaughtUp, "pending": st.Pending})
	} else if st.OK() {
		pending := ""
		if st.Pending > 0 {
			pending = fmt.Sprintf("; %s written during the check, in the log for the next catch-up, not compared", count(st.Pending, "row"))
		}
		_, err = fmt.Fprintf(o.out, "the index of %s matches the table: %s (%s applied first%s)\n", o.endpoint, count(st.Entries, "row"), count(st.CaughtUp, "logged write"), pending)
	} else {
		root := ""
		if !st.RootOK {
			root = ", and its stored root is not the sum of its entries"
		}
		_, err = fmt.Fprintf(o.out, "the index of %s differs from the table: %s missing or wrong, %d extra, %s%s; rebuild it with `reconcile index install`\n",
			o.endpoint, count(st.Missing, "row"), st.Extra, count(st.BadChunks, "bad chunk"), root)
	}
	if err == nil && !st.OK() {
		return &exitErr{code: exitDiffer}
	}
	return err
}

func runIndexUninstall(ctx context.Context, t *sqlep.Table, o indexOptions) error {
	was, err := t.IndexInstalled(ctx)
	if err != nil {
		return err
	}
	if err := t.UninstallIndex(ctx); err != nil { // also what a half-removed one left
		return err
	}
	if o.json {
		return writeJSON(o.out, map[string]any{"installed": false, "removed": was})
	}
	if !was {
		_, err = fmt.Fprintf(o.out, "no index was installed on %s; nothing to remove\n", o.endpoint)
		return err
	}
	_, err = fmt.Fprintf(o.out, "removed the index of %s\n", o.endpoint)
	return err
}
