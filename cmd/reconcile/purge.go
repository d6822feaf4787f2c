package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"
)

func purgeCommand(std stdio) *cli.Command {
	return &cli.Command{
		Name:  "purge",
		Usage: "delete the rows of a Badger ENDPOINT whose expiry has passed",
		Description: "Expired rows are invisible to every command, but a Badger store keeps them (and their\n" +
			"index entries) until they are purged, and each session's snapshot takes every expired,\n" +
			"unpurged row's entry off its digests when it opens: a store holding many pays for them\n" +
			"at every session (a scan of the expiry index; for rows written before the store's\n" +
			"format 2, a read of the row too).\n" +
			"Applications embedding the store call Store.PurgeExpired; purge does it from the shell.\n" +
			"The roots of the store do not change: expired rows are not counted in them.",
		ArgsUsage: "ENDPOINT",
		Flags:     []cli.Flag{jsonFlag()},
		Action: func(c *cli.Context) error {
			ep, err := oneEndpoint(c, readWrite)
			if err != nil {
				return err
			}
			defer ep.Close()
			switch {
			case ep.purge == nil && ep.loc.server != "":
				return fmt.Errorf("purge runs where the store is: run it on the server's machine against the Badger store `reconcile serve` serves")
			case ep.purge == nil:
				return fmt.Errorf("purge applies to badger:// stores; a SQL table's expired rows are its own rows (sessions leave them out): delete them with SQL")
			}
			n, err := ep.purge(c.Context, time.Now().UnixNano())
			if err != nil && c.Context.Err() != nil && errors.Is(err, c.Context.Err()) {
				return fmt.Errorf("purge %s: interrupted after %s; each batch of up to 4,096 rows is one transaction, so the store is whole: purge again to finish", ep.loc, count(n, "expired row"))
			}
			if err != nil {
				return fmt.Errorf("purge %s: %w (%s deleted before the error)", ep.loc, err, count(n, "expired row"))
			}
			if c.Bool("json") {
				return writeJSON(std.out, map[string]int{"purged": n})
			}
			_, err = fmt.Fprintf(std.out, "purged %s\n", count(n, "expired row"))
			return err
		},
	}
}
