package endpointtest_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
	"github.com/reconcile-dev/reconcile/reconcile/endpointtest"
)

// mapEndpoint is the simplest endpoint the suite should accept: a map of rows, and a
// snapshot that copies the live ones into a merkle.Sorted. It checks the suite itself.
type mapEndpoint struct {
	mu   sync.Mutex
	ord  merkle.Ordering
	rows map[string]reconcile.Row
}

const maxValue = 2 << 20

func (m *mapEndpoint) put(r reconcile.Row) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ord == merkle.KeyOrder {
		r.Version = 0
	}
	r.Key, r.Value = bytes.Clone(r.Key), bytes.Clone(r.Value)
	if r.Key == nil {
		r.Key = []byte{}
	}
	m.rows[string(r.Key)] = r
	return nil
}

func (m *mapEndpoint) del(key []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.rows, string(key))
	return nil
}

func (m *mapEndpoint) Open(ctx context.Context, now int64) (reconcile.Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	snap := &mapSnapshot{ord: m.ord, now: now, rows: map[string]reconcile.Row{}}
	var es []merkle.Entry
	for k, r := range m.rows {
		if e := r.Entry(); !e.Expired(now) {
			es = append(es, e)
			snap.rows[k] = r
		}
	}
	snap.idx = merkle.NewSorted(m.ord, es)
	return snap, nil
}

func (m *mapEndpoint) Apply(ctx context.Context, now int64, changes []reconcile.Change) ([]reconcile.Outcome, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range changes {
		if c.Put != nil && len(c.Put.Value) > maxValue {
			return nil, errors.New("value too large")
		}
	}
	out := make([]reconcile.Outcome, len(changes))
	staged := map[string]*reconcile.Row{}
	current := func(key []byte) (reconcile.Row, bool) {
		if r, ok := staged[string(key)]; ok {
			if r == nil {
				return reconcile.Row{}, false
			}
			return *r, true
		}
		r, ok := m.rows[string(key)]
		return r, ok
	}
	for i, c := range changes {
		cur, ok := current(c.Key)
		var match bool
		if c.Expect == nil {
			match = !ok || cur.Entry().Expired(now)
		} else {
			e := cur.Entry()
			match = ok && bytes.Equal(e.Key, c.Expect.Key) && e.Version == c.Expect.Version &&
				e.ExpiresAt == c.Expect.ExpiresAt && e.Flags == c.Expect.Flags && e.ValueHash == c.Expect.ValueHash
		}
		if !match {
			out[i] = reconcile.Raced
			continue
		}
		if c.Put == nil {
			staged[string(c.Key)] = nil
			continue
		}
		r := *c.Put
		if m.ord == merkle.KeyOrder {
			r.Version = 0
		}
		staged[string(c.Key)] = &r
	}
	for k, r := range staged {
		if r == nil {
			delete(m.rows, k)
		} else {
			m.rows[k] = *r
		}
	}
	return out, nil
}

func (m *mapEndpoint) Close() error { return nil }

type mapSnapshot struct {
	ord  merkle.Ordering
	now  int64
	idx  *merkle.Sorted
	rows map[string]reconcile.Row
}

func (s *mapSnapshot) Info() reconcile.Info {
	root, _ := s.idx.Digest(nil, nil)
	return reconcile.Info{Ordering: s.ord, Schema: "kv", Root: root}
}

func (s *mapSnapshot) Digests(_ context.Context, lo, hi []byte, bounds [][]byte) ([]merkle.Digest, error) {
	return s.idx.Digests(lo, hi, bounds)
}

func (s *mapSnapshot) Split(_ context.Context, lo, hi []byte, k int) ([][]byte, error) {
	return s.idx.Split(lo, hi, k)
}

func (s *mapSnapshot) Entries(_ context.Context, lo, hi []byte, limit int) ([]merkle.Entry, error) {
	var out []merkle.Entry
	err := s.idx.Entries(lo, hi, func(e merkle.Entry) bool {
		out = append(out, e)
		return limit <= 0 || len(out) < limit
	})
	return out, err
}

func (s *mapSnapshot) Rows(_ context.Context, keys [][]byte) ([]reconcile.Row, error) {
	out := make([]reconcile.Row, len(keys))
	for i, k := range keys {
		out[i] = s.rows[string(k)]
	}
	return out, nil
}

func (s *mapSnapshot) ReadStats() merkle.ReadStats { return s.idx.Stats() }
func (s *mapSnapshot) Close() error                { return nil }

func TestSuiteAcceptsMapEndpoint(t *testing.T) {
	for _, o := range []merkle.Ordering{merkle.VersionOrder, merkle.KeyOrder} {
		t.Run(o.String(), func(t *testing.T) {
			endpointtest.Run(t, func(t *testing.T) endpointtest.Harness {
				m := &mapEndpoint{ord: o, rows: map[string]reconcile.Row{}}
				return endpointtest.Harness{Endpoint: m, Put: m.put, Delete: m.del, RejectValueBytes: maxValue + 1}
			})
		})
	}
}
