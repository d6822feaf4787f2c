package badger

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	bdg "github.com/dgraph-io/badger/v4"
)

// writeExpiring writes n rows, every other one expired an hour before now (the expiry
// index in reverse key order), the rest expiring an hour after.
func writeExpiring(t *testing.T, s *Store, n int, now int64, value string) {
	t.Helper()
	must(t, s.Write(func(w *Writer) error {
		for i := range n {
			exp := now + int64(time.Hour)
			if i%2 == 0 {
				exp = now - int64(time.Hour) - int64(i)
			}
			if err := w.Put(fmt.Appendf(nil, "k%04d", i), []byte(value), uint64(i), exp); err != nil {
				return err
			}
		}
		return nil
	}))
}

// clearExpiryValues empties every expiry key's value, as format 1 wrote them.
func clearExpiryValues(txn *bdg.Txn) error {
	var keys [][]byte
	err := txnIterate(txn, []byte{prefixExpiry}, []byte{prefixExpiry + 1}, false, func(k, _ []byte) bool {
		keys = append(keys, clone(k))
		return true
	})
	for _, k := range keys {
		if err == nil {
			err = txn.Set(k, nil)
		}
	}
	return err
}

func metaBytes(t *testing.T, s *Store) []byte {
	t.Helper()
	var v []byte
	must(t, s.db.View(func(txn *bdg.Txn) error {
		var err error
		v, _, err = txnGet(txn, metaOrdering)
		return err
	}))
	return v
}

// TestFormat1Upgrade: a store as format 1 left it (the ordering byte alone, empty expiry
// values) reads right read-only and is not changed; a writable open upgrades it; rows
// written after that carry their entries in the expiry index, the rest are still read
// from their rows; the root is right at every step.
func TestFormat1Upgrade(t *testing.T) {
	dir := t.TempDir()
	now := time.Now().UnixNano()
	s := openT(t, dir, Options{})
	writeExpiring(t, s, 400, now, "a")
	if m := metaBytes(t, s); len(m) != 2 || m[1] != StoreFormat {
		t.Fatalf("new store's ordering metadata = %x, want the ordering and format %d", m, StoreFormat)
	}
	// Make it format 1.
	must(t, s.db.Update(func(txn *bdg.Txn) error {
		err := clearExpiryValues(txn)
		if err == nil {
			err = txn.Set(metaOrdering, metaBytes(t, s)[:1])
		}
		return err
	}))
	want, err := s.Root(now)
	must(t, err)
	must(t, s.Close())

	ro, err := Open(dir, Options{ReadOnly: true})
	must(t, err)
	if got, err := ro.Root(now); err != nil || got != want {
		t.Fatalf("format-1 store read-only: root %v, %v; want %v", got, err, want)
	}
	if m := metaBytes(t, ro); len(m) != 1 {
		t.Fatalf("a read-only open changed the metadata to %x", m)
	}
	must(t, ro.Close())

	s = openT(t, dir, Options{})
	if m := metaBytes(t, s); len(m) != 2 || m[1] != StoreFormat {
		t.Fatalf("after a writable open the ordering metadata is %x, want format %d", m, StoreFormat)
	}
	checkRoot(t, s, now)
	writeExpiring(t, s, 200, now, "b") // the first half again, same expiries
	checkRoot(t, s, now)
	sn, err := s.openSnapshot(now)
	must(t, err)
	defer sn.Close()
	if got, _ := sn.expired.Digest(nil, nil); got.Count != 200 {
		t.Fatalf("snapshot subtracts %d expired entries, want 200", got.Count)
	}
}

// TestExpiredFromIndex: in a format-2 store a snapshot takes the entries of expired rows
// from the expiry index, kept current when a row changes at the same expiry, and reads
// none of their rows: with those rows' records broken it still opens, with the same root.
func TestExpiredFromIndex(t *testing.T) {
	now := time.Now().UnixNano()
	s := openT(t, t.TempDir(), Options{})
	writeExpiring(t, s, 300, now, "v")
	writeExpiring(t, s, 300, now, "w") // new values at the same expiries
	checkRoot(t, s, now)
	want, err := s.Root(now)
	must(t, err)
	must(t, s.db.Update(func(txn *bdg.Txn) error {
		for i := 0; i < 300; i += 2 {
			if err := txn.Set(rowKey(fmt.Appendf(nil, "k%04d", i)), []byte{1}); err != nil {
				return err
			}
		}
		return nil
	}))
	sn, err := s.Open(context.Background(), now)
	if err != nil {
		t.Fatalf("open with the expired rows' records broken: %v", err)
	}
	defer sn.Close()
	if got := sn.Info().Root; got != want {
		t.Fatalf("root %v, want %v", got, want)
	}
}

// TestNewerFormatRefused: a store of a later format is refused with a message that says
// what to do.
func TestNewerFormatRefused(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	must(t, s.db.Update(func(txn *bdg.Txn) error {
		return txn.Set(metaOrdering, []byte{metaBytes(t, s)[0], StoreFormat + 1})
	}))
	must(t, s.Close())
	_, err := Open(dir, Options{})
	if err == nil || !strings.Contains(err.Error(), "open it with a newer reconcile") {
		t.Fatalf("open of a format-%d store: %v", StoreFormat+1, err)
	}
}

// BenchmarkOpenExpired opens snapshots of a store of 1M rows of which 100k are expired and
// not purged, with their entries in the expiry index (format 2) and without (format 1:
// their rows are read, in key order).
//
//	go test -run '^$' -bench BenchmarkOpenExpired -benchtime 5x ./adapters/badger
func BenchmarkOpenExpired(b *testing.B) {
	const rows, expired = 1_000_000, 100_000
	now := time.Now().UnixNano()
	dir := b.TempDir()
	s, err := Open(dir, Options{Create: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	value := make([]byte, 64)
	err = s.Write(func(w *Writer) error {
		for i := range rows {
			exp := int64(0)
			if i%(rows/expired) == 0 {
				exp = now - int64(time.Hour) - int64(i*7919%rows) // expiry order unlike key order
			}
			if err := w.Put(fmt.Appendf(nil, "key%08d", i), value, uint64(i), exp); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Compact(); err != nil {
		b.Fatal(err)
	}
	open := func(b *testing.B) {
		for b.Loop() {
			sn, err := s.Open(context.Background(), now)
			if err != nil {
				b.Fatal(err)
			}
			sn.Close()
		}
	}
	b.Run("format=2", open)
	if err := s.db.Update(clearExpiryValues); err != nil {
		b.Fatal(err)
	}
	b.Run("format=1", open)
}
