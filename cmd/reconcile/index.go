package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	sqlep "github.com/reconcile-dev/reconcile/adapters/sql"
)

func indexCommand(std stdio) *cli.Command {
	sub := func(name, usage string, run func(ctx context.Context, t *sqlep.Table, o indexOptions) error) *cli.Command {
		return &cli.Command{
			Name:      name,
			Usage:     usage,
			ArgsUsage: "ENDPOINT",
			Flags:     []cli.Flag{jsonFlag()},
			Action: func(c *cli.Context) error {
				ep, err := oneEndpoint(c, readWrite)
				if err != nil {
					return err
				}
				defer ep.Close()
				if ep.table == nil {
					return fmt.Errorf("index %s: %s endpoints keep their index themselves; only SQL tables take an installed one", name, ep.loc.scheme)
				}
				return run(c.Context, ep.table, indexOptions{stdio: std, json: c.Bool("json"), endpoint: redact(ep.loc.raw)})
			},
		}
	}
	return &cli.Command{
		Name:  "index",
		Usage: "install, verify or remove the maintained index of a SQL table",
		Description: "install creates, in the table's own database, the index tables and the triggers that\n" +
			"keep them current (rebuilding them if present); sessions then catch up on what changed\n" +
			"and answer from the index instead of reading the whole table. verify rebuilds the index\n" +
			"in memory from one read of the table and compares (exit 1 when it differs). uninstall\n" +
			"removes everything install created. See docs/sql.md.",
		Subcommands: []*cli.Command{
			sub("install", "create (or rebuild) the maintained index", runIndexInstall),
			sub("verify", "compare the index with a fresh read of the table", runIndexVerify),
			sub("uninstall", "remove the index's tables and triggers", runIndexUninstall),
		},
	}
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
			"extra": st.Extra, "bad_chunks": st.BadChunks, "root_ok": st.RootOK, "caught_up": st.CaughtUp})
	} else if st.OK() {
		_, err = fmt.Fprintf(o.out, "the index of %s matches the table: %d rows (%d logged writes applied first)\n", o.endpoint, st.Entries, st.CaughtUp)
	} else {
		_, err = fmt.Fprintf(o.out, "the index of %s differs from the table: %d rows missing or wrong, %d extra, %d bad chunks, root ok %v; rebuild it with `reconcile index install`\n",
			o.endpoint, st.Missing, st.Extra, st.BadChunks, st.RootOK)
	}
	if err == nil && !st.OK() {
		return &exitErr{code: exitDiffer}
	}
	return err
}

func runIndexUninstall(ctx context.Context, t *sqlep.Table, o indexOptions) error {
	if err := t.UninstallIndex(ctx); err != nil {
		return err
	}
	if o.json {
		return writeJSON(o.out, map[string]any{"installed": false})
	}
	_, err := fmt.Fprintf(o.out, "removed the index of %s\n", o.endpoint)
	return err
}
