package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/reconcile-dev/reconcile/reconcile"
)

func rootCommand(std stdio) *cli.Command {
	return &cli.Command{
		Name:      "root",
		Usage:     "print the root fingerprint and row count of ENDPOINT's live rows",
		ArgsUsage: "ENDPOINT",
		Description: "With --as-of VERSION, of the cut at that version: the live rows whose version is at\n" +
			"most VERSION (an integer, or for a SQL table whose version column is a timestamp an\n" +
			"RFC 3339 time). Two copies with equal cuts hold the same rows up to it, whatever\n" +
			"either holds above: a lagging replica can be checked against its source. Needs a\n" +
			"version-ordered endpoint.",
		Flags: []cli.Flag{jsonFlag(),
			&cli.StringFlag{Name: "as-of", Usage: "fingerprint the cut at this version (an integer, or an RFC 3339 time for timestamp versions)"}},
		Action: func(c *cli.Context) error {
			a, err := args(c, 1, 1, "ENDPOINT")
			if err != nil {
				return err
			}
			o := rootOptions{stdio: std, endpoint: a[0], json: c.Bool("json")}
			if c.IsSet("as-of") {
				v, err := parseAsOf(c.String("as-of"))
				if err != nil {
					return err
				}
				o.asOf = &v
			}
			return runRoot(c.Context, o)
		},
	}
}

// parseAsOf reads --as-of: an unsigned integer version, or an RFC 3339 time, which is the
// version unix nanoseconds that a timestamp version column stands for.
func parseAsOf(s string) (uint64, error) {
	if v, err := strconv.ParseUint(s, 10, 64); err == nil {
		return v, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("--as-of %q: want a version (an unsigned integer) or an RFC 3339 time such as 2026-12-05T08:00:00Z", s)
	}
	if t.Before(time.Unix(0, 0)) || t.After(time.Unix(0, math.MaxInt64)) {
		return 0, fmt.Errorf("--as-of %q: a time version is unix nanoseconds, from 1970 to 2262", s)
	}
	return uint64(t.UnixNano()), nil
}

// rootOptions are the inputs of runRoot.
type rootOptions struct {
	stdio
	endpoint string
	json     bool
	now      int64   // unix ns; 0 means the current time
	asOf     *uint64 // the cut's version; nil: every row
}

// rootJSON is root's --json output.
type rootJSON struct {
	Fingerprint string  `json:"fingerprint"`
	Count       uint64  `json:"count"`
	AsOf        *uint64 `json:"as_of,omitempty"`
}

// runRoot prints the full 16-byte fingerprint of the endpoint's live rows (of the cut at
// asOf, if given) and their count: two endpoints with equal roots hold the same live rows.
func runRoot(ctx context.Context, o rootOptions) error {
	ep, err := openEndpoint(o.endpoint, readOnly)
	if err != nil {
		return err
	}
	defer ep.Close()
	r, err := endpointRootAsOf(ctx, ep, o.now, o.asOf)
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
	return endpointRootAsOf(ctx, ep, now, nil)
}

func endpointRootAsOf(ctx context.Context, ep *endpoint, now int64, asOf *uint64) (rootJSON, error) {
	var info reconcile.Info
	var err error
	switch {
	case ep.remote != nil && asOf != nil:
		info, err = ep.remote.RootAsOf(ctx, now, *asOf)
	case ep.remote != nil:
		info, err = ep.remote.Root(ctx, now)
	case asOf != nil:
		info, err = reconcile.RootAsOf(ctx, ep, now, *asOf)
	default:
		info, err = reconcile.Root(ctx, ep, now)
	}
	if errors.Is(err, reconcile.ErrNoVersionCut) {
		return rootJSON{}, fmt.Errorf("root --as-of of %s: %w (a SQL table is when its URL names &version=COLUMN; a Badger store when it was created without ?ordering=key)", ep.loc, err)
	}
	if err != nil && ep.remote != nil {
		return rootJSON{}, err // "root: " and the server's URL already, as dump's and load's
	}
	if err != nil {
		return rootJSON{}, fmt.Errorf("root of %s: %w", ep.loc, err)
	}
	return rootJSON{Fingerprint: reconcile.FormatFingerprint(info.Root.Fingerprint()), Count: info.Root.Count, AsOf: asOf}, nil
}
