package badger

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/reconcile-dev/reconcile/merkle"
)

// TestVerifyAndRebuildIndex: VerifyIndex passes a store written through the API (both
// orderings, with expiring rows and deletes) and reports each kind of damage done behind
// the API's back; RebuildIndex repairs every one of them, leaving the index a new store of
// the same rows would hold.
func TestVerifyAndRebuildIndex(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UnixNano()
	for _, o := range []merkle.Ordering{merkle.VersionOrder, merkle.KeyOrder} {
		fill := func(s *Store) {
			writeExpiring(t, s, 600, now, "a")
			writeExpiring(t, s, 200, now, "b")
			must(t, s.Delete([]byte("k0007")))
			must(t, s.Delete([]byte("k0010")))
		}
		fresh := openT(t, t.TempDir(), Options{Ordering: o})
		fill(fresh)
		want := indexDump(t, fresh)
		damage := map[string]func(txn *bdg.Txn) error{
			"none": nil,
			"index entry deleted": func(txn *bdg.Txn) error {
				return deleteNth(txn, []byte{prefixIndex, 0}, 5)
			},
			"index node deleted": func(txn *bdg.Txn) error {
				return deleteNth(txn, []byte{prefixIndex, 1, 1}, 2)
			},
			"row changed behind the index": func(txn *bdg.Txn) error {
				version := uint64(3)
				if o == merkle.KeyOrder {
					version = 0 // as key-ordered stores keep every row
				}
				return txn.Set(rowKey([]byte("k0003")), encodeRecord(version, 0, 0, []byte("changed")))
			},
			"row deleted behind the index": func(txn *bdg.Txn) error { return txn.Delete(rowKey([]byte("k0005"))) },
			"expiry key deleted": func(txn *bdg.Txn) error {
				return deleteNth(txn, []byte{prefixExpiry}, 3)
			},
			"stray expiry key": func(txn *bdg.Txn) error {
				return txn.Set(expiryKey(now, []byte("nobody")), nil)
			},
		}
		for name, f := range damage {
			t.Run(fmt.Sprintf("%s/%s", o, name), func(t *testing.T) {
				s := openT(t, t.TempDir(), Options{Ordering: o})
				fill(s)
				foldT(t, s) // the damage goes to the index itself
				if f != nil {
					must(t, s.db.Update(f))
				}
				c, err := s.VerifyIndex(ctx)
				must(t, err)
				if c.OK() != (f == nil) {
					t.Fatalf("VerifyIndex = %+v, OK %v", c, c.OK())
				}
				if f == nil {
					if c.Rows != 598 || c.Expiring != 598 || c.Index.Entries != 598 {
						t.Fatalf("VerifyIndex counted %d rows, %d expiring, %d entries; want 598 each", c.Rows, c.Expiring, c.Index.Entries)
					}
					return
				}
				n, err := s.RebuildIndex(ctx)
				must(t, err)
				if c, err := s.VerifyIndex(ctx); err != nil || !c.OK() {
					t.Fatalf("after RebuildIndex (%d rows): %+v, %v", n, c, err)
				}
				checkRoot(t, s, now)
				if name == "index entry deleted" || name == "index node deleted" || name == "expiry key deleted" {
					if got := indexDump(t, s); strings.Join(got, "\n") != strings.Join(want, "\n") {
						t.Fatalf("rebuilt index differs from a new store's")
					}
				}
				writeExpiring(t, s, 50, now, "c") // writes go on from the rebuilt index
				checkRoot(t, s, now)
			})
		}
	}
}

// deleteNth deletes the n-th key under prefix.
func deleteNth(txn *bdg.Txn, prefix []byte, n int) error {
	var key []byte
	err := txnIterate(txn, prefix, append(clone(prefix), 0xFF), false, func(k, _ []byte) bool {
		if n == 0 {
			key = clone(k)
			return false
		}
		n--
		return true
	})
	if err == nil && key == nil {
		err = fmt.Errorf("no key %d under %x", n, prefix)
	}
	if err != nil {
		return err
	}
	return txn.Delete(key)
}

// TestRebuildInterrupted: a store marked as being rebuilt (as a crash mid-rebuild leaves
// it, its index half gone) is refused read-only with what to do, and a writable open
// finishes the rebuild.
func TestRebuildInterrupted(t *testing.T) {
	dir := t.TempDir()
	now := time.Now().UnixNano()
	s := openT(t, dir, Options{})
	writeExpiring(t, s, 300, now, "a")
	want, err := s.Root(now)
	must(t, err)
	must(t, s.db.Update(func(txn *bdg.Txn) error { return txn.Set(metaRebuild, nil) }))
	must(t, s.db.DropPrefix([]byte{prefixIndex, 0}))
	must(t, s.Close())

	if _, err := Open(dir, Options{ReadOnly: true}); !errors.Is(err, ErrRebuildInterrupted) {
		t.Fatalf("read-only open of a store whose rebuild stopped: %v", err)
	}
	s = openT(t, dir, Options{})
	if got, err := s.Root(now); err != nil || got != want {
		t.Fatalf("after the writable open finished the rebuild: root %v, %v; want %v", got, err, want)
	}
	c, err := s.VerifyIndex(context.Background())
	if err != nil || !c.OK() {
		t.Fatalf("VerifyIndex after the rebuild: %+v, %v", c, err)
	}
	if stopped, err := s.rebuilding(); err != nil || stopped {
		t.Fatalf("the rebuild mark is still there: %v, %v", stopped, err)
	}
}

