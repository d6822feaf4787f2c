// Package bench builds the datasets that `reconcile gen`, `reconcile demo`, benchmarks and
// tests run on: a delete-heavy write history (History) and the drift that turns a copy of
// it into a diverged replica (Drift). Generation is deterministic: the same parameters
// always produce the same rows, so a replica can be derived from a copy of the source
// store without reading it.
package bench

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Sink receives generated writes in commit order. The badger adapter's Writer satisfies
// it. Generate never reuses a slice it has passed to a Sink, so a Sink may retain them.
type Sink interface {
	Put(key, value []byte, version uint64, expiresAt int64) error
	Delete(key []byte) error
}

// History describes a delete-heavy write history. Every commit takes the next value of a
// global counter as its version (starting at 1), so versions only grow; some commits write
// many rows at one version (bulk loads and bulk updates). Deletes and updates are spread
// evenly through the history rather than bunched at the end.
type History struct {
	// Rows is how many rows are live at the end (expired rows included).
	Rows int
	// DeleteRatio is how many rows were deleted over time per live row at the end:
	// 1.0 means as many rows were deleted as are live.
	DeleteRatio float64
	// UpdateRatio is how many updates of live rows were made per live row at the end.
	UpdateRatio float64
	// TTLFraction is the fraction of writes that carry an expiry, about a quarter of them
	// already expired at Now and the rest expiring within the following 18 hours.
	TTLFraction float64
	// ValueSize is the length of each value in bytes; 0 or less means 64.
	ValueSize int
	// Seed selects the history; the same History always produces the same writes.
	Seed int64
	// Now is the clock (unix ns) that expiry times are relative to. 0 means the time of
	// the call, which makes expiry times (only those) differ between calls: set it for
	// byte-identical datasets, and pass the same Now to ApplyDrift as to Generate.
	Now int64
	// Skew pushes updates towards the end of the history, so that most live rows carry
	// versions near the top: the share of updates made by a point of the history is its
	// progress raised to 1+Skew. 0 spreads them evenly; 20 makes nine in ten in the last
	// tenth. (Omitted from fixture cache keys when 0, so older caches stay valid.)
	Skew float64 `json:",omitempty"`
}

// Stats describes a generated history.
type Stats struct {
	Live       int    `json:"live"`        // rows live at the end, expired ones included (= History.Rows)
	Expired    int    `json:"expired"`     // live rows already expired at Now
	BinaryKeys int    `json:"binary_keys"` // live rows whose key is not valid UTF-8
	Inserts    int    `json:"inserts"`     // rows inserted over the history
	Updates    int    `json:"updates"`     // updates of live rows
	Deletes    int    `json:"deletes"`     // rows deleted
	Commits    int    `json:"commits"`     // versions used: one per commit
	BulkRows   int    `json:"bulk_rows"`   // rows written by commits that wrote more than one row
	MinVersion uint64 `json:"min_version"` // first version of the history
	MaxVersion uint64 `json:"max_version"` // last version of the history
	Now        int64  `json:"now"`         // the clock expiry was generated against
}

// maxIDs bounds the key space so that per-key state fits in uint32 versions.
const maxIDs = 1 << 30

// Commit shapes. The numbers are arbitrary but fixed: changing them changes every dataset.
const (
	bulkChance   = 0.05 // chance an insert commit is a bulk insert
	maxBulk      = 2000 // largest bulk insert
	bulkUpdates  = 0.1  // chance an update commit updates several rows at one version
	maxBulkUpd   = 64   // largest bulk update
	binaryOneIn  = 64   // one key in this many is binary (not valid UTF-8)
	expiredShare = 0.25 // of the rows with an expiry, the share already expired at Now
	ttlSpan      = 24 * int64(time.Hour)
)

// Check reports a history this generator cannot write (negative rows or ratios, a TTL
// fraction over 1, more rows than it supports). Callers check before they open a store, so
// nothing is created for it.
func (h History) Check() error {
	_, err := h.norm()
	return err
}

