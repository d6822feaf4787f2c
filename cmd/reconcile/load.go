package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/reconcile-dev/reconcile/adapters/badger"
	remote "github.com/reconcile-dev/reconcile/adapters/http"
	"github.com/reconcile-dev/reconcile/bench"
	"github.com/reconcile-dev/reconcile/merkle"
)

func loadCommand(std stdio) *cli.Command {
	return &cli.Command{
		Name:  "load",
		Usage: "upsert and delete rows given as JSON lines (FILE, or standard input)",
		Description: "One JSON object a line:\n" +
			`  {"key": "...", "version": 123, "value": "...", "expires_at": 0}` + "\n" +
			"key_b64 / value_b64 (standard base64) carry arbitrary bytes; expires_at is unix ns\n" +
			`and may be omitted; {"key": "...", "deleted": true} deletes a key. Each row is stored` + "\n" +
			"with exactly the given version. A Badger store is created if it does not exist.\n" +
			"SQL tables (which must exist) take rows as a columns object instead of key and value:\n" +
			`  {"columns": {"id": 1, "name": "apple", "price": "1.50"}, "version": 123}` + "\n" +
			`  {"columns": {"id": 1}, "deleted": true}` + "\n" +
			"(the JSON form of each type is in docs/canonical.md); a SQL load is one transaction.\n" +
			"Every line is checked before anything is written: a malformed line stops the load\n" +
			"with its line number and writes nothing. Rows are then committed in batches; if the\n" +
			"store fails part way, the error says how many rows were committed (a Badger store\n" +
			"the load created is removed again).",
		ArgsUsage: "ENDPOINT [FILE|-]",
		Flags:     []cli.Flag{jsonFlag()},
		Action: func(c *cli.Context) error {
			a, err := args(c, 1, 2, "ENDPOINT [FILE|-]")
			if err != nil {
				return err
			}
			o := loadOptions{stdio: std, endpoint: a[0], json: c.Bool("json")}
			if len(a) == 2 {
				o.file = a[1]
			}
			return runLoad(c.Context, o)
		},
	}
}

// loadOptions are the inputs of runLoad.
type loadOptions struct {
	stdio
	endpoint string
	file     string // "" or "-": standard input
	json     bool
}

// loadResult is what load prints.
type loadResult struct {
	// Upserted and Deleted count the put and delete lines written (after a key's last line
	// wins): a put of what the store already holds, or a delete of an absent key, counts.
	Upserted int `json:"upserted"`
	Deleted  int `json:"deleted"`
	// VersionsDropped counts lines whose version a key-ordered store left out (it keeps
	// no versions).
	VersionsDropped int `json:"versions_dropped,omitempty"`
}

// runLoad parses every line of the input, and only then opens (creating if needed) the
// store and writes the rows. A key named on several lines ends as its last line says.
func runLoad(ctx context.Context, o loadOptions) error {
	loc, err := parseEndpoint(o.endpoint)
	if err != nil {
		return err
	}
	in, name := o.in, "standard input"
	if o.file != "" && o.file != "-" {
		f, err := os.Open(o.file)
		if err != nil {
			return fmt.Errorf("load: %w", err)
		}
		defer f.Close()
		in, name = f, o.file
	}
	if loc.server != "" {
		return loadRemote(ctx, o, loc, in, name)
	}
	ops, err := readRowLines(ctx, in, name)
	if err != nil {
		return err
	}

	// A Badger store this load creates is removed again if the load fails: every row in
	// it came from this input, and an empty or partial new store left behind would pass
	// for a copy of something.
	fresh := freshStore(loc)
	ep, err := openEndpoint(loc.raw, create)
	if err != nil {
		return err
	}
	closed := false
	defer func() {
		if !closed {
			ep.Close()
		}
	}()
	show, done := o.meter()
	res, err := writeOps(ctx, ep, ops, name, show)
	done()
	if err != nil {
		if fresh != nil {
			closed = true
			ep.Close()
			return fresh.remove(err)
		}
		return err
	}
	closed = true
	if err := ep.Close(); err != nil {
		return fmt.Errorf("load into %s: %w", loc, err)
	}
	return printLoad(o, loc.String(), res)
}

func printLoad(o loadOptions, where string, res loadResult) error {
	if o.json {
		return writeJSON(o.out, res)
	}
	note := ""
	if res.VersionsDropped > 0 {
		note = fmt.Sprintf(" (the store is in key order, which keeps no versions: the versions of %s were left out)", count(res.VersionsDropped, "line"))
	}
	_, err := fmt.Fprintf(o.out, "loaded %s into %s: %d upserted, %d deleted%s\n", count(res.Upserted+res.Deleted, "row"), where, res.Upserted, res.Deleted, note)
	return err
}

// maxRemoteLoad bounds what load sends to a server in one request (the server's
// --max-body, 64 MiB by default, may refuse less).
const maxRemoteLoad = 1 << 30

// loadRemote sends the input, as it is, to a server's POST /v1/load: the server checks
// every line and writes them as `reconcile load` on its machine would.
func loadRemote(ctx context.Context, o loadOptions, loc location, in io.Reader, name string) error {
	body, err := io.ReadAll(io.LimitReader(in, maxRemoteLoad+1))
	if err != nil {
		return fmt.Errorf("load: read %s: %w; nothing was written", name, err)
	}
	if len(body) > maxRemoteLoad {
		return fmt.Errorf("load: %s is over %d bytes, more than one request to a server takes; split it, or load it on the server's machine; nothing was written", name, maxRemoteLoad)
	}
	ep, err := openEndpoint(loc.raw, create)
	if err != nil {
		return err
	}
	defer ep.Close()
	out, err := ep.remote.Load(ctx, body)
	if err != nil {
		return err
	}
	var res loadResult
	if err := json.Unmarshal(out, &res); err != nil {
		return fmt.Errorf("load: the server's answer is not a load result: %v", err)
	}
	return printLoad(o, loc.server, res)
}

