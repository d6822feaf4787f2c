package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/reconcile-dev/reconcile/adapters/badger"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// runCLI runs one command line as main would, with stdin as input, and returns the exit
// status and what it printed.
func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), append([]string{"reconcile"}, args...),
		stdio{in: strings.NewReader(stdin), out: &out, err: &errb})
	return code, out.String(), errb.String()
}

// mustCLI is runCLI that fails the test unless the exit status is want.
func mustCLI(t *testing.T, want int, stdin string, args ...string) string {
	t.Helper()
	code, out, errOut := runCLI(t, stdin, args...)
	if code != want {
		t.Fatalf("reconcile %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out, errOut)
	}
	return out
}

// tempFile writes content to a new file called name in a test directory and returns its
// path.
func tempFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func store(t *testing.T, name string) string {
	return "badger://" + filepath.ToSlash(filepath.Join(t.TempDir(), name))
}

// future is an expiry far enough ahead that no test run reaches it.
var future = time.Now().Add(24 * time.Hour).UnixNano()

func rowsJSONL(n int, version int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(`{"key": "k` + string(rune('a'+i%26)) + strings.Repeat("x", i/26) + `", "version": ` +
			itoa(version+i) + `, "value": "v` + itoa(i) + `"}` + "\n")
	}
	return b.String()
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestLoadMalformedWritesNothing(t *testing.T) {
	ep := store(t, "s")
	mustCLI(t, 0, rowsJSONL(5, 100), "load", ep)
	before := mustCLI(t, 0, "", "dump", ep)

	bad := `{"key": "new1", "version": 1, "value": "a"}
{"key": "ka", "deleted": true}

{"key": "new2", "version": "seven"}
{"key": "new3", "version": 3}
`
	code, _, errOut := runCLI(t, bad, "load", ep, "-")
	if code != exitError || !strings.Contains(errOut, "standard input line 4") || !strings.Contains(errOut, "nothing was written") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("error spans lines: %q", errOut)
	}
	if after := mustCLI(t, 0, "", "dump", ep); after != before {
		t.Fatalf("a failed load changed the store:\n%s\nwant\n%s", after, before)
	}

	// From a file, into a store that does not exist yet: not even created.
	file := filepath.Join(t.TempDir(), "rows.jsonl")
	os.WriteFile(file, []byte(`{"key": "a", "version": 1}`+"\n"+`{"key": "b", "version": 2, "colour": "red"}`+"\n"), 0o644)
	fresh := store(t, "fresh")
	code, _, errOut = runCLI(t, "", "load", fresh, file)
	if code != exitError || !strings.Contains(errOut, "rows.jsonl line 2") || !strings.Contains(errOut, `unknown field "colour"`) {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if _, err := os.Stat(strings.TrimPrefix(fresh, "badger://")); !os.IsNotExist(err) {
		t.Fatalf("a failed load created the store: %v", err)
	}
}

func TestParseRowLineErrors(t *testing.T) {
	for line, want := range map[string]string{
		`[1]`:            "not a JSON row object",
		`{"version": 1}`: "needs key or key_b64",
		`{"key": "a", "key_b64": "YQ==", "version": 1}`:                 "both key and key_b64",
		`{"key_b64": "!!", "version": 1}`:                               "key_b64",
		`{"key": "a", "version": 1, "value": "x", "value_b64": "eA=="}`: "both value and value_b64",
		`{"key": "a", "version": 1, "expires_at": -5}`:                  "expires_at",
		`{"key": "a", "deleted": true, "version": 3}`:                   "a delete line carries only",
		`{"key": "a", "version": 1} {"key": "b", "version": 2}`:         "more than one JSON value",
		`{"key": "a", "version": -1}`:                                   `field "version": got a JSON number -1, want a whole number from 0`,
		`{"key": 5}`:                                                    `field "key": got a JSON number, want a string`,
		`{"key": "a", "deleted": "yes"}`:                                `field "deleted": got a JSON string, want true or false`,
	} {
		if _, err := parseRowLine([]byte(line)); err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "Go struct") {
			t.Errorf("%s: error %v, want %q", line, err, want)
		}
	}
}

func TestLoadDumpRoundTrip(t *testing.T) {
	ep := store(t, "s")
	in := strings.Join([]string{
		`{"key": "user/2", "version": 7, "value": "two", "expires_at": ` + itoa64(future) + `}`,
		`{"key": "user/1", "version": 5, "value": "one"}`,
		`{"key_b64": "/wABAg==", "version": 9, "value_b64": "gICA"}`, // key ff 00 01 02, value 80 80 80
		`{"key": "gone", "version": 1, "value": "x"}`,
		`{"key": "gone", "deleted": true}`,
		`{"key": "user/1", "version": 6, "value": "uno <&>"}`, // a later line wins
		`{"key": "empty", "version": 0}`,
		`{"key": "héllo", "version": 3, "value": "wörld"}`,
	}, "\n")
	out := mustCLI(t, 0, in, "load", ep, "--json")
	var res loadResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || res != (loadResult{Upserted: 5, Deleted: 1}) {
		t.Fatalf("load printed %q (%v)", out, err)
	}
	dump := mustCLI(t, 0, "", "dump", ep)
	want := strings.Join([]string{
		`{"key":"empty","version":0,"value":""}`,
		`{"key":"héllo","version":3,"value":"wörld"}`,
		`{"key":"user/1","version":6,"value":"uno <&>"}`,
		`{"key":"user/2","version":7,"value":"two","expires_at":` + itoa64(future) + `}`,
		`{"key_b64":"/wABAg==","version":9,"value_b64":"gICA"}`,
	}, "\n") + "\n"
	if dump != want {
		t.Fatalf("dump:\n%s\nwant:\n%s", dump, want)
	}

	// The dump loads into a new store with the same root.
	copyEP := store(t, "copy")
	mustCLI(t, 0, dump, "load", copyEP)
	if a, b := mustCLI(t, 0, "", "root", ep), mustCLI(t, 0, "", "root", copyEP); a != b {
		t.Fatalf("roots differ after a dump/load round trip: %s vs %s", a, b)
	}
	if again := mustCLI(t, 0, "", "dump", copyEP); again != dump {
		t.Fatalf("second dump differs:\n%s", again)
	}
}

