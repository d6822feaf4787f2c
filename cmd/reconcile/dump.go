package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"

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
	if ep.remote != nil {
		return ep.remote.Dump(ctx, o.out)
	}
	if err := dumpRows(ctx, ep, o.out); err != nil {
		return fmt.Errorf("dump %s: %w", o.endpoint, err)
	}
	return nil
}

// dumpRows writes one JSON line per live row of ep, in key order (serve offers it to
// http(s) clients too).
func dumpRows(ctx context.Context, ep *endpoint, out io.Writer) error {
	if ep.scan == nil {
		return fmt.Errorf("%s endpoints cannot list their rows", ep.loc.scheme)
	}
	w := bufio.NewWriterSize(out, 1<<20)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	var werr error
	n := 0
	err := ep.scan(func(r reconcile.Row) bool {
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
	return err
}