// serveLoad is the server's POST /v1/load: the request body is the input of load.
func serveLoad(ep *endpoint) func(ctx context.Context, body []byte) ([]byte, error) {
	return func(ctx context.Context, body []byte) ([]byte, error) {
		ops, err := readRowLines(ctx, bytes.NewReader(body), "input")
		if err != nil {
			if ctx.Err() != nil {
				return nil, err // the server gave up, not a bad line
			}
			return nil, inputError{err}
		}
		res, err := writeOps(ctx, ep, ops, "input", func(string) {})
		if err != nil {
			return nil, err
		}
		return json.Marshal(res)
	}
}

// inputError is an error in load's input: a server answers it 400 (remote.ErrBadInput).
type inputError struct{ error }

func (e inputError) Unwrap() []error { return []error{e.error, remote.ErrBadInput} }

// writeOps writes parsed lines into ep. Errors in the lines themselves (a columns object
// that does not fit the table) wrap remote.ErrBadInput and write nothing.
func writeOps(ctx context.Context, ep *endpoint, ops []rowOp, name string, show func(string)) (loadResult, error) {
	var res loadResult
	var err error
	ops, res.VersionsDropped, err = resolveRows(ep, ops, name)
	if err != nil {
		return res, inputError{err}
	}
	if ep.write == nil {
		return res, fmt.Errorf("load: %s endpoints take no raw writes", ep.loc.scheme)
	}
	err = ep.write(func(s bench.Sink) error {
		for i, op := range ops {
			if i%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
				show(fmt.Sprintf("load: %d of %s", i, count(len(ops), "row")))
			}
			if op.delete {
				if err := s.Delete(op.row.Key); err != nil {
					return err
				}
				res.Deleted++
				continue
			}
			if err := s.Put(op.row.Key, op.row.Value, op.row.Version, op.row.ExpiresAt); err != nil {
				return err
			}
			res.Upserted++
		}
		return nil
	})
	var werr *badger.WriteError
	switch {
	case err == nil:
		return res, nil
	case ctx.Err() == nil || !errors.Is(err, ctx.Err()):
		return res, fmt.Errorf("load into %s: %w", ep.loc, err)
	case ep.table != nil:
		return res, fmt.Errorf("load into %s: interrupted; nothing was written (a load into a SQL table is one transaction)", ep.loc)
	case errors.As(err, &werr):
		return res, fmt.Errorf("load into %s: interrupted after %s committed, the rest not written; loading the same input again is safe (each line is an upsert or a delete)", ep.loc, count(werr.Committed, "row"))
	}
	return res, fmt.Errorf("load into %s: interrupted (loading the same input again is safe: each line is an upsert or a delete)", ep.loc)
}

// resolveRows builds the key and value of lines given as SQL columns, and keeps, for a key
// on several lines, only its last operation, which leaves the store as applying every line
// in order would. Nothing is written yet, so an error here leaves the store untouched. It
// counts the puts whose version a key-ordered store leaves out.
func resolveRows(ep *endpoint, ops []rowOp, name string) (_ []rowOp, versionsDropped int, _ error) {
	out := ops[:0]
	last := map[string]int{}
	versioned := true
	if o, ok := ep.Endpoint.(ordered); ok {
		versioned = o.Ordering() == merkle.VersionOrder
	}
	for _, op := range ops {
		if op.noVersion && versioned {
			return nil, 0, fmt.Errorf("load: %s line %d: needs version (this store is in version order; only a key-ordered one takes rows without); nothing was written", name, op.line)
		}
		if op.columns != nil {
			if ep.table == nil {
				return nil, 0, fmt.Errorf("load: %s line %d: columns objects are for SQL tables; a %s store takes key and value; nothing was written", name, op.line, ep.loc.scheme)
			}
			k, v, err := ep.table.ColumnsRow(op.columns, op.delete)
			if err != nil {
				return nil, 0, fmt.Errorf("load: %s line %d: %v; nothing was written", name, op.line, err)
			}
			op.row.Key, op.row.Value = k, v
		}
		if ep.store != nil && !op.delete {
			// A Badger Write commits as it goes: a row it would refuse is found here,
			// before anything is written.
			if err := ep.store.CheckRow(op.row.Key, op.row.Value); err != nil {
				return nil, 0, fmt.Errorf("load: %s line %d: %v; nothing was written", name, op.line, err)
			}
		}
		if !versioned && !op.delete && op.row.Version != 0 {
			versionsDropped++ // a key-ordered store keeps no versions
		}
		if i, ok := last[string(op.row.Key)]; ok {
			out[i] = op
			continue
		}
		last[string(op.row.Key)] = len(out)
		out = append(out, op)
	}
	return out, versionsDropped, nil
}

// readRowLines parses every line of r. Blank lines are skipped.
func readRowLines(ctx context.Context, r io.Reader, name string) ([]rowOp, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	var ops []rowOp
	n := 0
	for sc.Scan() {
		n++
		if n%65536 == 0 && ctx.Err() != nil {
			return nil, fmt.Errorf("load: interrupted while reading %s, at line %d; nothing was written", name, n)
		}
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		op, err := parseRowLine(line)
		if err != nil {
			return nil, fmt.Errorf("load: %s line %d: %v; nothing was written", name, n, err)
		}
		op.line = n
		ops = append(ops, op)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("load: %s line %d: longer than %d MiB; nothing was written", name, n+1, maxLine>>20)
		}
		return nil, fmt.Errorf("load: read %s: %w; nothing was written", name, err)
	}
	return ops, nil
}
