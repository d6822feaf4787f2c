package main

import (
	"strings"
	"testing"
	"time"
)

// TestRootAsOf: a replica that lags its source has the source's cut at the replica's
// newest version, and not the source's root; a served store answers as the local one
// does; a timestamp version takes an RFC 3339 time; a key-ordered store and a malformed
// version are refused with a line that says why, exit 2.
func TestRootAsOf(t *testing.T) {
	src, lag := store(t, "src"), store(t, "lag")
	rows := `{"key": "a", "version": 10, "value": "1"}
{"key": "b", "version": 20, "value": "2"}
{"key": "c", "version": 30, "value": "3"}
`
	mustCLI(t, 0, rows, "load", src)
	mustCLI(t, 0, rows[:strings.LastIndex(strings.TrimSpace(rows), "\n")+1], "load", lag)
	if a, b := mustCLI(t, 0, "", "root", src), mustCLI(t, 0, "", "root", lag); a == b {
		t.Fatalf("a source and its lagging replica have one root: %s", a)
	}
	for _, v := range []string{"0", "10", "25"} {
		if a, b := mustCLI(t, 0, "", "root", "--as-of", v, src), mustCLI(t, 0, "", "root", "--as-of", v, lag); a != b {
			t.Fatalf("cut at %s: source %s, lagging replica %s", v, a, b)
		}
	}
	if a, b := mustCLI(t, 0, "", "root", "--as-of", "30", src), mustCLI(t, 0, "", "root", src); a != b || !strings.HasSuffix(a, " 3\n") {
		t.Fatalf("the cut at the newest version %q is not the root %q", a, b)
	}
	url, _ := startServe(t, src, "--listen", "127.0.0.1:0", "--read-only")
	if a, b := mustCLI(t, 0, "", "root", "--as-of", "20", "--json", url), mustCLI(t, 0, "", "root", "--as-of", "20", "--json", src); a != b || !strings.Contains(a, `"as_of": 20`) {
		t.Fatalf("a served store's cut %s, the store's %s", a, b)
	}

	keyed := store(t, "keyed") + "?ordering=key"
	mustCLI(t, 0, rows, "load", keyed)
	for _, bad := range [][]string{{"--as-of", "5", keyed}, {"--as-of", "yesterday", src}} {
		code, _, errOut := runCLI(t, "", append([]string{"root"}, bad...)...)
		if code != exitError || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "--as-of") && !strings.Contains(errOut, "version-ordered") {
			t.Fatalf("root %v: exit %d, %q", bad, code, errOut)
		}
	}

	items, db := sqliteTable(t, "")
	items = strings.Replace(items, "version=ver", "version=seen", 1)
	at := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	for i, name := range []string{"early", "late"} {
		if _, err := db.Exec(`INSERT INTO items VALUES (?, ?, NULL, ?, 1)`, i+1, name, at.Add(time.Duration(i)*time.Hour).Format("2006-01-02 15:04:05")); err != nil {
			t.Fatal(err)
		}
	}
	cut := mustCLI(t, 0, "", "root", "--as-of", "2026-12-05T08:30:00Z", items)
	if ns := mustCLI(t, 0, "", "root", "--as-of", "1796459400000000000", items); cut != ns || !strings.HasSuffix(cut, " 1\n") {
		t.Fatalf("a timestamp-versioned table's cut at 08:30: %q, at its unix nanoseconds %q", cut, ns)
	}
}
