package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reconcile-dev/reconcile/bench"
)

// reconcile bench measures every method on a tiny dataset in this process, prints JSON,
// saves it, plots it, and prints the table again from the saved report.
func TestBenchCommand(t *testing.T) {
	dir := t.TempDir()
	saved := filepath.Join(dir, "report.json")
	plots := filepath.Join(dir, "plots")
	code, out, errOut := runCLI(t, "", "bench", "--rows", "1500,3000", "--drift", "0.01,0.05", "--scenarios", "mixed,rollback",
		"--methods", "reconcile,manifest,chunked,hwm", "--dir", filepath.Join(dir, "cache"), "--isolate=false",
		"--chunk-rows", "100", "--save", saved, "--plot", plots, "--plot-format", "png", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("JSON: %v\n%s", err, out)
	}
	if len(rep.Results) != 2*2*2*4 || len(rep.Targets) == 0 {
		t.Fatalf("%d results, %d targets", len(rep.Results), len(rep.Targets))
	}
	for _, r := range rep.Results {
		if r.Method == bench.MethodReconcile && !r.Correct {
			t.Errorf("reconcile wrong: %+v", r)
		}
	}
	for _, name := range []string{"bytes-vs-differing", "rounds-vs-rows", "time-vs-rows", "reads-vs-rows", "rss-vs-rows"} {
		if fi, err := os.Stat(filepath.Join(plots, name+".png")); err != nil || fi.Size() == 0 {
			t.Errorf("plot %s: %v", name, err)
		}
	}
	if !strings.Contains(errOut, "plots written: ") || !strings.Contains(errOut, "rss-vs-rows.png") {
		t.Errorf("standard error does not name the plots: %q", errOut)
	}
	code, out, errOut = runCLI(t, "", "bench", "--from", saved)
	if code != 0 || !strings.Contains(out, "correct where hwm is not") || !strings.Contains(out, "manifest") {
		t.Fatalf("exit %d: %s\n%s", code, errOut, out)
	}
	if code, _, errOut = runCLI(t, "", "bench", "--rows", "x"); code != exitError || !strings.Contains(errOut, "--rows") {
		t.Fatalf("bad --rows: exit %d: %s", code, errOut)
	}
}
