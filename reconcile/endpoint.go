// Package reconcile runs one anti-entropy session between two endpoints: it compares
// their version-range Merkle indexes, descends only into ranges whose digests differ,
// computes the difference by key, resolves it, and applies the result conditionally.
package reconcile

import (
	"context"
	"errors"

	"github.com/reconcile-dev/reconcile/merkle"
)

// Row is one row as endpoints store and exchange it. Value holds canonical bytes.
type Row struct {
	Key       []byte
	Version   uint64
	Value     []byte
	ExpiresAt int64 // unix nanoseconds, 0 = never
	Tombstone bool  // merge mode only
}

// Expired reports whether r is invisible to a snapshot at now, as its entry would be,
// without hashing its value.
func (r Row) Expired(now int64) bool { return r.ExpiresAt != 0 && r.ExpiresAt <= now }

// Entry returns the index entry that stands for r.
func (r Row) Entry() merkle.Entry {
	e := merkle.Entry{Key: r.Key, Version: r.Version, ExpiresAt: r.ExpiresAt, ValueHash: merkle.ValueHash(r.Value)}
	if r.Tombstone {
		e.Flags |= merkle.FlagTombstone
	}
	return e
}

// Info describes a snapshot; the session compares Ordering and Schema before any work.
type Info struct {
	Ordering merkle.Ordering
	// Schema is an opaque fingerprint of what a row's value means (columns and types for a
	// SQL table; SchemaKV for a plain keyspace). Endpoints that disagree cannot be
	// reconciled, except that a keyspace goes with any schema: it holds values as opaque
	// bytes (a SQL table's canonical rows, say), and an endpoint with a schema checks each
	// value it is asked to write and refuses those that do not fit.
	Schema string
	// Root is the digest of every live entry at the snapshot's now.
	Root merkle.Digest
}

// SchemaKV is the schema of a plain keyspace, whose values are opaque bytes.
const SchemaKV = "kv"

// Endpoint is one copy of the data: a Badger store, a SQL table, a remote server.
//
// Contract: an Endpoint holds rows keyed by Key, at most one per key. Each row has an index
// entry at its position (merkle.Ordering). Expired rows (ExpiresAt at or before a
// snapshot's now) are invisible in every snapshot: they are in no digest, split and listing.
// Tombstones appear only where the endpoint keeps them for merge mode.
type Endpoint interface {
	// Open takes one consistent read snapshot, which sees rows live at now (unix ns).
	Open(ctx context.Context, now int64) (Snapshot, error)
	// Apply writes changes in one transaction: all of them or none. Each change is
	// conditional: it is applied only when the endpoint's current entry for the key is
	// still Expect (nil: no live row at now); otherwise it is skipped and reported Raced,
	// unless the endpoint already holds what it would write (Change.InPlace: Applied).
	// A non-nil error means nothing was written; errors that a smaller batch may avoid
	// (a constraint, a transaction too large) are returned so, and the caller halves the
	// batch. A change the endpoint refuses for what it is (a row over its size limit, a
	// value it cannot hold) is best returned as a *RowRefusedError naming it: the caller
	// quarantines it at once and goes on with the rest.
	Apply(ctx context.Context, now int64, changes []Change) ([]Outcome, error)
	// Close releases the endpoint.
	Close() error
}

