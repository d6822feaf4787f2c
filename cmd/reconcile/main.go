// Command reconcile finds and repairs the differences between two copies of a keyspace by
// comparing their version-range Merkle indexes. Run `reconcile --help` for the commands;
// exit status 0 means in sync (or synced), 1 differences found by diff, 2 an error
// (nothing was written by a refused sync), 3 finished with quarantined or raced rows, or
// with a target that still differs from the source after every row was written.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// main stops every command the same way on SIGINT, SIGTERM and SIGHUP (a closed terminal):
// the context ends, the transaction under way (an apply batch, a load's or purge's
// batch) is rolled back or finishes whole, and the command says what it left and exits 2.
func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	code := run(ctx, os.Args, stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr, progress: isTerminal(os.Stderr)})
	stop()
	os.Exit(code)
}

// isTerminal reports whether f is a character device (a terminal), where progress lines
// are welcome; on a pipe or file they would only be noise.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
