package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/reconcile-dev/reconcile/reconcile"
)

func dumpCommand(std stdio) *cli.Command {
	return &cli.Command{
		Name:      "dump",
		Usage:     "write ENDPOINT's live rows in key order as JSON lines (the format load reads)",
		ArgsUsage: "ENDPOINT",
		Action: func(c *cli.Context) error {
			a, err := args(c, 1, 1, "ENDPOINT")
			if err != nil {
				return err
			}
			return runDump(c.Context, dumpOptions{stdio: std, endpoint: a[0]})
		},
	}
}

// dumpOptions are the inputs of runDump.
type dumpOptions struct {
	stdio
	endpoint string
}

// runDump writes one JSON line per live row, in key order.
func runDump(ctx context.Context, o dumpOptions) error {
	ep, err := openEndpoint(o.endpoint, readOnly)
	if err != nil {
		return err
	}
	defer ep.Close()
	if ep.scan == nil {
		return fmt.Errorf("dump: %s endpoints cannot list their rows", ep.loc.scheme)
	}
	w := bufio.NewWriterSize(o.out, 1<<20)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	var werr error
	n := 0
	err = ep.scan(func(r reconcile.Row) bool {
		n++
		if n%4096 == 0 {
			if werr = ctx.Err(); werr != nil {
				return false
			}
		}
		var l rowLine
		if l, werr = ep.rowLine(r); werr != nil {
			return false
		}
		werr = enc.Encode(l)
		return werr == nil
	})
	if err == nil {
		err = werr
	}
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return fmt.Errorf("dump %s: %w", o.endpoint, err)
	}
	return nil
}