func (h History) norm() (History, error) {
	if h.Rows < 0 || h.DeleteRatio < 0 || h.UpdateRatio < 0 || h.TTLFraction < 0 || h.TTLFraction > 1 || h.Skew < 0 {
		return h, fmt.Errorf("history: rows and ratios must not be negative and the TTL fraction is at most 1")
	}
	if float64(h.Rows)*(1+h.DeleteRatio) > maxIDs/2 || float64(h.Rows)*(1+h.DeleteRatio+h.UpdateRatio) > maxIDs {
		return h, fmt.Errorf("history: %d rows with delete ratio %g and update ratio %g is more than this generator supports", h.Rows, h.DeleteRatio, h.UpdateRatio)
	}
	if h.ValueSize <= 0 {
		h.ValueSize = 64
	}
	if h.Now == 0 {
		h.Now = time.Now().UnixNano()
	}
	return h, nil
}

// Generate writes the history to s and reports what it wrote. It stops at the first error
// s returns.
func (h History) Generate(s Sink) (Stats, error) {
	h, err := h.norm()
	if err != nil {
		return Stats{}, err
	}
	st, err := h.replay(s, 0, false, false)
	if err != nil {
		return Stats{}, err
	}
	return st.stats, nil
}

// state is the end of a replayed history: each key id's last version (0: no live row).
type state struct {
	h        History
	versions []uint32
	ver      uint64 // last version used
	stats    Stats
	// atCutoff holds, for each id written after the replay's cutoff version, its version
	// just before that write: the state a backup taken at the cutoff would restore.
	atCutoff map[uint32]uint32
	// last holds each id's last write or delete version, when asked for.
	last []uint32
}

// replay runs the history, writing to s when it is not nil. With track set it records the
// version at cutoff of every key written after cutoff; with recordLast, each key's last
// write or delete version.
func (h History) replay(s Sink, cutoff uint64, track, recordLast bool) (*state, error) {
	deletes := int(float64(h.Rows)*h.DeleteRatio + 0.5)
	updates := int(float64(h.Rows)*h.UpdateRatio + 0.5)
	total := h.Rows + deletes // every id is inserted once; deleted ids never come back
	st := &state{h: h, versions: make([]uint32, total)}
	if track {
		st.atCutoff = make(map[uint32]uint32)
	}
	if recordLast {
		st.last = make([]uint32, total)
	}
	rng := rand.New(rand.NewPCG(uint64(h.Seed), 0x6869_7374_6f72_79)) // "history"
	live := make([]uint32, 0, h.Rows+1)
	var next, deleted, updated int

	write := func(id uint32, v uint64) error {
		if track && v > cutoff {
			if _, ok := st.atCutoff[id]; !ok {
				st.atCutoff[id] = st.versions[id]
			}
		}
		st.versions[id] = uint32(v)
		if st.last != nil {
			st.last[id] = uint32(v)
		}
		if s == nil {
			return nil
		}
		return s.Put(key(id), h.value(id, v, 0), v, h.expiry(id, v))
	}
	remove := func(id uint32, v uint64) error {
		if track && v > cutoff {
			if _, ok := st.atCutoff[id]; !ok {
				st.atCutoff[id] = st.versions[id]
			}
		}
		st.versions[id] = 0
		if st.last != nil {
			st.last[id] = uint32(v)
		}
		if s == nil {
			return nil
		}
		return s.Delete(key(id))
	}

	for next < total {
		// One insert commit: usually a single row, sometimes a bulk load at one version.
		n := 1
		if rng.Float64() < bulkChance {
			n = 1 + rng.IntN(maxBulk)
		}
		n = min(n, total-next)
		st.ver++
		st.stats.Commits++
		if n > 1 {
			st.stats.BulkRows += n
		}
		for range n {
			id := uint32(next)
			next++
			if err := write(id, st.ver); err != nil {
				return nil, err
			}
			live = append(live, id)
		}
		st.stats.Inserts += n

		// Deletes keep pace with inserts: after next of total ids, deletes*next/total.
		for want := int(int64(deletes) * int64(next) / int64(total)); deleted < want; deleted++ {
			j := rng.IntN(len(live))
			id := live[j]
			live[j] = live[len(live)-1]
			live = live[:len(live)-1]
			st.ver++
			st.stats.Commits++
			if err := remove(id, st.ver); err != nil {
				return nil, err
			}
		}
		// Updates too, sometimes several rows in one commit.
		want := int(int64(updates) * int64(next) / int64(total))
		if h.Skew > 0 {
			want = int(float64(updates) * math.Pow(float64(next)/float64(total), 1+h.Skew))
		}
		for updated < want && len(live) > 0 {
			m := 1
			if rng.Float64() < bulkUpdates {
				m = 1 + rng.IntN(maxBulkUpd)
			}
			m = min(m, want-updated, len(live))
			st.ver++
			st.stats.Commits++
			if m > 1 {
				st.stats.BulkRows += m
			}
			picked := make([]uint32, 0, m)
			for len(picked) < m {
				id := live[rng.IntN(len(live))]
				if slices.Contains(picked, id) {
					continue // one row is written at most once per commit
				}
				picked = append(picked, id)
				if err := write(id, st.ver); err != nil {
					return nil, err
				}
			}
			updated += m
		}
	}
	st.stats.Updates = updated
	st.stats.Deletes = deleted
	st.stats.Live = len(live)
	st.stats.Now = h.Now
	if st.ver > 0 {
		st.stats.MinVersion = 1
	}
	st.stats.MaxVersion = st.ver
	for _, id := range live {
		v := uint64(st.versions[id])
		if e := h.expiry(id, v); e != 0 && e <= h.Now {
			st.stats.Expired++
		}
		if isBinary(id) {
			st.stats.BinaryKeys++
		}
	}
	return st, nil
}

