// Package baseline implements the ways of comparing two copies that reconcile replaces,
// against the same endpoints (reconcile.Endpoint), so that a benchmark can run them side
// by side with a reconcile session on the same snapshots and count the same things:
//
//   - Manifest: the target sends every (key, version, hash); the source compares.
//   - Chunked: a differencing scan that walks both copies in version order, newest first,
//     in fixed batches, compares each batch's checksum, and stops as soon as both sides
//     hold the same number of rows below the current batch.
//   - HighWater: the high-water-mark sync: upload the rows above the target's highest
//     version; when the source's highest version is below the target's (the source went
//     backwards), first delete everything on the target above the source's highest
//     version.
//
// Each is written as a competent implementation would be, not as a straw man: they read
// each entry's stored hash where the endpoint keeps one (reconcile.HashedEntries) instead
// of hashing rows, use the endpoint's own count of rows, and batch their messages. Each
// returns a Plan (what it would write to make the target equal to the source) and its
// Cost. None of them writes: a benchmark checks the plan against the true difference, so
// a method that misses or loses rows is shown doing so.
//
// Wire cost model. The methods run in one process, with the target's snapshot standing
// for a remote peer. Every exchange with the target counts one round trip, and its
// messages are counted at the size of a compact binary encoding: a key or a position is
// uvarint(len) and its bytes, a version, count or expiry time a uvarint, a hash its
// bytes (HashBytes), a request its operation byte and arguments. Row values are not
// counted (applying a plan costs the same whichever method found it); see Cost.
package baseline

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"

	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// DefaultHashBytes is the width of the hashes the baselines send: 16 bytes, the width of
// reconcile's full fingerprint. Per-row comparison could do with 8 (a miss per changed row
// of 2^-64); Cost reports how many hashes were sent so that a reader can rescale.
const DefaultHashBytes = 16

// Plan is what a method would write to make the target equal to the source: Deletes are
// applied first, then Upserts write the source's current row for each key.
type Plan struct {
	Upserts [][]byte
	Deletes [][]byte
}

// Cost is what a method spent, counted the same way for every method.
type Cost struct {
	// EntriesSource and EntriesTarget are the index entries (one per row: key, version,
	// expiry, value hash) each side's snapshot read, as its ReadStats report them;
	// NodesSource and NodesTarget its aggregate index nodes.
	EntriesSource, EntriesTarget int64
	NodesSource, NodesTarget     int64
	// RowsSource and RowsTarget are rows read by key (Snapshot.Rows).
	RowsSource, RowsTarget int64
	// BytesSent and BytesReceived are message bytes from the source's point of view,
	// values excluded.
	BytesSent, BytesReceived int64
	// Hashes is how many hashes of HashBytes crossed the wire (in BytesSent and
	// BytesReceived).
	Hashes int64
	// Rounds counts round trips to the target.
	Rounds int
}

// Found is what a method reports about the difference, by class.
type Found struct {
	OnlySource, OnlyTarget, Changed int
}

// Result is one run of a method.
type Result struct {
	Plan  Plan
	Cost  Cost
	Found Found
}

// link counts the messages exchanged with the target.
type link struct{ c *Cost }

// round counts one round trip with a request and a response of the given sizes.
func (l link) round(req, resp int64) {
	l.c.Rounds++
	l.c.BytesSent += req
	l.c.BytesReceived += resp
}

func uvlen(x uint64) int64 { return int64((bits.Len64(x|1) + 6) / 7) }

func bytesLen(b []byte) int64 { return uvlen(uint64(len(b))) + int64(len(b)) }

