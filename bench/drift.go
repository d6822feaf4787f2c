package bench

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// Drift describes how a replica diverges from a History. Fractions are of the history's
// live rows (History.Rows). Every drifted key is distinct: a key is rolled back, updated,
// deleted or swapped, never two of these, so the difference a diff finds is exactly
// DriftStats.OnlySource + OnlyTarget + Changed.
type Drift struct {
	// Updates rewrites this fraction of rows: half at a new version above the history (a
	// write the source never saw), half at their own version with a different value (a
	// corruption that version numbers alone cannot see).
	Updates float64
	// Deletes removes this fraction of rows.
	Deletes float64
	// Inserts adds this fraction of rows under new keys, at new versions, a few per version.
	Inserts float64
	// RollbackVersions restores the replica as a backup taken before the top fraction of
	// the history's version range would: every key written in that range returns to its
	// earlier version and value (reappearing if it was deleted there) or disappears if it
	// was inserted there. Versions go backwards for those keys.
	RollbackVersions float64
	// Swaps deletes this many rows and inserts as many new keys, each at the version of
	// the row it replaces, so that row counts per version range stay equal.
	Swaps int
	// Seed selects which rows drift.
	Seed int64
	// RollbackRows is RollbackVersions with the cutoff chosen so that about this fraction
	// of rows (History.Rows) had their keys written after it: the rollback touches that
	// many keys, whatever the history's shape. (Omitted from cache keys when 0.)
	RollbackRows float64 `json:",omitempty"`
	// BulkDelete removes this fraction of rows as one contiguous range of ids (insertion
	// order, as `DELETE ... WHERE id BETWEEN a AND b` on an auto-increment key would),
	// starting at a random row. (Omitted from fixture cache keys when 0.)
	BulkDelete float64 `json:",omitempty"`
}

// DriftStats describes applied drift and the difference it makes, seen at History.Now
// with the history as the source and the drifted store as the target.
type DriftStats struct {
	Cutoff      uint64 `json:"cutoff"`       // versions above Cutoff were rolled back; 0 with no rollback
	RolledBack  int    `json:"rolled_back"`  // keys restored to an older version, or brought back after a delete
	Removed     int    `json:"removed"`      // keys the rollback removed because they were inserted after Cutoff
	Updated     int    `json:"updated"`      // keys rewritten by Updates
	SameVersion int    `json:"same_version"` // of Updated, those rewritten at their own version
	Deleted     int    `json:"deleted"`
	Inserted    int    `json:"inserted"`
	Swapped     int    `json:"swapped"`
	BulkDeleted int    `json:"bulk_deleted,omitempty"`
	MaxVersion  uint64 `json:"max_version"` // highest version written by the history or the drift
	// The difference the drift makes, as a diff from the history to the drifted store
	// reports it (expired rows are invisible on both sides).
	OnlySource int `json:"only_source"`
	OnlyTarget int `json:"only_target"`
	Changed    int `json:"changed"`
}

// Differing is the number of keys a diff between the history and the drifted store finds.
func (d DriftStats) Differing() int { return d.OnlySource + d.OnlyTarget + d.Changed }

// ApplyDrift writes drift d to s, which must hold exactly what Generate writes for h (a
// copy of a generated store, for instance). It replays the history in memory, without
// writing it, to know each key's state, and writes only the drift. h.Now must be the value
// the history was generated with.
func (h History) ApplyDrift(s Sink, d Drift) (DriftStats, error) {
	h, err := h.norm()
	if err != nil {
		return DriftStats{}, err
	}
	return h.applyDrift(s, d, nil)
}

// ApplyDriftTruth is ApplyDrift that also returns every differing key with its class: the
// ground truth a diff from the history to the drifted store must find.
func (h History) ApplyDriftTruth(s Sink, d Drift) (DriftStats, Truth, error) {
	h, err := h.norm()
	if err != nil {
		return DriftStats{}, nil, err
	}
	t := Truth{}
	ds, err := h.applyDrift(s, d, func(k []byte, c Class) { t[string(k)] = c })
	return ds, t, err
}