func itoa64(i int64) string { return strconv.FormatInt(i, 10) }

func TestRootJSON(t *testing.T) {
	ep := store(t, "s")
	mustCLI(t, 0, rowsJSONL(3, 1), "load", ep)
	out := mustCLI(t, 0, "", "root", ep, "--json")
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	fp, _ := m["fingerprint"].(string)
	if len(m) != 2 || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(fp) || m["count"] != float64(3) {
		t.Fatalf("root --json printed %s", out)
	}
	plain := mustCLI(t, 0, "", "root", ep)
	if plain != fp+" 3\n" {
		t.Fatalf("root printed %q", plain)
	}
}

func TestDiffExitCodes(t *testing.T) {
	a, b := store(t, "a"), store(t, "b")
	rows := rowsJSONL(30, 10)
	mustCLI(t, 0, rows, "load", a)
	mustCLI(t, 0, rows, "load", b)
	out := mustCLI(t, exitOK, "", "diff", a, b)
	if !strings.Contains(out, "changed") {
		t.Fatalf("diff printed no table:\n%s", out)
	}

	mustCLI(t, 0, `{"key": "ka", "version": 999, "value": "changed"}`+"\n"+`{"key": "extra", "version": 3}`, "load", b)
	out = mustCLI(t, exitDiffer, "", "diff", a, b, "--json")
	var rep map[string]any
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("diff --json: %v\n%s", err, out)
	}
	for _, k := range []string{"rounds", "bytes_sent", "bytes_received", "only_source", "only_target", "changed",
		"upserted", "deleted", "quarantined", "raced", "entries_read_source", "entries_read_target",
		"duration_ms", "root_source", "root_target"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("diff --json lacks %q", k)
		}
	}
	if rep["changed"] != float64(1) || rep["only_target"] != float64(1) || rep["only_source"] != float64(0) {
		t.Fatalf("diff found %v changed, %v only in target, %v only in source", rep["changed"], rep["only_target"], rep["only_source"])
	}

	// Errors: a missing store, the same store twice, a bad URL.
	for _, args := range [][]string{
		{"diff", a, store(t, "missing")},
		{"diff", a, a},
		{"diff", a, "badger://nope"},
		{"diff", a},
		{"diff", a, b, "--bogus"},
	} {
		code, out, errOut := runCLI(t, "", args...)
		if code != exitError || out != "" || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || errOut == "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
}

