package main

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/reconcile-dev/reconcile/reconcile"
)

// FuzzRowLine: a load line either fails with an error or parses; a parsed row written
// back as dump writes it parses to the same row (what dump prints, load takes).
func FuzzRowLine(f *testing.F) {
	for _, s := range []string{
		`{"key": "user/1", "version": 123, "value": "alice", "expires_at": 0}`,
		`{"key_b64": "AAEC", "version": 124, "value_b64": "3q2+7w=="}`,
		`{"key": "user/2", "deleted": true}`,
		`{"columns": {"id": 1, "name": "apple"}, "version": 10}`,
		`{"key": "k", "version": 1, "value": "v"} {"key": "x"}`,
		`{"key": "k", "version": -1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		op, err := parseRowLine(line)
		if err != nil || op.delete || op.columns != nil {
			return
		}
		b, err := json.Marshal(formatRowLine(op.row))
		if err != nil {
			t.Fatalf("dump form of a parsed row: %v", err)
		}
		again, err := parseRowLine(b)
		if err != nil {
			t.Fatalf("%s (from %q) does not parse: %v", b, line, err)
		}
		if !bytes.Equal(again.row.Key, op.row.Key) || !bytes.Equal(again.row.Value, op.row.Value) ||
			again.row.Version != op.row.Version || again.row.ExpiresAt != op.row.ExpiresAt {
			t.Fatalf("%q parsed, dumped as %s, parsed again differs", line, b)
		}
	})
}

// FuzzScanRowLine: a line the fast scanner decodes, encoding/json decodes the same, with
// no error.
func FuzzScanRowLine(f *testing.F) {
	for _, s := range []string{
		`{"key": "user/1", "version": 123, "value": "alice", "expires_at": 0}`,
		`{"key_b64":"AAEC","version":124,"value_b64":"3q2+7w=="}`,
		` {"key": "user/2", "deleted": true} `,
		`{"key": "k", "version": 18446744073709551615, "expires_at": -9223372036854775808}`,
		`{"key": "k", "version": 18446744073709551616}`,
		`{"key": "k", "version": 01}`,
		`{"key": "k", "key": "j"}`,
		`{"key": "café", "value": "\u00e9"}`,
		`{"key": "k", "deleted": false, "expires_at": -0}`,
		`{}`,
		`{"Key": "k"}`,
		`{"columns": {"id": 1, "name": "apple", "price": "1.50", "seen": null, "tags": ["a", {"b": "}"}], "x": -1.5e3}, "version": 10}`,
		`{"columns":{},"version":1}`,
		`{"columns": {"id": 3}, "deleted": true}`,
		`{"columns": {"a": 1, "a": 2}}`,
		`{"columns": {"a\u0062": "\"}\\"}}`,
		`{"columns": {"a":true,"b":false} }`,
		`{"columns": {"n": 12`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		fast, cols, ok := scanRowLine(line)
		if !ok {
			return
		}
		slow, err := decodeRowLine(line)
		if err != nil || !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: scanned %+v; encoding/json %+v, %v", line, fast, slow, err)
		}
		var want map[string]json.RawMessage
		if slow.Columns != nil {
			if err := json.Unmarshal(slow.Columns, &want); err != nil {
				t.Fatalf("%q: columns %s scanned, but json.Unmarshal: %v", line, slow.Columns, err)
			}
		}
		if !reflect.DeepEqual(cols, want) {
			t.Fatalf("%q: columns scanned %q; json.Unmarshal %q", line, cols, want)
		}
	})
}

// TestScanRowLineTakesDumpLines: the lines dump writes for text rows and SQL rows take the
// fast path.
func TestScanRowLineTakesDumpLines(t *testing.T) {
	for _, r := range []reconcile.Row{{Key: []byte("user/1"), Value: []byte("alice é"), Version: 7}, {Key: []byte{0xff}, Value: []byte("x"), Version: 1, ExpiresAt: 5}} {
		b, err := json.Marshal(formatRowLine(r))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, ok := scanRowLine(b); !ok {
			t.Errorf("%s: not scanned", b)
		}
	}
	sqlLine := `{"version":10,"columns":{"id":1,"name":"apple","price":"1.5","seen":"2024-03-10T07:00:00Z","tags":["a"],"doc":{"k":"\u00e9"}}}`
	if _, cols, ok := scanRowLine([]byte(sqlLine)); !ok || len(cols) != 6 || string(cols["doc"]) != `{"k":"\u00e9"}` {
		t.Errorf("%s: scanned %v, %q", sqlLine, ok, cols)
	}
}

// TestReportClipsLongKeys: the table shows the start of a long key and its length, not a
// MiB of hex; --json keeps it whole.
func TestReportClipsLongKeys(t *testing.T) {
	long := "0x" + strings.Repeat("ab", 1<<19)
	r := &reconcile.Report{Mode: reconcile.Mirror, Differences: []reconcile.Difference{{Class: "changed", Key: long}, {Class: "only_source", Key: "short"}},
		QuarantinedRows: []reconcile.Quarantine{{Key: "é" + long, Error: "refused"}}, Changed: 1, OnlySource: 1}
	var table, js bytes.Buffer
	if err := printReport(&table, r, false); err != nil {
		t.Fatal(err)
	}
	if table.Len() > 4000 || !strings.Contains(table.String(), "(1048578 characters; --json shows it whole)") ||
		!strings.Contains(table.String(), "(1048579 characters;") || !strings.Contains(table.String(), "short") {
		t.Fatalf("table of %d bytes:\n%.2000s", table.Len(), table.String())
	}
	if err := printReport(&js, r, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(js.String(), long) {
		t.Fatal("--json clipped a key")
	}
}

// BenchmarkParseRowLine compares the fast scanner with encoding/json on a line as dump
// writes it: go test ./cmd/reconcile -run '^$' -bench ParseRowLine
func BenchmarkParseRowLine(b *testing.B) {
	line := []byte(`{"key":"user:00012345","version":12346,"value":"some value of a row number 12345 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","expires_at":0}`)
	for _, c := range []struct {
		name  string
		parse func([]byte) (rowLine, error)
	}{
		{"scan", func(l []byte) (rowLine, error) { r, _, _ := scanRowLine(l); return r, nil }},
		{"encoding-json", decodeRowLine},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(line)))
			for b.Loop() {
				if _, err := c.parse(line); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
