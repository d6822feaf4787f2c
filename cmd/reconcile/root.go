package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/reconcile-dev/reconcile/reconcile"
)

func rootCommand(std stdio) *cli.Command {
	return &cli.Command{
		Name:      "root",
		Usage:     "print the root fingerprint and row count of ENDPOINT's live rows",
		ArgsUsage: "ENDPOINT",
		Flags:     []cli.Flag{jsonFlag()},
		Action: func(c *cli.Context) error {
			a, err := args(c, 1, 1, "ENDPOINT")
			if err != nil {
				return err
			}
			return runRoot(c.Context, rootOptions{stdio: std, endpoint: a[0], json: c.Bool("json")})
		},
	}
}

// rootOptions are the inputs of runRoot.
type rootOptions struct {
	stdio
	endpoint string
	json     bool
	now      int64 // unix ns; 0 means the current time
}

// rootJSON is root's --json output.
type rootJSON struct {
	Fingerprint string `json:"fingerprint"`
	Count       uint64 `json:"count"`
}

// runRoot prints the full 16-byte fingerprint of the endpoint's live rows and their count:
// two endpoints with equal roots hold the same live rows.
func runRoot(ctx context.Context, o rootOptions) error {
	ep, err := openEndpoint(o.endpoint, readOnly)
	if err != nil {
		return err
	}
	defer ep.Close()
	r, err := endpointRoot(ctx, ep, o.now)
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(o.out, r)
	}
	_, err = fmt.Fprintf(o.out, "%s %d\n", r.Fingerprint, r.Count)
	return err
}

func endpointRoot(ctx context.Context, ep *endpoint, now int64) (rootJSON, error) {
	var info reconcile.Info
	var err error
	if ep.remote != nil {
		info, err = ep.remote.Root(ctx, now)
	} else {
		info, err = reconcile.Root(ctx, ep, now)
	}
	if err != nil {
		return rootJSON{}, fmt.Errorf("root of %s: %w", ep.loc, err)
	}
	return rootJSON{Fingerprint: reconcile.FormatFingerprint(info.Root.Fingerprint()), Count: info.Root.Count}, nil
}