// GenerateDrifted writes the history and then the drift to s: the diverged replica of
// what Generate writes.
func (h History) GenerateDrifted(s Sink, d Drift) (Stats, DriftStats, error) {
	h, err := h.norm()
	if err != nil {
		return Stats{}, DriftStats{}, err
	}
	st, err := h.Generate(s)
	if err != nil {
		return Stats{}, DriftStats{}, err
	}
	ds, err := h.applyDrift(s, d, nil)
	return st, ds, err
}

// Check reports a drift no store can be given: negative fractions or swaps, a rollback
// fraction over 1. Callers check before they open a store, so nothing is created for it.
func (d Drift) Check() error {
	if d.Updates < 0 || d.Deletes < 0 || d.Inserts < 0 || d.Swaps < 0 || d.RollbackVersions < 0 || d.RollbackVersions > 1 || d.RollbackRows < 0 || d.BulkDelete < 0 {
		return fmt.Errorf("drift: fractions and swaps must not be negative and the rollback fraction is at most 1")
	}
	if sum := d.Updates + d.Deletes + d.BulkDelete; sum > 1 {
		return fmt.Errorf("drift: updates, deletes and bulk deletes together take %g of the rows; at most 1 (all of them)", sum)
	}
	return nil
}

// applyDrift writes the drift and calls rec, when set, with each differing key's class.
func (h History) applyDrift(s Sink, d Drift, rec func([]byte, Class)) (DriftStats, error) {
	if rec == nil {
		rec = func([]byte, Class) {}
	}
	if err := d.Check(); err != nil {
		return DriftStats{}, err
	}
	var st *state
	var err error
	var ds DriftStats
	if d.RollbackVersions > 0 || d.RollbackRows > 0 {
		// The cutoff depends on the last version (or on when each key was last written),
		// known only after one replay; the second replay records each key's state at the
		// cutoff.
		first, err := h.replay(nil, 0, false, d.RollbackRows > 0)
		if err != nil {
			return ds, err
		}
		if d.RollbackRows > 0 {
			ds.Cutoff = rowsCutoff(first.last, int(d.RollbackRows*float64(h.Rows)+0.5))
		} else {
			span := uint64(math.Ceil(float64(first.ver) * d.RollbackVersions))
			ds.Cutoff = first.ver - min(span, first.ver)
		}
		st, err = h.replay(nil, ds.Cutoff, true, false)
		if err != nil {
			return ds, err
		}
	} else if st, err = h.replay(nil, 0, false, false); err != nil {
		return ds, err
	}

	visible := func(id uint32, v uint32) bool {
		if v == 0 {
			return false
		}
		e := h.expiry(id, uint64(v))
		return e == 0 || e > h.Now
	}

	// Rollback, in id order so that the writes are deterministic.
	touched := make([]uint32, 0, len(st.atCutoff))
	for id := range st.atCutoff {
		touched = append(touched, id)
	}
	slices.Sort(touched)
	for _, id := range touched {
		old, cur := st.atCutoff[id], st.versions[id]
		if old == cur {
			continue // inserted and deleted after the cutoff: absent either way
		}
		if old == 0 {
			if err := s.Delete(key(id)); err != nil {
				return ds, err
			}
			ds.Removed++
		} else {
			if err := s.Put(key(id), h.value(id, uint64(old), 0), uint64(old), h.expiry(id, uint64(old))); err != nil {
				return ds, err
			}
			ds.RolledBack++
		}
		if c := ds.classify(visible(id, cur), visible(id, old)); c != 0 {
			rec(key(id), c)
		}
		st.versions[id] = old
	}

	// The other kinds of drift pick distinct visible rows the rollback left alone.
	var cands []uint32
	for id, v := range st.versions {
		if _, rolled := st.atCutoff[uint32(id)]; !rolled && visible(uint32(id), v) {
			cands = append(cands, uint32(id))
		}
	}
	frac := func(f float64) int { return int(f*float64(h.Rows) + 0.5) }
	nU, nD, nI, nB := frac(d.Updates), frac(d.Deletes), frac(d.Inserts), frac(d.BulkDelete)
	if need := nU + nD + d.Swaps + nB; need > len(cands) {
		return ds, fmt.Errorf("drift: %d updates, deletes, swaps and bulk deletes need more rows than the %d visible rows the rollback left", need, len(cands))
	}
	if len(st.versions)+nI+d.Swaps > maxIDs {
		return ds, fmt.Errorf("drift: too many inserts")
	}
	rng := rand.New(rand.NewPCG(uint64(d.Seed), 0x6472_6966_74)) // "drift"
	if nB > 0 {
		// cands is in id order: a run of it is a contiguous id range of visible rows. It is
		// deleted first and taken out of cands, so the other kinds pick other rows.
		from := rng.IntN(len(cands) - nB + 1)
		for _, id := range cands[from : from+nB] {
			if err := s.Delete(key(id)); err != nil {
				return ds, err
			}
			rec(key(id), OnlySource)
			ds.BulkDeleted++
			ds.OnlySource++
		}
		cands = append(cands[:from], cands[from+nB:]...)
	}
	picks := cands[:nU+nD+d.Swaps]
	for i := range picks {
		j := i + rng.IntN(len(cands)-i)
		cands[i], cands[j] = cands[j], cands[i]
	}
	ver := st.ver
	for i, id := range picks[:nU] {
		v := uint64(st.versions[id])
		if i%2 == 1 {
			val := h.value(id, v, 1)
			if bytes.Equal(val, h.value(id, v, 0)) {
				val[0] ^= 1
			}
			if err := s.Put(key(id), val, v, h.expiry(id, v)); err != nil {
				return ds, err
			}
			ds.SameVersion++
		} else {
			ver++
			if err := s.Put(key(id), h.value(id, ver, 0), ver, 0); err != nil {
				return ds, err
			}
		}
		rec(key(id), Changed)
		ds.Updated++
		ds.Changed++
	}
	for _, id := range picks[nU : nU+nD] {
		if err := s.Delete(key(id)); err != nil {
			return ds, err
		}
		rec(key(id), OnlySource)
		ds.Deleted++
		ds.OnlySource++
	}
	newID := uint32(len(st.versions))
	for ds.Inserted < nI {
		ver++
		for n := 1 + rng.IntN(16); n > 0 && ds.Inserted < nI; n-- {
			if err := s.Put(key(newID), h.value(newID, ver, 0), ver, 0); err != nil {
				return ds, err
			}
			rec(key(newID), OnlyTarget)
			newID++
			ds.Inserted++
			ds.OnlyTarget++
		}
	}
	for _, id := range picks[nU+nD:] {
		v := uint64(st.versions[id])
		if err := s.Delete(key(id)); err != nil {
			return ds, err
		}
		if err := s.Put(key(newID), h.value(newID, v, 0), v, 0); err != nil {
			return ds, err
		}
		rec(key(id), OnlySource)
		rec(key(newID), OnlyTarget)
		newID++
		ds.Swapped++
		ds.OnlySource++
		ds.OnlyTarget++
	}
	ds.MaxVersion = ver
	return ds, nil
}

