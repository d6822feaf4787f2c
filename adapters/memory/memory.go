// Package memory is an in-memory endpoint: a map of rows that builds a sorted index with
// prefix digests each time a snapshot opens (O(n log n) per session). It serves tests,
// examples and small embedded uses; it keeps nothing on disk.
package memory

import (
	"context"
	"fmt"
	"sync"

	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// Store is an in-memory keyspace. It is safe for concurrent use.
type Store struct {
	mu       sync.Mutex
	ordering merkle.Ordering
	rows     map[string]reconcile.Row
	// MaxRowBytes, when positive, makes Apply refuse rows whose value is larger (a
	// reconcile.RowRefusedError).
	MaxRowBytes int
	// ReadOnly makes Apply refuse every write.
	ReadOnly bool
}

var _ reconcile.Endpoint = (*Store)(nil)

// New returns an empty store in ordering o.
func New(o merkle.Ordering) *Store {
	return &Store{ordering: o, rows: map[string]reconcile.Row{}}
}

// Put upserts a row. In key order the version is stored as 0.
func (s *Store) Put(r reconcile.Row) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.put(r)
}

func (s *Store) put(r reconcile.Row) {
	r.Key = append([]byte{}, r.Key...)
	r.Value = append([]byte{}, r.Value...)
	if s.ordering == merkle.KeyOrder {
		r.Version = 0
	}
	s.rows[string(r.Key)] = r
}

// Delete removes key.
func (s *Store) Delete(key []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.rows, string(key))
}

// Rows returns every row, expired ones included, in no particular order.
func (s *Store) Rows() []reconcile.Row {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]reconcile.Row, 0, len(s.rows))
	for _, r := range s.rows {
		out = append(out, r)
	}
	return out
}

// Open copies the rows live at now and indexes them.
func (s *Store) Open(ctx context.Context, now int64) (reconcile.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rows := make(map[string]reconcile.Row, len(s.rows))
	entries := make([]merkle.Entry, 0, len(s.rows))
	for k, r := range s.rows {
		e := r.Entry()
		if e.Expired(now) {
			continue
		}
		rows[k] = r
		entries = append(entries, e)
	}
	idx := merkle.NewSorted(s.ordering, entries)
	root, _ := idx.Digest(nil, nil)
	return &snapshot{SortedIndex: reconcile.SortedIndex{Sorted: idx}, rows: rows, info: reconcile.Info{Ordering: s.ordering, Schema: reconcile.SchemaKV, Root: root}}, nil
}

// Apply writes changes atomically, each conditional on its Expect.
func (s *Store) Apply(ctx context.Context, now int64, changes []reconcile.Change) ([]reconcile.Outcome, error) {
	if s.ReadOnly {
		return nil, reconcile.ErrReadOnly
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]reconcile.Outcome, len(changes))
	for i, c := range changes {
		if len(c.Key) > reconcile.MaxKey {
			return nil, fmt.Errorf("apply: key of %d bytes is over the protocol's limit of %d", len(c.Key), reconcile.MaxKey)
		}
		if c.Put != nil && s.MaxRowBytes > 0 && len(c.Put.Value) > s.MaxRowBytes {
			return nil, &reconcile.RowRefusedError{Index: i, Err: fmt.Errorf("apply: row %s has %d bytes, over the limit of %d", reconcile.PrintableKey(c.Key), len(c.Put.Value), s.MaxRowBytes)}
		}
		cur, ok := s.rows[string(c.Key)]
		var curEntry *merkle.Entry
		if ok {
			if e := cur.Entry(); !e.Expired(now) {
				curEntry = &e
			}
		}
		switch {
		case c.InPlace(curEntry, s.ordering):
			out[i] = inPlace
		case !merkle.SameEntry(curEntry, c.Expect):
			out[i] = reconcile.Raced
		}
	}
	for i, c := range changes {
		if out[i] != reconcile.Applied {
			if out[i] == inPlace {
				out[i] = reconcile.Applied
			}
			continue
		}
		if c.Put == nil {
			delete(s.rows, string(c.Key))
		} else {
			s.put(*c.Put)
		}
	}
	return out, nil
}

// inPlace marks, within Apply, a change that needs no write (Change.InPlace).
const inPlace = reconcile.Raced + 1

// Close is a no-op.
func (s *Store) Close() error { return nil }

type snapshot struct {
	reconcile.SortedIndex
	rows map[string]reconcile.Row
	info reconcile.Info
}

func (s *snapshot) Info() reconcile.Info { return s.info }

func (s *snapshot) Rows(ctx context.Context, keys [][]byte) ([]reconcile.Row, error) {
	out := make([]reconcile.Row, len(keys))
	for i, k := range keys {
		out[i] = s.rows[string(k)]
	}
	return out, nil
}

func (s *snapshot) ReadStats() merkle.ReadStats { return s.Stats() }

func (s *snapshot) Close() error { return nil }
