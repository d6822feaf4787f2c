package merkle

import (
	"errors"
	"math/rand/v2"
	"testing"
)

var errInjected = errors.New("injected KV failure")

// failingKV fails every call from the n-th on.
type failingKV struct {
	KV
	calls, failAt int
}

func (f *failingKV) fail() bool { f.calls++; return f.calls > f.failAt }

func (f *failingKV) Get(k []byte) ([]byte, bool, error) {
	if f.fail() {
		return nil, false, errInjected
	}
	return f.KV.Get(k)
}

func (f *failingKV) Set(k, v []byte) error {
	if f.fail() {
		return errInjected
	}
	return f.KV.Set(k, v)
}

func (f *failingKV) Delete(k []byte) error {
	if f.fail() {
		return errInjected
	}
	return f.KV.Delete(k)
}

func (f *failingKV) Iterate(s, e []byte, r bool, fn func(k, v []byte) bool) error {
	if f.fail() {
		return errInjected
	}
	return f.KV.Iterate(s, e, r, fn)
}

// TestStoredKVErrors makes the KV fail at every possible call of each operation: the
// error must come back, never a panic or a silent success.
func TestStoredKVErrors(t *testing.T) {
	g := ixGen{rng: rand.New(rand.NewPCG(11, 11)), o: VersionOrder}
	model := newNaiveIndex(VersionOrder)
	kv := newOrderedKV(false)
	loadCanonical(kv, nil, VersionOrder, 1, model, g, 300)
	pos, es := model.sorted()
	ops := map[string]func(*Stored) error{
		"insert":  func(s *Stored) error { return s.Insert(g.entry(g.key(), 5)) },
		"replace": func(s *Stored) error { e := es[7]; e.Flags ^= 1; return s.Insert(e) },
		"remove":  func(s *Stored) error { return s.Remove(es[11]) },
		"digest":  func(s *Stored) error { _, err := s.Digest(pos[3], pos[250]); return err },
		"digests": func(s *Stored) error {
			_, err := s.Digests(pos[3], nil, [][]byte{pos[40], pos[41], pos[200]})
			return err
		},
		"split":   func(s *Stored) error { _, err := s.Split(pos[1], pos[290], 8); return err },
		"entries": func(s *Stored) error { return s.Entries(pos[1], pos[9], func(Entry) bool { return true }) },
		"root":    func(s *Stored) error { _, err := s.Root(); return err },
	}
	for name, op := range ops {
		for failAt := 0; ; failAt++ {
			// Work on a copy so that a half-done write does not leak into the next try.
			cp := newOrderedKV(false)
			for k, v := range kv.dump() {
				cp.Set([]byte(k), []byte(v))
			}
			f := &failingKV{KV: cp, failAt: failAt}
			err := op(newStoredBits(f, nil, VersionOrder, 1))
			if f.calls <= failAt {
				if err != nil {
					t.Fatalf("%s: %v without a failure", name, err)
				}
				break // the operation finished before the failure point
			}
			if !errors.Is(err, errInjected) {
				t.Fatalf("%s failing at call %d: got %v", name, failAt, err)
			}
		}
	}
}

// TestStoredCorrupt checks that malformed values are reported, not trusted.
func TestStoredCorrupt(t *testing.T) {
	kv := newOrderedKV(false)
	st := NewStored(kv, []byte("c"), VersionOrder)
	for i := range 50 {
		if err := st.Insert(Entry{Key: []byte{byte(i)}, Version: 1}); err != nil {
			t.Fatal(err)
		}
	}
	kv.Set(st.nodeKey(0, VersionOrder.Position([]byte{7}, 1)), []byte{1, 2, 3})
	if err := st.Entries(nil, nil, func(Entry) bool { return true }); err == nil {
		t.Fatal("short entry value accepted by Entries")
	}
	if _, err := st.Digest(VersionOrder.Position([]byte{6}, 1), VersionOrder.Position([]byte{8}, 1)); err == nil {
		t.Fatal("short entry value accepted by Digest")
	}
	kv.Set(st.metaKey(), []byte{40})
	if _, err := NewStored(kv, []byte("c"), VersionOrder).Root(); err == nil {
		t.Fatal("bad meta record accepted")
	}
}
