package badger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/reconcile-dev/reconcile/merkle"
)

// TestIndexLog: small writes go to the index log and a snapshot folds them; the log folds
// itself before it passes its bounds; a big Write updates the index directly, after
// folding the log; every step ends with the index equal to the rows.
func TestIndexLog(t *testing.T) {
	ctx := context.Background()
	s := openT(t, t.TempDir(), Options{foregroundFolds: true})
	must(t, s.Put([]byte("a"), []byte("1"), 1, 0))
	must(t, s.Put([]byte("a"), []byte("2"), 2, 0))
	must(t, s.Delete([]byte("a")))
	must(t, s.Put([]byte("b"), []byte("1"), 3, 0))
	if s.log.ops != 5 || s.logPending.Load() != 5 { // an update logs a remove and an insert
		t.Fatalf("log holds %d ops (pending %d) after 4 small writes, want 5", s.log.ops, s.logPending.Load())
	}
	checkRoot(t, s, 0) // a snapshot: folds
	if s.log.ops != 0 || s.log.bytes != 0 {
		t.Fatalf("log holds %d ops, %d bytes after a snapshot", s.log.ops, s.log.bytes)
	}
	if empty := logEmptyT(t, s); !empty {
		t.Fatalf("log records left after the fold")
	}

	// Many one-row writes: the log never passes its bounds.
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 3 * logMaxOps {
		k := fmt.Appendf(nil, "k%04d", rng.IntN(2000))
		var err error
		if i%5 == 4 {
			err = s.Delete(k)
		} else {
			err = s.Put(k, fmt.Appendf(nil, "v%d", i), uint64(10+i%50), 0)
		}
		must(t, err)
		if s.log.ops > logMaxOps || s.log.bytes > logMaxBytes {
			t.Fatalf("log holds %d ops, %d bytes", s.log.ops, s.log.bytes)
		}
	}
	if s.log.ops == 0 {
		t.Fatalf("no small write went to the log")
	}
	// A Write of many transactions folds the log, then keeps the index current itself.
	s.maxTxnCount = 300
	must(t, s.Write(func(w *Writer) error {
		for i := range 2000 {
			if err := w.Put(fmt.Appendf(nil, "k%04d", i), []byte("big"), 99, 0); err != nil {
				return err
			}
		}
		return nil
	}))
	if s.log.ops != 0 {
		t.Fatalf("a Write of many transactions left %d ops in the log", s.log.ops)
	}
	c, err := s.VerifyIndex(ctx)
	if err != nil || !c.OK() {
		t.Fatalf("VerifyIndex = %+v, %v", c, err)
	}
	checkRoot(t, s, 0)
}

func logEmptyT(t *testing.T, s *Store) bool {
	t.Helper()
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	empty, err := logEmpty(txn, 0)
	must(t, err)
	return empty
}

// TestIndexLogAfterCrash: a store closed without folding its log (as a crash leaves it) is
// refused read-only, with a message that says what to do, and a writable open folds it.
func TestIndexLogAfterCrash(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{Create: true, foregroundFolds: true})
	must(t, err)
	for i := range 50 {
		must(t, s.Put(fmt.Appendf(nil, "k%02d", i), []byte("v"), uint64(i), 0))
	}
	must(t, s.Delete([]byte("k07")))
	if s.log.ops == 0 {
		t.Fatalf("the writes did not go to the log")
	}
	must(t, s.db.Close()) // no fold: what a crash leaves

	if _, err := Open(dir, Options{ReadOnly: true}); !errors.Is(err, ErrNotClosedCleanly) {
		t.Fatalf("read-only open of a store with an unfolded log: %v", err)
	}
	s, err = Open(dir, Options{})
	must(t, err)
	defer s.Close()
	if s.log.ops != 0 || !logEmptyT(t, s) {
		t.Fatalf("writable open left the log unfolded")
	}
	c, err := s.VerifyIndex(context.Background())
	if err != nil || !c.OK() || c.Rows != 49 {
		t.Fatalf("VerifyIndex = %+v, %v", c, err)
	}
	checkRoot(t, s, 0)
	// Sequence numbers go on past the folded records.
	must(t, s.Put([]byte("after"), []byte("v"), 100, 0))
	checkRoot(t, s, 0)
}