// key names id: "user/%012d" with the id scrambled so that key order is not insertion
// order, or, for one id in binaryOneIn, 0xff "bin/" be64(id), which is not valid UTF-8.
// Both forms are injective, so distinct ids never share a key.
func key(id uint32) []byte {
	if isBinary(id) {
		k := make([]byte, 0, 13)
		k = append(k, 0xff, 'b', 'i', 'n', '/')
		return binary.BigEndian.AppendUint64(k, uint64(id))
	}
	// Multiplying by a constant coprime to 10 permutes [0, 10^12).
	n := (uint64(id)*2654435761 + 104729) % 1_000_000_000_000
	return fmt.Appendf(make([]byte, 0, 17), "user/%012d", n)
}

func isBinary(id uint32) bool { return mix(uint64(id), 0x62696e)%binaryOneIn == 0 }

// value is the row value of id written at version v: printable ASCII derived from the
// seed, id, version and salt (salt 0 for the history, others for drift).
func (h History) value(id uint32, v uint64, salt uint64) []byte {
	out := make([]byte, h.ValueSize)
	x := mix(uint64(h.Seed)^uint64(id)<<32, v^salt<<56)
	for i := range out {
		if i%8 == 0 {
			x = splitmix(x)
		}
		out[i] = 'a' + byte((x>>(8*(i%8)))&0xff)%26
	}
	return out
}

// expiry is the ExpiresAt of id written at version v: 0 for most rows; for TTLFraction of
// writes, a time around Now.
func (h History) expiry(id uint32, v uint64) int64 {
	x := mix(uint64(h.Seed)^uint64(id)<<32, v^0x74746c) // "ttl"
	if h.TTLFraction <= 0 || unit(x) >= h.TTLFraction {
		return 0
	}
	off := int64(unit(splitmix(x))*float64(ttlSpan)) - int64(expiredShare*float64(ttlSpan))
	// With a small Now the expired ones would fall before the epoch; keep them at 1 ns.
	return max(h.Now+off, 1)
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

func mix(a, b uint64) uint64 { return splitmix(splitmix(a) ^ b) }

// unit maps x to [0, 1).
func unit(x uint64) float64 { return float64(x>>11) / (1 << 53) }
