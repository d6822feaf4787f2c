package bench

import "github.com/reconcile-dev/reconcile/bench/baseline"

// Verdict is how a plan compares with the true difference.
type Verdict struct {
	// Correct: applying the plan makes the target equal to the source.
	Correct bool `json:"correct"`
	// Found is the number of distinct keys the plan writes.
	Found int `json:"found"`
	// Missed counts differing keys the plan leaves wrong.
	Missed int `json:"missed"`
	// Lost counts rows the source holds that the plan deletes from the target without
	// writing them back: data a sync would destroy.
	Lost int `json:"lost"`
	// Needless counts keys the plan rewrites with the row the target already holds.
	Needless int `json:"needless"`
}

// Evaluate checks plan p (deletes first, then upserts of the source's rows) against t.
func Evaluate(p baseline.Plan, t Truth) Verdict {
	up := make(map[string]bool, len(p.Upserts))
	for _, k := range p.Upserts {
		up[string(k)] = true
	}
	del := make(map[string]bool, len(p.Deletes))
	for _, k := range p.Deletes {
		del[string(k)] = true
	}
	var v Verdict
	seen := make(map[string]bool, len(up)+len(del))
	for k, c := range t {
		switch {
		case up[k]:
			// An upsert writes the source's row: right unless the source has none.
			if c == OnlyTarget {
				v.Missed++
			}
		case del[k]:
			if c != OnlyTarget {
				v.Missed++
			}
			if c == Changed {
				v.Lost++ // the target's copy is deleted and the source's never sent
			}
		default:
			v.Missed++
		}
	}
	for k := range up {
		seen[k] = true
		if _, differs := t[k]; !differs {
			v.Needless++
		}
	}
	for k := range del {
		if _, differs := t[k]; !differs && !up[k] {
			v.Lost++ // equal on both sides, and deleted
		}
		seen[k] = true
	}
	v.Found = len(seen)
	v.Correct = v.Missed == 0 && v.Lost == 0
	return v
}
