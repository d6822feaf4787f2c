package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/reconcile-dev/reconcile/reconcile"
)

// Exit statuses.
const (
	exitOK      = 0 // in sync, or synced
	exitDiffer  = 1 // diff found differences
	exitError   = 2 // any error, including a refused sync
	exitPartial = 3 // finished with quarantined or raced rows, or a target still unequal after writing
)

// exitErr carries an exit status out of a command. A nil err prints nothing (diff's 1).
type exitErr struct {
	code int
	err  error
}

func (e *exitErr) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitErr) Unwrap() error { return e.err }

// stdio is where a command reads and writes. progress is set when err is a terminal.
type stdio struct {
	in       io.Reader
	out, err io.Writer
	progress bool
}

// run runs the command line args and returns the exit status; errors go to std.err as one
// line.
func run(ctx context.Context, args []string, std stdio) int {
	app := newApp(std)
	err := app.RunContext(ctx, reorderArgs(app, args))
	if err == nil {
		return exitOK
	}
	code := exitError
	var ee *exitErr
	if errors.As(err, &ee) {
		code = ee.code
		if ee.err == nil {
			return code
		}
	}
	msg := err.Error()
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		// Commands that say what an interrupt left behind (sync, load) return their own
		// error, which wraps no context.Canceled; the others at least name the cause.
		msg += " (interrupted)"
	}
	fmt.Fprintf(std.err, "reconcile: %s\n", msg)
	return code
}

func newApp(std stdio) *cli.App {
	app := &cli.App{
		Name:  "reconcile",
		Usage: "find and repair the differences between two copies of a keyspace",
		Description: "Endpoints are URLs:\n" +
			"  badger:///abs/path, badger://./rel/path   an embedded Badger store\n" +
			"  postgres://user@host:5432/db?table=T      a SQL table (also mysql://, sqlite:///file.db;\n" +
			"                                            options &key= &version= &columns= &expires= &mode=)\n" +
			"  http(s)://host:port[?token_file=F]        an endpoint served by reconcile serve\n" +
			"Exit status: 0 in sync (or synced), 1 differences found by diff, 2 error\n" +
			"(a refused sync writes nothing), 3 finished with quarantined or raced rows\n" +
			"(or with a target still unequal after every row was written: a trigger, say).",
		Reader:          std.in,
		Writer:          std.out,
		ErrWriter:       std.err,
		HideHelpCommand: true,
		// Exit statuses are decided by run, never by cli calling os.Exit.
		ExitErrHandler: func(*cli.Context, error) {},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("unknown command %q: see reconcile --help", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		Commands: []*cli.Command{
			diffCommand(std), syncCommand(std), rootCommand(std), purgeCommand(std),
			loadCommand(std), dumpCommand(std), genCommand(std), demoCommand(std), indexCommand(std), serveCommand(std), benchCommand(std), runCommand(std),
		},
	}
	for _, c := range app.Commands {
		c.OnUsageError = func(c *cli.Context, err error, _ bool) error {
			return fmt.Errorf("%v (see reconcile %s --help)", err, c.Command.Name)
		}
	}
	return app
}

// args checks a command's positional arguments: at least min, at most max.
func args(c *cli.Context, least, most int, names string) ([]string, error) {
	if n := c.NArg(); n < least || n > most {
		return nil, fmt.Errorf("usage: reconcile %s %s", commandPath(c), names)
	}
	return c.Args().Slice(), nil
}

// commandPath names c's command with the commands above it ("index verify").
func commandPath(c *cli.Context) string {
	var names []string
	for _, x := range c.Lineage() {
		if x.Command != nil && x.Command.Name != "" && x.Command.Name != c.App.Name {
			names = append([]string{x.Command.Name}, names...)
		}
	}
	return strings.Join(names, " ")
}

// oneEndpoint opens a command's single ENDPOINT argument with access a; the caller closes
// it.
func oneEndpoint(c *cli.Context, a access) (*endpoint, error) {
	arg, err := args(c, 1, 1, "ENDPOINT")
	if err != nil {
		return nil, err
	}
	return openEndpoint(arg[0], a)
}

// reorderArgs moves a command's flags in front of its positional arguments: urfave/cli v2
// stops parsing flags at the first positional argument, so `diff SRC DST --json` would
// otherwise take --json as an argument. Positional arguments follow a "--" so that one
// starting with a dash is never read as a flag.
func reorderArgs(app *cli.App, in []string) []string {
	i := 1
	for i < len(in) && strings.HasPrefix(in[i], "-") {
		i++ // global flags (--help, --version) take no value
	}
	if i >= len(in) {
		return in
	}
	cmd := app.Command(in[i])
	if cmd == nil {
		return in
	}
	for sub := true; sub && i+1 < len(in); { // descend into subcommands (index install)
		sub = false
		for _, sc := range cmd.Subcommands {
			if sc.HasName(in[i+1]) {
				cmd, sub = sc, true
				i++
				break
			}
		}
	}
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			takesValue[n] = !isBool
		}
	}
	var flags, pos []string
	rest := in[i+1:]
	for j := 0; j < len(rest); j++ {
		a := rest[j]
		switch {
		case a == "--":
			pos = append(pos, rest[j+1:]...)
			j = len(rest)
		case a == "-" || !strings.HasPrefix(a, "-"):
			pos = append(pos, a)
		default:
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") && takesValue[name] && j+1 < len(rest) {
				flags = append(flags, rest[j+1])
				j++
			}
		}
	}
	out := append(append([]string(nil), in[:i+1]...), flags...)
	if len(pos) > 0 {
		out = append(append(out, "--"), pos...)
	}
	return out
}

// sessionProgress returns a reconcile.Options.Progress that keeps one line on s.err up to
// date, and a function that clears it; both do nothing when s.err is not a terminal.
func (s stdio) sessionProgress(label string) (func(reconcile.Progress), func()) {
	if !s.progress {
		return nil, func() {}
	}
	line, done := s.meter()
	return func(p reconcile.Progress) {
		line(fmt.Sprintf("%s: %s, round %d, %s, %s written, %d pending",
			label, p.Phase, p.Rounds, count(p.Found, "differing key"), count(p.Applied, "row"), p.Pending))
	}, done
}

// meter returns a function that shows a progress line on a terminal at most ten times a
// second, and one that clears it. Both do nothing when s.err is not a terminal.
func (s stdio) meter() (show func(string), done func()) {
	if !s.progress {
		return func(string) {}, func() {}
	}
	var mu sync.Mutex
	var last time.Time
	shown := false
	show = func(line string) {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(last) < 100*time.Millisecond {
			return
		}
		last, shown = time.Now(), true
		fmt.Fprintf(s.err, "\r\033[K%s", line)
	}
	done = func() {
		mu.Lock()
		defer mu.Unlock()
		if shown {
			fmt.Fprint(s.err, "\r\033[K")
			shown = false
		}
	}
	return show, done
}
