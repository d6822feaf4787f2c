package badger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// indexDump is every index key and value of s, in order.
// foldT folds the store's index log into its index, for tests that read or damage the
// stored index directly.
func foldT(t *testing.T, s *Store) {
	t.Helper()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.imu.Lock()
	defer s.imu.Unlock()
	must(t, s.foldNow(true))
}

func indexDump(t *testing.T, s *Store) []string {
	t.Helper()
	foldT(t, s)
	var out []string
	err := s.db.View(func(txn *bdg.Txn) error {
		it := txn.NewIterator(bdg.IteratorOptions{Prefix: []byte{prefixIndex}, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out = append(out, fmt.Sprintf("%x=%x", it.Item().Key(), v))
		}
		return nil
	})
	must(t, err)
	return out
}

// TestMultiTxnWritesMatchRebuild: Writes that span many transactions, sharing one cache
// across them (reading rows and index nodes written by earlier transactions of the same
// Write), leave exactly the index a single load of the final rows builds: the stored
// index is a function of the entries alone.
func TestMultiTxnWritesMatchRebuild(t *testing.T) {
	s := openT(t, t.TempDir(), Options{memTableSize: 1 << 20}) // transactions of ~150 KiB
	rng := rand.New(rand.NewPCG(7, 7))
	final := map[string][2]any{} // key -> value, version
	for round := range 4 {
		err := s.Write(func(w *Writer) error {
			for range 6000 {
				key := fmt.Sprintf("k%05d", rng.IntN(5000))
				if rng.IntN(5) == 0 {
					delete(final, key)
					if err := w.Delete([]byte(key)); err != nil {
						return err
					}
					continue
				}
				v := bytes.Repeat([]byte{byte(rng.IntN(256))}, rng.IntN(120))
				ver := uint64(round*10 + rng.IntN(10))
				final[key] = [2]any{v, ver}
				if err := w.Put([]byte(key), v, ver, 0); err != nil {
					return err
				}
			}
			return nil
		})
		must(t, err)
		checkRoot(t, s, 0)
	}
	checkMatchesRebuild(t, s, final)
}

// checkMatchesRebuild checks that s's index is exactly what one load of the rows in final
// (key -> value, version) into a new store builds.
func checkMatchesRebuild(t *testing.T, s *Store, final map[string][2]any) {
	t.Helper()
	fresh := openT(t, t.TempDir(), Options{})
	must(t, fresh.Write(func(w *Writer) error {
		for k, v := range final {
			if err := w.Put([]byte(k), v[0].([]byte), v[1].(uint64), 0); err != nil {
				return err
			}
		}
		return nil
	}))
	got, want := indexDump(t, s), indexDump(t, fresh)
	if len(got) != len(want) {
		t.Fatalf("index of %d keys after the writes, %d when rebuilt", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("index key %d differs:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
}

// TestSmallWritesMatchRebuild: many small writes (Write, Put, Delete, Apply, and Writes
// that fail), each reusing the index cache the one before kept, some of them after the
// cache was trimmed to its upper levels, leave exactly the index a single load of the
// final rows builds.
func TestSmallWritesMatchRebuild(t *testing.T) {
	for _, small := range []bool{false, true} {
		t.Run(fmt.Sprintf("trimmed=%v", small), func(t *testing.T) {
			if small {
				n := maxCacheNodes
				maxCacheNodes = 300
				t.Cleanup(func() { maxCacheNodes = n })
			}
			s := openT(t, t.TempDir(), Options{})
			rng := rand.New(rand.NewPCG(8, 8))
			final := map[string][2]any{} // key -> value, version
			put := func(key string, ver uint64) []byte {
				v := bytes.Repeat([]byte{byte(rng.IntN(256))}, rng.IntN(60))
				final[key] = [2]any{v, ver}
				return v
			}
			errFail := errors.New("fail")
			for i := range 1500 {
				key := fmt.Sprintf("k%04d", rng.IntN(800))
				ver := uint64(i)
				switch rng.IntN(6) {
				case 0:
					must(t, s.Put([]byte(key), put(key, ver), ver, 0))
				case 1:
					delete(final, key)
					must(t, s.Delete([]byte(key)))
				case 2: // a Write that fails writes nothing
					err := s.Write(func(w *Writer) error {
						if err := w.Put([]byte(key), []byte("lost"), ver, 0); err != nil {
							return err
						}
						return errFail
					})
					if !errors.Is(err, errFail) {
						t.Fatalf("failed Write returned %v", err)
					}
				case 3:
					cur, ok, err := s.Get([]byte(key))
					must(t, err)
					c := reconcile.Change{Key: []byte(key), Put: &reconcile.Row{Key: []byte(key), Version: ver, Value: put(key, ver)}}
					if ok {
						e := merkle.Entry{Key: cur.Key, Version: cur.Version, ValueHash: merkle.ValueHash(cur.Value)}
						c.Expect = &e
					}
					out, err := s.Apply(context.Background(), 0, []reconcile.Change{c})
					must(t, err)
					if out[0] != reconcile.Applied {
						t.Fatalf("apply of %s: %v", key, out[0])
					}
				default:
					must(t, s.Write(func(w *Writer) error {
						for j := range 1 + rng.IntN(40) {
							k := fmt.Sprintf("k%04d", rng.IntN(800))
							if err := w.Put([]byte(k), put(k, ver+uint64(j%3)), ver+uint64(j%3), 0); err != nil {
								return err
							}
						}
						return nil
					}))
				}
			}
			checkRoot(t, s, 0)
			checkMatchesRebuild(t, s, final)
		})
	}
}