// Snapshot is a consistent read view of one endpoint. Ranges are over positions: lo
// inclusive, hi exclusive, nil lo is the first position and nil hi is past the last.
// A session reads a snapshot from one goroutine at a time; one that can be read from
// several at once implements Forker, and the session then spreads a round's reads.
type Snapshot interface {
	Info() Info
	// Digests returns the digests of the consecutive parts of [lo, hi) cut at bounds
	// (sorted, strictly inside the range): len(bounds)+1 digests.
	Digests(ctx context.Context, lo, hi []byte, bounds [][]byte) ([]merkle.Digest, error)
	// Split returns up to k-1 positions of this snapshot's entries that cut [lo, hi) into
	// parts of near-equal count.
	Split(ctx context.Context, lo, hi []byte, k int) ([][]byte, error)
	// Entries returns the entries in [lo, hi) in position order, at most limit of them
	// (limit <= 0: no limit).
	Entries(ctx context.Context, lo, hi []byte, limit int) ([]merkle.Entry, error)
	// Rows returns the snapshot's live rows for keys, in the same order; a key with no live
	// row yields a Row with a nil Key. An endpoint whose rows cannot be read in the same
	// snapshot as its index (a SQL table's maintained index, caught up just before the
	// read snapshot opens; SQLite outside WAL mode) may return a row written since, or
	// none for a row deleted since: a sync skips a row unlike the entry it found, as raced.
	// A row the endpoint indexes but cannot give (a SQL row with a value that has no
	// canonical form) is refused with a *RowRefusedError naming the first such key: a
	// sync quarantines it, leaves the target's copy alone, and asks for the rows before it.
	Rows(ctx context.Context, keys [][]byte) ([]Row, error)
	// ReadStats reports what this snapshot has read from its index so far.
	ReadStats() merkle.ReadStats
	// Close releases the snapshot.
	Close() error
}

// Change is one conditional write.
type Change struct {
	Key []byte
	// Expect is the entry the session saw for Key on this endpoint, nil if it saw none.
	Expect *merkle.Entry
	// Put is the row to write; nil deletes Key.
	Put *Row
}

// InPlace reports whether an endpoint whose live entry for c.Key is have (nil: none)
// already holds what c would leave there: no live row for a delete, or exactly the Put
// row's entry (its version taken as 0 in KeyOrder). Apply reports such a change Applied
// without writing, whatever Expect says: a batch retried after its answer was lost finds
// its own writes in place, and they are not races.
func (c Change) InPlace(have *merkle.Entry, o merkle.Ordering) bool {
	if c.Put == nil {
		return have == nil
	}
	want := c.Put.Entry()
	if o == merkle.KeyOrder {
		want.Version = 0
	}
	return merkle.SameEntry(have, &want)
}

// Outcome says what happened to one Change of an applied batch.
type Outcome uint8

const (
	// Applied: the change was written.
	Applied Outcome = iota
	// Raced: the endpoint's entry changed since the snapshot; the change was skipped.
	// (Report.Raced also counts source rows that moved: see session.changes.)
	Raced
)

// ErrReadOnly is returned by Apply on endpoints that refuse writes.
var ErrReadOnly = errors.New("endpoint is read-only")

// RowRefusedError is an Apply error saying that the endpoint refuses change Index of the
// batch, the first it refuses, for what it is (a row over the endpoint's size limit, a
// value it cannot hold): no batch and no retry can write it, while the batch's other
// changes may be written. Nothing was written. A session quarantines that row at once and
// goes on with the rest, rather than halving the batch and trying the row
// Options.Attempts times.
type RowRefusedError struct {
	Index int
	Err   error
}

func (e *RowRefusedError) Error() string { return e.Err.Error() }
func (e *RowRefusedError) Unwrap() error { return e.Err }

// SortedIndex answers a snapshot's index questions (Digests, Split, Entries) from a
// merkle.Sorted: endpoints that build their index from one scan per session embed it.
type SortedIndex struct{ *merkle.Sorted }

// Digests answers from the sorted entries.
func (s SortedIndex) Digests(_ context.Context, lo, hi []byte, bounds [][]byte) ([]merkle.Digest, error) {
	return s.Sorted.Digests(lo, hi, bounds)
}

// Split answers from the sorted entries.
func (s SortedIndex) Split(_ context.Context, lo, hi []byte, k int) ([][]byte, error) {
	return s.Sorted.Split(lo, hi, k)
}

// Entries lists at most limit entries (limit <= 0: all) of [lo, hi).
func (s SortedIndex) Entries(_ context.Context, lo, hi []byte, limit int) ([]merkle.Entry, error) {
	var out []merkle.Entry
	err := s.Sorted.Entries(lo, hi, func(e merkle.Entry) bool {
		out = append(out, e)
		return limit <= 0 || len(out) < limit
	})
	return out, err
}