func TestSyncRefusedWritesNothing(t *testing.T) {
	src, dst := store(t, "src"), store(t, "dst")
	mustCLI(t, 0, rowsJSONL(1, 1), "load", src)
	mustCLI(t, 0, rowsJSONL(20, 1), "load", dst)
	before := mustCLI(t, 0, "", "dump", dst)

	code, out, errOut := runCLI(t, "", "sync", src, dst)
	if code != exitError || out != "" || !strings.Contains(errOut, "nothing was written") || !strings.Contains(errOut, "--force") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// A dry run the guard would refuse still shows what it found (exit 2: the sync
	// itself would be refused).
	code, out, errOut = runCLI(t, "", "sync", src, dst, "--max-delete", "0", "--dry-run")
	if code != exitError || !strings.Contains(out, "dry run") || !strings.Contains(out, "only_target") || !strings.Contains(errOut, "--max-delete 0") {
		t.Fatalf("--max-delete 0 --dry-run: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// With --json the refusal is JSON too: the report so far and the error.
	code, out, _ = runCLI(t, "", "sync", src, dst, "--json")
	var refused struct {
		OnlyTarget int    `json:"only_target"`
		Deleted    int    `json:"deleted"`
		Error      string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &refused); code != exitError || err != nil || refused.OnlyTarget != 19 || refused.Deleted != 0 || !strings.Contains(refused.Error, "nothing was written") {
		t.Fatalf("sync --json refused: exit %d, %v, %+v\n%s", code, err, refused, out)
	}
	if after := mustCLI(t, 0, "", "dump", dst); after != before {
		t.Fatal("a refused sync changed the target")
	}

	mustCLI(t, exitOK, "", "sync", src, dst, "--dry-run", "--max-delete", "19")
	if after := mustCLI(t, 0, "", "dump", dst); after != before {
		t.Fatal("a dry run changed the target")
	}
	out = mustCLI(t, exitOK, "", "sync", src, dst, "--force", "--mode", "mirror")
	if !strings.Contains(out, "deleted") {
		t.Fatalf("sync printed:\n%s", out)
	}
	mustCLI(t, exitOK, "", "diff", src, dst)
	if a, b := mustCLI(t, 0, "", "root", src), mustCLI(t, 0, "", "root", dst); a != b {
		t.Fatalf("roots differ after sync: %s vs %s", a, b)
	}
	if code, _, errOut := runCLI(t, "", "sync", src, dst, "--mode", "merge"); code != exitError || !strings.Contains(errOut, "mirror") {
		t.Fatalf("--mode merge: exit %d, %q", code, errOut)
	}
}

func TestLockedStore(t *testing.T) {
	ep := store(t, "s")
	mustCLI(t, 0, rowsJSONL(3, 1), "load", ep)
	s, err := badger.Open(strings.TrimPrefix(ep, "badger://"), badger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, args := range [][]string{{"root", ep}, {"load", ep}, {"dump", ep}} {
		code, out, errOut := runCLI(t, "", args...)
		if code != exitError || out != "" || !strings.Contains(errOut, "in use") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("%v on a locked store: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
}

// TestSyncCreatesTarget: sync creates a missing Badger target (or one in an empty
// directory) ordered as its source; a dry run compares with the empty store it would
// create, and creates nothing; a sync that fails leaves no store behind.
func TestSyncCreatesTarget(t *testing.T) {
	src, dst := store(t, "src"), store(t, "new")
	mustCLI(t, 0, rowsJSONL(40, 1), "load", src)
	var rep struct {
		OnlySource int `json:"only_source"`
	}
	code, out, errOut := runCLI(t, "", "sync", src, dst, "--dry-run", "--json")
	if err := json.Unmarshal([]byte(out), &rep); code != exitOK || err != nil || rep.OnlySource != 40 || !strings.Contains(errOut, "does not exist yet") {
		t.Fatalf("dry run into a missing store: exit %d, %s, %q", code, out, errOut)
	}
	if _, err := os.Stat(strings.TrimPrefix(dst, "badger://")); !os.IsNotExist(err) {
		t.Fatalf("a dry run created its target: %v", err)
	}
	mustCLI(t, exitOK, "", "sync", src, dst)
	if a, b := mustCLI(t, 0, "", "dump", src), mustCLI(t, 0, "", "dump", dst); a != b {
		t.Fatal("the new replica differs from the source")
	}

	// A key-ordered source makes a key-ordered replica, in an empty directory too.
	keyed, empty := store(t, "keyed"), store(t, "empty")
	mustCLI(t, 0, `{"key": "a", "value": "1"}`+"\n", "load", keyed+"?ordering=key")
	if err := os.Mkdir(strings.TrimPrefix(empty, "badger://"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, exitOK, "", "sync", keyed, empty)
	mustCLI(t, exitOK, "", "diff", keyed, empty)

	// A sync that fails removes the store it created (an unreachable server here).
	gone := store(t, "gone")
	if code, _, errOut := runCLI(t, "", "sync", "http://127.0.0.1:1", gone+"/a/b"); code != exitError || !strings.Contains(errOut, "removed again") {
		t.Fatalf("sync from nowhere: exit %d, %q", code, errOut)
	}
	if _, err := os.Stat(strings.TrimPrefix(gone, "badger://")); !os.IsNotExist(err) {
		t.Fatalf("a failed sync left its new store or the directories made for it: %v", err)
	}
}

// gen with drift flags writes what gen without them, followed by gen --drift-only on a
// copy, writes.
func TestGenDriftOnly(t *testing.T) {
	flags := []string{"--rows", "1500", "--seed", "3", "--now", "1700000000000000000"}
	drift := []string{"--drift-updates", "0.01", "--drift-deletes", "0.01", "--drift-inserts", "0.01", "--drift-rollback", "0.001", "--drift-swaps", "4"}
	whole, base := store(t, "whole"), store(t, "base")
	mustCLI(t, 0, "", append(append([]string{"gen", whole}, flags...), drift...)...)
	mustCLI(t, 0, "", append([]string{"gen", base}, flags...)...)
	code, _, errOut := runCLI(t, "", append([]string{"gen", base}, flags...)...)
	if code != exitError || !strings.Contains(errOut, "already holds rows") {
		t.Fatalf("gen into a full store: exit %d, %q", code, errOut)
	}
	out := mustCLI(t, 0, "", append(append([]string{"gen", base, "--drift-only", "--json"}, flags...), drift...)...)
	var res genResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Drift == nil || res.Drift.Swapped != 4 || res.Drift.Differing() == 0 {
		t.Fatalf("gen --drift-only printed %s (%v)", out, err)
	}
	if a, b := mustCLI(t, 0, "", "dump", whole), mustCLI(t, 0, "", "dump", base); a != b {
		t.Fatal("gen with drift differs from gen then gen --drift-only")
	}
}

// TestGenBulk: gen --bulk writes the same rows as gen (with and without drift), and
// refuses --drift-only.
func TestGenBulk(t *testing.T) {
	flags := []string{"--rows", "3000", "--seed", "4", "--now", "1700000000000000000"}
	drift := []string{"--drift-updates", "0.01", "--drift-deletes", "0.01", "--drift-inserts", "0.01", "--drift-rollback", "0.001", "--drift-swaps", "4"}
	for _, d := range [][]string{nil, drift} {
		replay, bulk := store(t, "replay"), store(t, "bulk")
		mustCLI(t, 0, "", append(append([]string{"gen", replay}, flags...), d...)...)
		out := mustCLI(t, 0, "", append(append([]string{"gen", bulk, "--bulk", "--json"}, flags...), d...)...)
		var res genResult
		if err := json.Unmarshal([]byte(out), &res); err != nil || res.History == nil || res.History.Deletes == 0 || (d != nil) != (res.Drift != nil) {
			t.Fatalf("gen --bulk printed %s (%v)", out, err)
		}
		if a, b := mustCLI(t, 0, "", "dump", replay), mustCLI(t, 0, "", "dump", bulk); a != b {
			t.Fatalf("gen --bulk (drift %v) wrote other rows than gen", d)
		}
		if a, b := mustCLI(t, 0, "", "root", replay), mustCLI(t, 0, "", "root", bulk); a != b {
			t.Fatalf("roots differ: %q, %q", a, b)
		}
		mustCLI(t, 0, "", "index", "verify", bulk)
	}
	code, _, errOut := runCLI(t, "", append(append([]string{"gen", store(t, "x"), "--bulk", "--drift-only"}, flags...), drift...)...)
	if code != exitError || !strings.Contains(errOut, "--drift-only") {
		t.Fatalf("gen --bulk --drift-only: exit %d, %q", code, errOut)
	}
}

func TestDemoSmall(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	for i, want := range []string{"the roots are equal", "removing the previous demo"} {
		out := mustCLI(t, exitOK, "", "demo", "--dir", dir, "--rows", "2000")
		if !strings.Contains(out, want) || !strings.Contains(out, "diff found exactly") || !strings.Contains(out, "the final 2000 rows") {
			t.Fatalf("run %d: demo printed:\n%s", i, out)
		}
	}
	if out := mustCLI(t, exitOK, "", "demo", "--dir", dir, "--rows", "2000", "--replay"); !strings.Contains(out, "the roots are equal") || !strings.Contains(out, "every step") {
		t.Fatalf("demo --replay printed:\n%s", out)
	}
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "precious"), []byte("x"), 0o644)
	code, _, errOut := runCLI(t, "", "demo", "--dir", other, "--rows", "10")
	if code != exitError || !strings.Contains(errOut, "not made by reconcile demo") {
		t.Fatalf("demo in a foreign dir: exit %d, %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(other, "precious")); err != nil {
		t.Fatal("demo removed a directory it did not make")
	}
}

// TestSyncPartialExit3: a row the target refuses (over its MaxRowBytes) is quarantined, the
// rest is written, and sync exits 3.
func TestSyncPartialExit3(t *testing.T) {
	src, dst := store(t, "src"), store(t, "dst")
	s, err := badger.Open(strings.TrimPrefix(src, "badger://"), badger.Options{Create: true, MaxRowBytes: badger.DefaultMaxRowBytes + 1024})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := s.Put([]byte("k"+itoa(i)), []byte("v"), uint64(i+1), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put([]byte("huge"), make([]byte, badger.DefaultMaxRowBytes+1), 100, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	out := mustCLI(t, exitPartial, "", "sync", src, dst, "--json")
	var rep reconcile.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Quarantined != 1 || rep.Upserted != 20 || len(rep.QuarantinedRows) != 1 || rep.QuarantinedRows[0].Key != "huge" {
		t.Fatalf("quarantined %d %+v, upserted %d", rep.Quarantined, rep.QuarantinedRows, rep.Upserted)
	}
}

// TestPurge: expired rows are invisible before and after a purge, which deletes them and
// says how many; the root does not move, and a second purge finds nothing.
func TestPurge(t *testing.T) {
	ep := store(t, "s")
	past := time.Now().Add(-time.Hour).UnixNano()
	rows := `{"key": "live", "version": 1, "value": "a"}` + "\n" +
		`{"key": "ttl", "version": 2, "value": "b", "expires_at": ` + itoa64(future) + `}` + "\n" +
		`{"key": "gone1", "version": 3, "value": "c", "expires_at": ` + itoa64(past) + `}` + "\n" +
		`{"key": "gone2", "version": 4, "value": "d", "expires_at": ` + itoa64(past) + `}` + "\n"
	mustCLI(t, 0, rows, "load", ep)
	before := mustCLI(t, 0, "", "root", ep)
	if !strings.HasSuffix(before, " 2\n") {
		t.Fatalf("root before purge: %q, want 2 live rows", before)
	}
	if out := mustCLI(t, 0, "", "purge", ep); out != "purged 2 expired rows\n" {
		t.Fatalf("purge printed %q", out)
	}
	if after := mustCLI(t, 0, "", "root", ep); after != before {
		t.Fatalf("root moved: %q -> %q", before, after)
	}
	var second map[string]int
	if out := mustCLI(t, 0, "", "purge", ep, "--json"); json.Unmarshal([]byte(out), &second) != nil || len(second) != 1 || second["purged"] != 0 {
		t.Fatalf("second purge printed %q", out)
	}
	if dump := mustCLI(t, 0, "", "dump", ep); strings.Count(dump, "\n") != 2 || strings.Contains(dump, "gone") {
		t.Fatalf("dump after purge:\n%s", dump)
	}
	if code, _, errOut := runCLI(t, "", "purge", store(t, "missing")); code != exitError || !strings.Contains(errOut, "no store there") {
		t.Fatalf("purge of a missing store: exit %d, %q", code, errOut)
	}
	table, _ := sqliteTable(t, "")
	if code, _, errOut := runCLI(t, "", "purge", table); code != exitError || !strings.Contains(errOut, "purge applies to badger:// stores; a SQL table") {
		t.Fatalf("purge of a SQL table: exit %d, %q", code, errOut)
	}
}

// TestBadgerIndexVerifyInstall: index verify passes a store, fails (exit 1) once an index
// record is deleted behind the store's back, and passes again after index install.
func TestBadgerIndexVerifyInstall(t *testing.T) {
	ep := store(t, "v")
	mustCLI(t, 0, rowsJSONL(500, 1), "load", ep)
	if out := mustCLI(t, 0, "", "index", "verify", ep); !strings.Contains(out, "matches its rows: 500 rows") {
		t.Fatalf("verify: %q", out)
	}
	db, err := bdg.Open(bdg.DefaultOptions(strings.TrimPrefix(ep, "badger://")).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(txn *bdg.Txn) error {
		it := txn.NewIterator(bdg.IteratorOptions{Prefix: []byte{'i', 0}})
		it.Rewind()
		k := it.Item().KeyCopy(nil)
		it.Close()
		return txn.Delete(k)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if out := mustCLI(t, 1, "", "index", "verify", ep); !strings.Contains(out, "rebuild it with `reconcile index install`") {
		t.Fatalf("verify of a damaged index: %q", out)
	}
	if out := mustCLI(t, 0, "", "index", "install", ep); !strings.Contains(out, "500 rows") {
		t.Fatalf("install: %q", out)
	}
	mustCLI(t, 0, "", "index", "verify", ep)
}

// TestReadAfterRebuildStopped: an index install interrupted before it began says nothing
// changed; a store whose rebuild stopped part way (its mark set, its index half gone, as an
// interrupt leaves it) is read by read-only commands, which finish the rebuild first, as
// after a crash.
func TestReadAfterRebuildStopped(t *testing.T) {
	ep := store(t, "r")
	mustCLI(t, 0, rowsJSONL(500, 1), "load", ep)
	root := mustCLI(t, 0, "", "root", ep)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errb bytes.Buffer
	code := run(ctx, []string{"reconcile", "index", "install", ep}, stdio{in: strings.NewReader(""), out: &out, err: &errb})
	if code != exitError || !strings.Contains(errb.String(), "interrupted before the rebuild began; nothing was changed") {
		t.Fatalf("install interrupted: exit %d, %q", code, errb.String())
	}
	db, err := bdg.Open(bdg.DefaultOptions(strings.TrimPrefix(ep, "badger://")).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(txn *bdg.Txn) error { return txn.Set([]byte("mrebuild"), nil) })
	if err == nil {
		err = db.DropPrefix([]byte{'i'})
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if got := mustCLI(t, 0, "", "root", ep); got != root {
		t.Fatalf("root after the stopped rebuild: %q, want %q", got, root)
	}
	mustCLI(t, 0, "", "index", "verify", ep)
}

// TestReadAfterWriterCrash: a process that writes through a Badger store and exits without
// closing it (this test binary re-run, ended by its own os.Exit) leaves Badger's
// write-ahead log to replay and index changes in the store's index log; a read-only Open
// refuses the store with badger.ErrNotClosedCleanly, and a read-only command recovers it
// first (opening it writable once) and reads an index equal to the rows.
func TestReadAfterWriterCrash(t *testing.T) {
	if path := os.Getenv("RECONCILE_TEST_CRASH_STORE"); path != "" {
		s, err := badger.Open(path, badger.Options{})
		if err != nil {
			panic(err)
		}
		for i := range 5 {
			if err := s.Put([]byte("late"+itoa(i)), []byte("v"), uint64(1000+i), 0); err != nil {
				panic(err)
			}
		}
		os.Exit(0) // no Close: the log is not folded
	}
	src, dst := store(t, "src"), store(t, "dst")
	mustCLI(t, 0, rowsJSONL(40, 1), "load", src)
	mustCLI(t, 0, rowsJSONL(40, 1), "load", dst)
	cmd := exec.Command(os.Args[0], "-test.run=^TestReadAfterWriterCrash$")
	cmd.Env = append(os.Environ(), "RECONCILE_TEST_CRASH_STORE="+strings.TrimPrefix(src, "badger://"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("crashing writer: %v\n%s", err, out)
	}
	if _, err := badger.Open(strings.TrimPrefix(src, "badger://"), badger.Options{ReadOnly: true}); !errors.Is(err, badger.ErrNotClosedCleanly) {
		t.Fatalf("read-only open after the crash: %v", err)
	}
	out := mustCLI(t, 1, "", "diff", src, dst, "--json")
	var rep struct {
		OnlySource int `json:"only_source"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.OnlySource != 5 {
		t.Fatalf("diff after the crash: %v, %s", err, out)
	}
	mustCLI(t, 0, "", "index", "verify", src)
}

// A version-ordered and a key-ordered store cannot be compared: the error says how each
// kind of endpoint gets its ordering.
func TestOrderingMismatch(t *testing.T) {
	src, dst := store(t, "src"), store(t, "keyed")
	mustCLI(t, 0, rowsJSONL(5, 1), "load", src)
	mustCLI(t, 0, rowsJSONL(5, 1), "load", dst+"?ordering=key")
	code, _, errOut := runCLI(t, "", "diff", src, dst)
	if code != exitError || !strings.Contains(errOut, "version order") || !strings.Contains(errOut, "?ordering=key") || !strings.Contains(errOut, "&version=") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

// An interrupted sync (SIGINT or SIGTERM cancel the context) says what it wrote and that
// no row is half-written, not just "context canceled"; an interrupted diff says it wrote
// nothing; load and purge stop too and say so.
func TestInterrupted(t *testing.T) {
	src, dst := store(t, "src"), store(t, "dst")
	mustCLI(t, 0, rowsJSONL(100, 1), "load", src)
	mustCLI(t, 0, rowsJSONL(10, 1), "load", dst)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		cmd  string
		want string
	}{{"sync", "interrupted after 0 rows upserted and 0 deleted; each batch is one transaction"}, {"diff", "interrupted; nothing was written"}} {
		var out, errb bytes.Buffer
		code := run(ctx, []string{"reconcile", tc.cmd, src, dst}, stdio{in: strings.NewReader(""), out: &out, err: &errb})
		if code != exitError || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%s: exit %d, stderr %q, want %q", tc.cmd, code, errb.String(), tc.want)
		}
	}
	mustCLI(t, exitDiffer, "", "diff", src, dst)

	before := mustCLI(t, 0, "", "dump", dst)
	var out, errb bytes.Buffer
	code := run(ctx, []string{"reconcile", "load", dst}, stdio{in: strings.NewReader(rowsJSONL(100, 500)), out: &out, err: &errb})
	if code != exitError || !strings.Contains(errb.String(), "interrupted after 0 rows committed, the rest not written; loading the same input again is safe") {
		t.Errorf("load: exit %d, stderr %q", code, errb.String())
	}
	if got := mustCLI(t, 0, "", "dump", dst); got != before {
		t.Errorf("an interrupted load changed the store:\n%s", got)
	}
	table, _ := sqliteTable(t, "")
	errb.Reset()
	code = run(ctx, []string{"reconcile", "load", table}, stdio{in: strings.NewReader(itemLines), out: &out, err: &errb})
	if code != exitError || !strings.Contains(errb.String(), "interrupted; nothing was written (a load into a SQL table is one transaction)") {
		t.Errorf("load into SQL: exit %d, stderr %q", code, errb.String())
	}
	if got := mustCLI(t, 0, "", "dump", table); got != "" {
		t.Errorf("an interrupted load changed the table:\n%s", got)
	}

	past := time.Now().Add(-time.Hour).UnixNano()
	mustCLI(t, 0, `{"key": "gone", "version": 900, "value": "x", "expires_at": `+itoa64(past)+`}`+"\n", "load", dst)
	out.Reset()
	errb.Reset()
	code = run(ctx, []string{"reconcile", "purge", dst}, stdio{in: strings.NewReader(""), out: &out, err: &errb})
	if code != exitError || !strings.Contains(errb.String(), "interrupted after 0 expired rows; each batch of up to 4,096 rows is one transaction") {
		t.Errorf("purge: exit %d, stderr %q", code, errb.String())
	}
	if out := mustCLI(t, 0, "", "purge", dst); out != "purged 1 expired row\n" {
		t.Errorf("purge after the interrupted one printed %q", out)
	}

	fresh := store(t, "gen")
	errb.Reset()
	code = run(ctx, []string{"reconcile", "gen", fresh, "--rows", "10000"}, stdio{in: strings.NewReader(""), out: &out, err: &errb})
	if code != exitError || !strings.Contains(errb.String(), "gen into "+fresh+": interrupted; ") || !strings.Contains(errb.String(), "is removed again") {
		t.Errorf("gen: exit %d, stderr %q", code, errb.String())
	}
	mustCLI(t, 0, "", "gen", fresh, "--rows", "10000", "--now", "1000000000")
	errb.Reset()
	code = run(ctx, []string{"reconcile", "gen", fresh, "--rows", "10000", "--now", "1000000000", "--drift-only", "--drift-updates", "0.9"}, stdio{in: strings.NewReader(""), out: &out, err: &errb})
	if code != exitError || !strings.Contains(errb.String(), "interrupted after 0 writes of the drift committed") {
		t.Errorf("gen --drift-only: exit %d, stderr %q", code, errb.String())
	}
}

// ?max_row= sets a Badger store's largest row: a larger one is refused with a message
// that names the parameter, and nothing of the load is written.
func TestBadgerMaxRow(t *testing.T) {
	dst := store(t, "dst")
	small := `{"key": "a", "version": 1, "value": "` + strings.Repeat("x", 500) + `"}` + "\n"
	big := `{"key": "b", "version": 2, "value": "` + strings.Repeat("y", 2000) + `"}` + "\n"
	mustCLI(t, 0, small, "load", dst+"?max_row=1KiB")
	code, _, errOut := runCLI(t, big, "load", dst+"?max_row=1KiB")
	if code != exitError || !strings.Contains(errOut, "row too large") || !strings.Contains(errOut, "?max_row=SIZE") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	// Into a new store, a failed load removes the store it created.
	fresh := store(t, "fresh")
	code, _, errOut = runCLI(t, small+big, "load", fresh+"?max_row=1KiB")
	if code != exitError || !strings.Contains(errOut, "removed again") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(strings.TrimPrefix(fresh, "badger://")); !os.IsNotExist(err) {
		t.Fatalf("a failed load left its new store: %v", err)
	}
	// In an empty directory too: the directory stays, empty.
	dir := strings.TrimPrefix(store(t, "dir"), "badger://")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut = runCLI(t, small+big, "load", "badger://"+dir+"?max_row=1KiB"); code != exitError || !strings.Contains(errOut, "removed again") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if left, err := os.ReadDir(dir); err != nil || len(left) != 0 {
		t.Fatalf("a failed load into an empty directory left %d files (%v)", len(left), err)
	}
	mustCLI(t, 0, big, "load", dst+"?max_row=4KiB")
	if n := strings.Count(mustCLI(t, 0, "", "dump", dst), "\n"); n != 2 {
		t.Fatalf("%d rows, want 2", n)
	}
}

// Flags no history or benchmark can take are refused before anything is created.
func TestGenBenchBadFlags(t *testing.T) {
	dst := store(t, "g")
	for _, args := range [][]string{
		{"gen", dst, "--rows", "-5"},
		{"gen", dst, "--rows", "10", "--ttl-fraction", "2"},
		{"gen", dst, "--rows", "10", "--drift-updates", "-0.1"},
		{"gen", dst, "--rows", "10", "--drift-updates", "0.6", "--drift-deletes", "0.6"},
	} {
		code, _, errOut := runCLI(t, "", args...)
		if code != exitError || !strings.Contains(errOut, "nothing was written") || strings.Contains(errOut, "committed") {
			t.Errorf("%s: exit %d, %q", strings.Join(args, " "), code, errOut)
		}
	}
	if _, err := os.Stat(strings.TrimPrefix(dst, "badger://")); !os.IsNotExist(err) {
		t.Fatalf("a refused gen left %s: %v", dst, err)
	}
	// A drift the history cannot hold, found only while writing: the new store goes again.
	code, _, errOut := runCLI(t, "", "gen", dst, "--rows", "100", "--drift-updates", "0.9", "--drift-rollback", "0.5")
	if code != exitError || !strings.Contains(errOut, "is removed again") {
		t.Errorf("gen with a drift the rows cannot hold: exit %d, %q", code, errOut)
	}
	if _, err := os.Stat(strings.TrimPrefix(dst, "badger://")); !os.IsNotExist(err) {
		t.Fatalf("a failed gen left %s: %v", dst, err)
	}
	if code, _, errOut := runCLI(t, "", "gen", dst, "--value-size", "0"); code != exitError || !strings.Contains(errOut, "--value-size 0") {
		t.Errorf("gen --value-size 0: exit %d, %q", code, errOut)
	}

	dir := t.TempDir()
	for _, c := range []struct{ args, want string }{
		{"--rows 0", "not a row count"},
		{"--rows 100 --delete-ratio -1", "bench: history: rows and ratios must not be negative"},
		{"--rows 100 --reps 0", "--reps 0"},
		{"--rows 100 --value-size 0", "--value-size 0"},
		{"--rows 100 --json --markdown", "give one"},
		{"--rows 100 --methods reconcile,nope", `bench: unknown method "nope"`},
		{"--rows 100 --scenarios nope", `bench: unknown scenario "nope"`},
	} {
		code, _, errOut := runCLI(t, "", append([]string{"bench", "--dir", dir, "--mysql", ""}, strings.Fields(c.args)...)...)
		if code != exitError || !strings.Contains(errOut, c.want) || strings.Contains(errOut, "bench: bench") {
			t.Errorf("bench %s: exit %d, %q; want %q", c.args, code, errOut, c.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused benches left %d fixtures in %s", len(entries), dir)
	}
}

// diff and sync list 20 differing keys unless --list asks for every one.
func TestListDifferences(t *testing.T) {
	src, dst := store(t, "src"), store(t, "dst")
	mustCLI(t, 0, rowsJSONL(30, 1), "load", src)
	mustCLI(t, 0, rowsJSONL(1, 1), "load", dst)
	if out := mustCLI(t, exitDiffer, "", "diff", src, dst); !strings.Contains(out, "differences (20 of 29):") || strings.Count(out, "only_source  ") != 20 {
		t.Fatalf("diff:\n%s", out)
	}
	if out := mustCLI(t, exitDiffer, "", "diff", src, dst, "--list"); !strings.Contains(out, "differences (29 of 29):") || strings.Count(out, "only_source  ") != 29 {
		t.Fatalf("diff --list:\n%s", out)
	}
	var rep reconcile.Report
	if err := json.Unmarshal([]byte(mustCLI(t, 0, "", "sync", src, dst, "--list", "--json")), &rep); err != nil || len(rep.Differences) != 29 || rep.Upserted != 29 {
		t.Fatalf("sync --list --json: %v, %d differences, %d upserted", err, len(rep.Differences), rep.Upserted)
	}
}

// A row without "version" goes into a key-ordered store (which keeps none) and is refused,
// with nothing written, by a version-ordered one.
func TestLoadWithoutVersion(t *testing.T) {
	line := `{"key": "a", "value": "x"}` + "\n"
	keyed := store(t, "keyed") + "?ordering=key"
	mustCLI(t, 0, line, "load", keyed)
	if got := mustCLI(t, 0, "", "dump", keyed); got != `{"key":"a","version":0,"value":"x"}`+"\n" {
		t.Fatalf("dump: %s", got)
	}
	versioned := store(t, "versioned")
	mustCLI(t, 0, rowsJSONL(3, 1), "load", versioned)
	code, _, errOut := runCLI(t, rowsJSONL(2, 10)+line, "load", versioned)
	if code != exitError || !strings.Contains(errOut, "line 3: needs version") || !strings.Contains(errOut, "nothing was written") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if got := mustCLI(t, 0, "", "dump", versioned); strings.Count(got, "\n") != 3 {
		t.Fatalf("a refused load wrote rows:\n%s", got)
	}
}

// TestTuningRanges: a tuning flag outside its range is refused, not quietly replaced by
// its default.
func TestTuningRanges(t *testing.T) {
	a, b := store(t, "a"), store(t, "b")
	mustCLI(t, 0, rowsJSONL(10, 1), "load", a)
	mustCLI(t, 0, rowsJSONL(10, 1), "load", b)
	for _, flag := range [][]string{{"--fanout", "1"}, {"--leaf-max", "0"}, {"--fingerprint-bytes", "17"}, {"--fingerprint-bytes", "0"}, {"--batch-rows", "-1"}} {
		for _, cmd := range []string{"diff", "sync"} {
			code, _, errOut := runCLI(t, "", append([]string{cmd, a, b}, flag...)...)
			if code != exitError || !strings.Contains(errOut, flag[0]+" "+flag[1]+": give a number from") {
				t.Errorf("%s %v: exit %d, %q", cmd, flag, code, errOut)
			}
		}
	}
	mustCLI(t, 0, "", "diff", a, b, "--fanout", "2", "--leaf-max", "1", "--fingerprint-bytes", "1", "--batch-rows", "1")
}

// TestLoadKeyOrderedDropsVersions: a key-ordered store keeps no versions, and load says
// how many lines' versions it left out rather than dropping them silently.
func TestLoadKeyOrderedDropsVersions(t *testing.T) {
	ep := store(t, "k") + "?ordering=key"
	out := mustCLI(t, 0, `{"key": "a", "version": 5, "value": "x"}`+"\n"+`{"key": "b", "value": "y"}`+"\n", "load", ep, "--json")
	var res loadResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || res != (loadResult{Upserted: 2, VersionsDropped: 1}) {
		t.Fatalf("load printed %q (%v)", out, err)
	}
	if out := mustCLI(t, 0, `{"key": "c", "version": 7, "value": "z"}`+"\n", "load", ep); !strings.Contains(out, "loaded 1 row into") || !strings.Contains(out, "the versions of 1 line were left out") {
		t.Fatalf("load printed %q", out)
	}
}

// TestOneRow: messages about one row say "1 row", not "1 rows" (load, purge, index
// verify and install).
func TestOneRow(t *testing.T) {
	ep := store(t, "one")
	past := time.Now().Add(-time.Hour).UnixNano()
	out := mustCLI(t, 0, `{"key": "a", "version": 1, "value": "x", "expires_at": `+itoa64(past)+`}`+"\n", "load", ep)
	if !strings.HasPrefix(out, "loaded 1 row into ") {
		t.Fatalf("load of one row: %q", out)
	}
	if out := mustCLI(t, 0, "", "purge", ep); out != "purged 1 expired row\n" {
		t.Fatalf("purge of one row: %q", out)
	}
	mustCLI(t, 0, `{"key": "b", "version": 2, "value": "y"}`+"\n", "load", ep)
	if out := mustCLI(t, 0, "", "index", "verify", ep); !strings.Contains(out, "matches its rows: 1 row (") {
		t.Fatalf("index verify of one row: %q", out)
	}
	if out := mustCLI(t, 0, "", "index", "install", ep); !strings.HasSuffix(out, ": 1 row\n") {
		t.Fatalf("index install of one row: %q", out)
	}
}

// TestLoadChecksSizesFirst: a row a Badger store refuses for its size stops the load
// before anything is written, with its line number, even into a store that exists (a
// Badger write commits as it goes: 57,522 rows of such a load were committed before).
func TestLoadChecksSizesFirst(t *testing.T) {
	dst := store(t, "dst")
	mustCLI(t, 0, rowsJSONL(1, 1), "load", dst)
	before := mustCLI(t, 0, "", "root", dst)
	var in strings.Builder
	for i := range 60_000 {
		fmt.Fprintf(&in, `{"key": "k%06d", "version": %d, "value": "a value of some length"}`+"\n", i, i+1)
	}
	fmt.Fprintf(&in, `{"key": "%s", "version": 1, "value": "v"}`+"\n", strings.Repeat("k", 70_000))
	code, _, errOut := runCLI(t, in.String(), "load", dst)
	if code != exitError || !strings.Contains(errOut, "line 60001") || !strings.Contains(errOut, "nothing was written") || !strings.Contains(errOut, "row too large") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if after := mustCLI(t, 0, "", "root", dst); after != before {
		t.Fatalf("a refused load wrote: root %s, before %s", after, before)
	}
}

// TestCommandMistakes: a mistyped index subcommand, a missing argument and one table named
// twice get messages that say what is wrong (urfave/cli took "instal" for a help topic,
// usage lines left out "index", and a SQL table named twice showed "()").
func TestCommandMistakes(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"index", "instal", "badger://./x"}, `index: unknown subcommand "instal": want install (or rebuild), verify or uninstall`},
		{[]string{"index", "verify"}, "usage: reconcile index verify ENDPOINT"},
		{[]string{"index", "rebuild"}, "usage: reconcile index install ENDPOINT"},
		{[]string{"diff", "badger://./x"}, "usage: reconcile diff SRC DST"},
		{[]string{"diff", "sqlite://./x.db?table=t", "sqlite://./y/../x.db?table=t"}, "same store (sqlite://./x.db?table=t and sqlite://./y/../x.db?table=t name one table)"},
		{[]string{"purge", "http://127.0.0.1:1"}, "purge runs where the store is: run it on the server's machine"},
		{[]string{"index", "verify", "http://127.0.0.1:1"}, "index verify runs where the store is"},
	} {
		code, _, errOut := runCLI(t, "", c.args...)
		if code != exitError || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, %q; want %q", c.args, code, errOut, c.want)
		}
	}
}