// rowsCutoff returns the version above which about n keys were last written: of the two
// cutoffs next to the n-th latest key (a bulk commit there is taken whole or left out),
// the one whose count is nearer n.
func rowsCutoff(last []uint32, n int) uint64 {
	var vs []uint32
	for _, v := range last {
		if v > 0 {
			vs = append(vs, v)
		}
	}
	if n <= 0 || len(vs) == 0 {
		return uint64(slices.Max(append(vs, 0)))
	}
	if n >= len(vs) {
		return 0
	}
	slices.Sort(vs)
	v := vs[len(vs)-n] // the n-th latest
	above := func(c uint32) int {
		i, _ := slices.BinarySearch(vs, c+1)
		return len(vs) - i
	}
	with, without := above(v-1), above(v)
	if with-n <= n-without {
		return uint64(v - 1)
	}
	return uint64(v)
}

// classify counts one rolled-back key by where it is visible: in the history (source)
// and in the drifted store (target), and returns its class (0: visible on neither side).
func (d *DriftStats) classify(inSource, inTarget bool) Class {
	switch {
	case inSource && inTarget:
		d.Changed++
		return Changed
	case inSource:
		d.OnlySource++
		return OnlySource
	case inTarget:
		d.OnlyTarget++
		return OnlyTarget
	}
	return 0
}
