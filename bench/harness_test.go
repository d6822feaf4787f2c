package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func smallConfig(t *testing.T) Config {
	return Config{
		Dir:       t.TempDir(),
		Rows:      []int{4000},
		Drifts:    []float64{0.01},
		Scenarios: ScenarioNames,
		Methods:   []string{MethodReconcile, MethodManifest, MethodChunked, MethodHighWater},
		Base:      History{DeleteRatio: 1, UpdateRatio: 0.5, TTLFraction: 0.02, ValueSize: 32, Seed: 1},
		ChunkRows: 100,
		Warm:      true,
	}
}

// Every method runs on every scenario; this tool and the manifest are always correct;
// the chunked scan misses count-preserving swaps; the high-water-mark sync loses rows
// after a rollback.
func TestRunSmall(t *testing.T) {
	cfg := smallConfig(t)
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(ScenarioNames) * len(cfg.Methods); len(rep.Results) != want {
		t.Fatalf("%d results, want %d", len(rep.Results), want)
	}
	get := func(sc, m string) Result {
		for _, r := range rep.Results {
			if r.Scenario == sc && r.Method == m {
				return r
			}
		}
		t.Fatalf("no result for %s %s", sc, m)
		return Result{}
	}
	for _, sc := range ScenarioNames {
		for _, m := range []string{MethodReconcile, MethodManifest} {
			r := get(sc, m)
			if !r.Correct || r.Found != r.Differing || r.Differing == 0 {
				t.Errorf("%s %s: %+v", sc, m, r)
			}
			if r.Bytes == 0 || r.Rounds == 0 || r.Reads == 0 || r.WallMS <= 0 {
				t.Errorf("%s %s: costs not counted: %+v", sc, m, r)
			}
		}
	}
	if r := get("swaps", MethodChunked); r.Correct || r.Missed == 0 {
		t.Errorf("chunked scan found every swap: %+v", r)
	}
	if r := get("rollback", MethodHighWater); r.Correct || r.Lost == 0 {
		t.Errorf("high-water-mark sync lost nothing after a rollback: %+v", r)
	}
	if r := get("mixed", MethodReconcile); r.Reads >= get("mixed", MethodManifest).Reads {
		t.Errorf("reconcile read %d, the manifest %d", r.Reads, get("mixed", MethodManifest).Reads)
	}
	var buf bytes.Buffer
	if err := rep.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + buf.String())
	buf.Reset()
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	back, err := ReadReport(strings.NewReader(buf.String()))
	if err != nil || len(back.Results) != len(rep.Results) {
		t.Fatalf("JSON round trip: %v", err)
	}
}
