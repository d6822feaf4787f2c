package badger

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	bdg "github.com/dgraph-io/badger/v4"
)

// indexDump is every index key and value of s, in order.
func indexDump(t *testing.T, s *Store) []string {
	t.Helper()
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
