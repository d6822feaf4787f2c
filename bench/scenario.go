package bench

import (
	"fmt"
	"strings"
)

// Scenario is one dataset of the benchmark: a history, the drift that makes the other
// copy, and which copy is the source.
type Scenario struct {
	Name    string  `json:"name"`
	History History `json:"history"`
	Drift   Drift   `json:"drift"`
	// Reverse makes the drifted copy the source and the history the target: a source
	// restored from a backup (rollback) syncing to a replica that kept the newer rows.
	Reverse bool `json:"reverse,omitempty"`
	// KeepExpired leaves expired rows in both stores (they are purged otherwise, as a live
	// store purges them): every snapshot reads and leaves them out.
	KeepExpired bool `json:"keep_expired,omitempty"`
}

// ScenarioNames lists the scenarios NewScenario knows, in the order benchmarks run them.
var ScenarioNames = []string{"mixed", "rollback", "bulk-delete", "ttl", "swaps", "skewed"}

// ScenarioHelp says what each scenario is, for --help and the docs.
const ScenarioHelp = `mixed: drift of d keys, 40% updates (half of them at the row's own version), 30% deletes, 30% inserts
rollback: the source is restored from a backup taken before its last d*rows keys were written: they go back to older versions or away
bulk-delete: the replica lost a contiguous range of ids, a fraction d of the rows
ttl: 30% of writes carry a TTL, a quarter of those expired on both sides and left unpurged; mixed drift d
swaps: d*rows count-preserving swaps (a row deleted, another key inserted at its version)
skewed: most writes at the top of the version range (2 updates per row, nine in ten of them in the last tenth of the history); mixed drift d`

// NewScenario returns the named scenario at the given size and drift fraction d, on top
// of base (its DeleteRatio, UpdateRatio, TTLFraction, ValueSize, Seed and Now).
func NewScenario(name string, base History, rows int, d float64) (Scenario, error) {
	h := base
	h.Rows = rows
	mixed := Drift{Updates: d * 0.4, Deletes: d * 0.3, Inserts: d * 0.3, Seed: 2}
	sc := Scenario{Name: name, History: h, Drift: mixed}
	switch name {
	case "mixed":
	case "rollback":
		sc.Drift = Drift{RollbackRows: d, Seed: 2}
		sc.Reverse = true
	case "bulk-delete":
		sc.Drift = Drift{BulkDelete: d, Seed: 2}
	case "ttl":
		sc.History.TTLFraction = 0.3
		sc.KeepExpired = true
	case "swaps":
		sc.Drift = Drift{Swaps: int(d*float64(rows) + 0.5), Seed: 2}
	case "skewed":
		sc.History.UpdateRatio = 2
		sc.History.Skew = 20
	default:
		return sc, fmt.Errorf("unknown scenario %q: want one of %s", name, strings.Join(ScenarioNames, ", "))
	}
	return sc, nil
}