// TestIndexLogConcurrentSnapshots: snapshots taken while small writes go on each see an
// index equal to their rows (VerifyIndex checks exactly that, in one snapshot).
func TestIndexLogConcurrentSnapshots(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	ctx := context.Background()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 2)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			k := fmt.Appendf(nil, "k%03d", i%300)
			var err error
			if i%7 == 6 {
				err = s.Delete(k)
			} else {
				err = s.Put(k, fmt.Appendf(nil, "%d", i), uint64(i), 0)
			}
			if err != nil {
				errs <- err
				return
			}
		}
	}()
	for range 40 {
		c, err := s.VerifyIndex(ctx)
		if err == nil && !c.OK() {
			err = fmt.Errorf("VerifyIndex during writes: %+v", c)
		}
		if err != nil {
			errs <- err
			break
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	checkRoot(t, s, 0)
}

// TestLogRecordRoundTrip: a log record decodes to the ops encoded, and every truncation
// of it is refused.
func TestLogRecordRoundTrip(t *testing.T) {
	ops := []merkle.BatchOp{
		{Entry: merkle.Entry{Key: []byte("a"), Version: 7, ExpiresAt: -3, Flags: 1, ValueHash: merkle.ValueHash([]byte("x"))}, Known: true},
		{Entry: merkle.Entry{Key: nil, Version: 1 << 63}, Remove: true},
		{Entry: merkle.Entry{Key: bytes.Repeat([]byte{0xff}, 300)}, Remove: true, Known: true},
	}
	rec := encodeLogRecord(ops)
	got, err := decodeLogRecord(nil, rec)
	must(t, err)
	if len(got) != len(ops) {
		t.Fatalf("decoded %d ops, want %d", len(got), len(ops))
	}
	for i := range ops {
		a, b := ops[i], got[i]
		if a.Remove != b.Remove || a.Known != b.Known || !entriesEqual(a.Entry, b.Entry) {
			t.Fatalf("op %d: decoded %+v, want %+v", i, b, a)
		}
	}
	for n := range len(rec) {
		if _, err := decodeLogRecord(nil, rec[:n]); err == nil {
			t.Fatalf("a record cut to %d of %d bytes decoded", n, len(rec))
		}
	}
	if _, err := decodeLogRecord(nil, append(rec, 0)); err == nil {
		t.Fatalf("a record with a byte after its ops decoded")
	}
}

// FuzzLogRecord: decoding arbitrary bytes never panics, and what decodes encodes to a record
// that decodes to the same ops (the bytes may differ: a length may be a longer uvarint).
func FuzzLogRecord(f *testing.F) {
	f.Add(encodeLogRecord([]merkle.BatchOp{{Entry: merkle.Entry{Key: []byte("k"), Version: 3}, Known: true}}))
	f.Add([]byte{0})
	f.Add([]byte{2, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		ops, err := decodeLogRecord(nil, b)
		if err != nil {
			return
		}
		again, err := decodeLogRecord(nil, encodeLogRecord(ops))
		if err != nil || len(again) != len(ops) {
			t.Fatalf("%d ops re-encoded decode to %d ops, %v", len(ops), len(again), err)
		}
		for i := range ops {
			a, b := ops[i], again[i]
			if a.Remove != b.Remove || a.Known != b.Known || !entriesEqual(a.Entry, b.Entry) {
				t.Fatalf("op %d: %+v re-encoded decodes to %+v", i, a, b)
			}
		}
	})
}

// TestSnapshotDuringLongWrite: a snapshot asked for while the log holds changes and a long
// Write holds the writer lock opens once that Write's first commit has folded the log,
// not when the Write ends.
func TestSnapshotDuringLongWrite(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	must(t, s.Put([]byte("small"), []byte("v"), 1, 0))
	if s.logPending.Load() == 0 {
		t.Fatalf("the small write did not go to the log")
	}
	s.maxTxnCount = 300
	started, proceed, release := make(chan struct{}), make(chan struct{}), make(chan struct{})
	wrote := make(chan error, 1)
	go func() {
		wrote <- s.Write(func(w *Writer) error {
			close(started)
			<-proceed
			for i := range 1000 {
				if err := w.Put(fmt.Appendf(nil, "k%04d", i), []byte("v"), 2, 0); err != nil {
					return err
				}
			}
			<-release // the Write holds the lock until released
			return nil
		})
	}()
	<-started
	opened := make(chan error, 1)
	go func() {
		snap, err := s.Open(context.Background(), 0)
		if err == nil {
			// The logged row is in the index, and the index lists what it counts.
			var es []merkle.Entry
			es, err = snap.Entries(context.Background(), nil, nil, 0)
			if n := snap.Info().Root.Count; err == nil && (n < 1 || uint64(len(es)) != n) {
				err = fmt.Errorf("snapshot counts %d rows and lists %d", n, len(es))
			}
			snap.Close()
		}
		opened <- err
	}()
	close(proceed)
	select {
	case err := <-opened:
		must(t, err)
	case err := <-wrote:
		t.Fatalf("the Write ended (%v) before the snapshot opened", err)
	case <-time.After(30 * time.Second):
		t.Fatalf("the snapshot waited for the whole Write")
	}
	close(release)
	must(t, <-wrote)
	checkRoot(t, s, 0)
}

// TestFoldingSnapshotsAndRebuild runs snapshots that must fold the index log (a small write
// precedes each) against RebuildIndex, which takes the writer lock and waits for open
// snapshots: neither may wait for the other forever.
func TestFoldingSnapshotsAndRebuild(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	ctx := context.Background()
	for i := range 200 {
		must(t, s.Put(fmt.Appendf(nil, "k%03d", i), []byte("v"), uint64(i), 0))
	}
	done := make(chan error, 3)
	go func() {
		for i := range 30 {
			if _, err := s.RebuildIndex(ctx); err != nil {
				done <- err
				return
			}
			if err := s.Put(fmt.Appendf(nil, "r%03d", i), []byte("v"), uint64(1000+i), 0); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for g := range 2 {
		go func() {
			for i := range 200 {
				if err := s.Put(fmt.Appendf(nil, "g%d-%03d", g, i), []byte("v"), uint64(2000+i), 0); err != nil {
					done <- err
					return
				}
				var err error
				if i%2 == 0 {
					var snap interface{ Close() error }
					if snap, err = s.Open(ctx, 0); err == nil {
						err = snap.Close()
					}
				} else {
					_, err = s.VerifyIndex(ctx)
				}
				if err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	timeout := time.After(60 * time.Second)
	for range 3 {
		select {
		case err := <-done:
			must(t, err)
		case <-timeout:
			t.Fatalf("snapshots and RebuildIndex deadlocked")
		}
	}
	checkRoot(t, s, 0)
}

// TestLoggedWriteTooBig: a Write small enough to log its index changes whose transaction,
// log record included, is too big for Badger is redone in halves, each logging its own
// changes, and the index ends equal to the rows.
func TestLoggedWriteTooBig(t *testing.T) {
	s := openT(t, t.TempDir(), Options{memTableSize: 2 << 20, foregroundFolds: true})
	s.maxTxnBytes, s.maxTxnCount = 8*s.maxTxnBytes, 8*s.maxTxnCount // Badger refuses first
	value := bytes.Repeat([]byte{'v'}, 600)
	must(t, s.Write(func(w *Writer) error {
		for i := range 900 {
			if err := w.Put(fmt.Appendf(nil, "k%04d", i), value, uint64(i), 0); err != nil {
				return err
			}
		}
		return nil
	}))
	if s.log.ops != 900 || s.log.next < 2 {
		t.Fatalf("the log holds %d changes in %d records; want 900 in two or more (the halves)", s.log.ops, s.log.next)
	}
	c, err := s.VerifyIndex(context.Background())
	if err != nil || !c.OK() || c.Rows != 900 {
		t.Fatalf("VerifyIndex = %+v, %v", c, err)
	}
	checkRoot(t, s, 0)
}

// TestCorruptIndexLog: a store whose index log holds a record that does not decode still
// opens writable, every read of its index says how to repair it, and RebuildIndex (what
// `reconcile index install` runs) repairs it.
func TestCorruptIndexLog(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{Create: true, foregroundFolds: true})
	must(t, err)
	for i := range 20 {
		must(t, s.Put(fmt.Appendf(nil, "k%02d", i), []byte("v"), uint64(i), 0))
	}
	must(t, s.db.Update(func(txn *bdg.Txn) error { return txn.Set(logKey(s.log.next), []byte{5}) }))
	must(t, s.db.Close()) // no fold, as a crash leaves it

	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatalf("a writable open of a store with a corrupt index log: %v", err)
	}
	defer s.Close()
	if _, err := s.VerifyIndex(context.Background()); err == nil || !strings.Contains(err.Error(), "reconcile index install") {
		t.Fatalf("VerifyIndex over a corrupt index log: %v", err)
	}
	if _, err := s.RebuildIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	c, err := s.VerifyIndex(context.Background())
	if err != nil || !c.OK() || c.Rows != 20 {
		t.Fatalf("after RebuildIndex: %+v, %v", c, err)
	}
	must(t, s.Put([]byte("after"), []byte("v"), 100, 0))
	checkRoot(t, s, 0)
}