// endsAfter is a context whose Err is context.Canceled from its n+1st call on: a rebuild
// given it stops part way at a point the test chooses.
type endsAfter struct {
	context.Context
	n int
}

func (c *endsAfter) Err() error {
	if c.n--; c.n < 0 {
		return context.Canceled
	}
	return nil
}

// TestRebuildCanceled: a rebuild whose context ends part way returns an error that wraps
// ErrRebuildInterrupted and the context's, leaves the Store failed, and the next writable
// open finishes it; one whose context ended before it began changes nothing.
func TestRebuildCanceled(t *testing.T) {
	dir := t.TempDir()
	now := time.Now().UnixNano()
	s := openT(t, dir, Options{})
	writeExpiring(t, s, 10000, now, "a")
	want, err := s.Root(now)
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.RebuildIndex(ctx); !errors.Is(err, context.Canceled) || errors.Is(err, ErrRebuildInterrupted) || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("rebuild with its context ended: %v", err)
	}
	checkRoot(t, s, now)

	n, err := s.RebuildIndex(&endsAfter{context.Background(), 1}) // the first check, then one of eachRecord's
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrRebuildInterrupted) || n >= 10000 {
		t.Fatalf("rebuild cut short: %d rows, %v", n, err)
	}
	var failed *FailedError
	if _, err := s.Root(now); !errors.As(err, &failed) {
		t.Fatalf("the Store whose rebuild stopped still reads: %v", err)
	}
	s.Close()
	if _, err := Open(dir, Options{ReadOnly: true}); !errors.Is(err, ErrRebuildInterrupted) {
		t.Fatalf("read-only open after the rebuild stopped: %v", err)
	}
	s = openT(t, dir, Options{})
	if got, err := s.Root(now); err != nil || got != want {
		t.Fatalf("after the writable open finished the rebuild: root %v, %v; want %v", got, err, want)
	}
	checkRoot(t, s, now)
}

// TestRebuildManyTransactions: a rebuild too big for one transaction, for one cache and
// for one sorted run of entries builds the same index as a load of the same rows.
func TestRebuildManyTransactions(t *testing.T) {
	n, r := maxCacheNodes, rebuildRun
	maxCacheNodes, rebuildRun = 2000, 700
	t.Cleanup(func() { maxCacheNodes, rebuildRun = n, r })
	now := time.Now().UnixNano()
	s := openT(t, t.TempDir(), Options{memTableSize: 1 << 20})
	writeExpiring(t, s, 5000, now, "a")
	want := indexDump(t, s)
	must(t, s.db.Update(func(txn *bdg.Txn) error { return deleteNth(txn, []byte{prefixIndex, 0}, 100) }))
	rows, err := s.RebuildIndex(context.Background())
	must(t, err)
	if rows != 5000 {
		t.Fatalf("rebuilt %d rows, want 5000", rows)
	}
	if got := indexDump(t, s); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("rebuilt index differs from the one the writes built")
	}
	checkRoot(t, s, now)
}

// TestRebuildWaitsForSnapshots: a rebuild waits for the open snapshot, which reads the
// whole index meanwhile, and the snapshot's root is what it was.
func TestRebuildWaitsForSnapshots(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UnixNano()
	s := openT(t, t.TempDir(), Options{})
	writeExpiring(t, s, 400, now, "a")
	sn, err := s.Open(ctx, now)
	must(t, err)
	done := make(chan error, 1)
	go func() { _, err := s.RebuildIndex(ctx); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("the rebuild did not wait for the snapshot: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	ds, err := sn.Digests(ctx, nil, nil, nil)
	must(t, err)
	if ds[0] != sn.Info().Root {
		t.Fatalf("the snapshot read %v during the wait, want its root %v", ds[0], sn.Info().Root)
	}
	must(t, sn.Close())
	must(t, sn.Close()) // a second Close is harmless
	must(t, <-done)
	checkRoot(t, s, now)
}

// TestRebuildSortsRuns: rows whose versions do not follow their keys, rebuilt in sorted
// runs of a few hundred entries (whose positions interleave), give the index the writes
// built, in both orderings.
func TestRebuildSortsRuns(t *testing.T) {
	r := rebuildRun
	rebuildRun = 300
	t.Cleanup(func() { rebuildRun = r })
	for _, o := range []merkle.Ordering{merkle.VersionOrder, merkle.KeyOrder} {
		s := openT(t, t.TempDir(), Options{Ordering: o, memTableSize: 1 << 20})
		rng := rand.New(rand.NewPCG(9, uint64(o)))
		must(t, s.Write(func(w *Writer) error {
			for i := range 3000 {
				v := uint64(rng.IntN(400)) // many rows share a version
				if err := w.Put(fmt.Appendf(nil, "k%05d", rng.IntN(1<<16)), fmt.Appendf(nil, "v%d", i), v, 0); err != nil {
					return err
				}
			}
			return nil
		}))
		want := indexDump(t, s)
		_, err := s.RebuildIndex(context.Background())
		must(t, err)
		if got := indexDump(t, s); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("%s: the rebuilt index differs from the one the writes built", o)
		}
		checkRoot(t, s, 0)
	}
}