// each calls fn with every entry of snap in [lo, hi) and its EntryHash, in position
// order, until fn returns false. It uses the stored hashes where the snapshot keeps them.
func each(ctx context.Context, snap reconcile.Snapshot, lo, hi []byte, fn func(merkle.Entry, merkle.Hash) bool) error {
	if hs, ok := snap.(reconcile.HashedEntries); ok {
		return hs.EachHashed(ctx, lo, hi, fn)
	}
	const page = 65536
	for {
		es, err := snap.Entries(ctx, lo, hi, page)
		if err != nil {
			return err
		}
		for _, e := range es {
			if !fn(e, e.Hash()) {
				return nil
			}
		}
		if len(es) < page {
			return nil
		}
		lo = append(es[len(es)-1].Position(snap.Info().Ordering), 0)
	}
}

// versionPos is the first position at version v in version order.
func versionPos(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// maxVersion returns the highest version of snap's entries below position hi (nil: all),
// and false when there is none, by binary search over versions with one-entry reads: what
// a database answers from an index on the version column (SELECT max(version)).
func maxVersion(ctx context.Context, snap reconcile.Snapshot, hi []byte) (uint64, bool, error) {
	any := func(v uint64) (bool, error) {
		found := false
		err := each(ctx, snap, versionPos(v), hi, func(merkle.Entry, merkle.Hash) bool {
			found = true
			return false
		})
		return found, err
	}
	ok, err := any(0)
	if err != nil || !ok {
		return 0, false, err
	}
	lo, top := uint64(0), uint64(math.MaxUint64) // an entry at >= lo; none at > top
	for lo < top {
		mid := lo + (top-lo)/2 + 1
		ok, err := any(mid)
		if err != nil {
			return 0, false, err
		}
		if ok {
			lo = mid
		} else {
			top = mid - 1
		}
	}
	return lo, true, nil
}

// minVersion returns the version of snap's first entry.
func minVersion(ctx context.Context, snap reconcile.Snapshot) (uint64, bool, error) {
	var v uint64
	found := false
	err := each(ctx, snap, nil, nil, func(e merkle.Entry, _ merkle.Hash) bool {
		v, found = e.Version, true
		return false
	})
	return v, found, err
}

// snapshots opens both sides at now.
func snapshots(ctx context.Context, source, target reconcile.Endpoint, now int64) (src, dst reconcile.Snapshot, err error) {
	src, err = source.Open(ctx, now)
	if err != nil {
		return nil, nil, fmt.Errorf("open source snapshot: %w", err)
	}
	dst, err = target.Open(ctx, now)
	if err != nil {
		src.Close()
		return nil, nil, fmt.Errorf("open target snapshot: %w", err)
	}
	if src.Info().Ordering != dst.Info().Ordering {
		src.Close()
		dst.Close()
		return nil, nil, fmt.Errorf("open snapshots: source in %s, target in %s", src.Info().Ordering, dst.Info().Ordering)
	}
	return src, dst, nil
}

// finish fills the read counts from the snapshots' ReadStats.
func finish(c *Cost, src, dst reconcile.Snapshot) {
	s, t := src.ReadStats(), dst.ReadStats()
	c.EntriesSource, c.NodesSource = s.Entries, s.Nodes
	c.EntriesTarget, c.NodesTarget = t.Entries, t.Nodes
}

// planner collects a plan by key, so a key decided twice is written once.
type planner struct {
	upserts map[string]bool
	deletes map[string]bool
	found   Found
}

func newPlanner() *planner {
	return &planner{upserts: map[string]bool{}, deletes: map[string]bool{}}
}

func (p *planner) upsert(key []byte, c *int) {
	if !p.upserts[string(key)] {
		p.upserts[string(key)] = true
		*c++
	}
}

func (p *planner) del(key []byte) {
	if !p.deletes[string(key)] {
		p.deletes[string(key)] = true
		p.found.OnlyTarget++
	}
}

func (p *planner) plan() Plan {
	var out Plan
	for k := range p.deletes {
		out.Deletes = append(out.Deletes, []byte(k))
	}
	for k := range p.upserts {
		out.Upserts = append(out.Upserts, []byte(k))
	}
	return out
}
