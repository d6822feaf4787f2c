package badger

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/reconcile-dev/reconcile/reconcile"
)

// waitFolded waits until the background folder has emptied the log.
func waitFolded(t *testing.T, s *Store) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for s.logPending.Load() != 0 || !logEmptyT(t, s) {
		if time.Now().After(deadline) {
			t.Fatalf("the background folder left %d changes in the log", s.logPending.Load())
		}
		time.Sleep(time.Millisecond)
	}
}

// verifyT checks the index against the rows (and the expected row count).
func verifyT(t *testing.T, s *Store, rows int) {
	t.Helper()
	c, err := s.VerifyIndex(context.Background())
	if err != nil || !c.OK() || c.Rows != int64(rows) {
		t.Fatalf("VerifyIndex = %+v, %v; want OK with %d rows", c, err, rows)
	}
	checkRoot(t, s, 0)
}

// TestBackgroundFolder: small writes that never fill the log are folded into the index by
// the background folder, with no reader or large write asking for it.
func TestBackgroundFolder(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	const n = foldStartOps + 500 // inserts: one change each, well under logMaxOps
	for i := range n {
		must(t, s.Put(fmt.Appendf(nil, "k%05d", i), []byte("v"), uint64(i), 0))
	}
	deadline := time.Now().Add(30 * time.Second)
	for s.indexGen.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no background fold after %d logged changes", n)
		}
		time.Sleep(time.Millisecond)
	}
	verifyT(t, s, n)
}

// fillLogHeld writes n one-row inserts to the log while the test holds imu, so that the
// background folder, kicked, waits for the caller's unlock.
func fillLogHeld(t *testing.T, s *Store, n int) {
	t.Helper()
	s.imu.Lock()
	for i := range n {
		if err := s.Put(fmt.Appendf(nil, "f%05d", i), []byte("v"), uint64(i), 0); err != nil {
			s.imu.Unlock()
			t.Fatal(err)
		}
	}
}

// foldBehind lets the folder, waiting on imu, fold the log, and then drops the kept index
// cache, so that a transaction begun before the fold reads the index keys the fold
// rewrote from Badger, as they were when it began, unless it is redone.
func foldBehind(t *testing.T, s *Store) {
	s.imu.Unlock()
	waitFolded(t, s)
	s.imu.Lock()
	s.kept = nil
	s.imu.Unlock()
}

// TestWriteRedoneAfterBackgroundFold: a Write that begins as a small, logged one and then
// grows too big to log takes the index; a fold committed since its transaction began
// makes it redo that transaction, and the index ends equal to the rows.
func TestWriteRedoneAfterBackgroundFold(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	fillLogHeld(t, s, foldStartOps)
	gen := s.indexGen.Load()
	must(t, s.Write(func(w *Writer) error {
		// The first row begins the transaction; then the folder folds the log.
		if err := w.Put([]byte("a0000"), []byte("v"), 5000, 0); err != nil {
			return err
		}
		foldBehind(t, s)
		for i := 1; i < logTxnOps+100; i++ {
			if err := w.Put(fmt.Appendf(nil, "a%04d", i), []byte("v"), uint64(5000+i%7), 0); err != nil {
				return err
			}
		}
		return nil
	}))
	if s.indexGen.Load() == gen {
		t.Fatalf("the folder did not fold while the Write ran")
	}
	verifyT(t, s, foldStartOps+logTxnOps+100)
}

// TestLoggedWriteTooBigForLogAfterFold: a one-transaction Write whose log record cannot
// fit the log (keys of 60,000 bytes) takes the index at commit, redoing its transaction
// after a fold that committed since it began.
func TestLoggedWriteTooBigForLogAfterFold(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	fillLogHeld(t, s, foldStartOps)
	must(t, s.Write(func(w *Writer) error {
		for i := range 40 {
			key := append(bytes.Repeat([]byte{'b'}, MaxKeyBytes-2), byte('0'+i/10), byte('0'+i%10))
			if err := w.Put(key, []byte("v"), uint64(7000+i), 0); err != nil {
				return err
			}
			if i == 0 {
				foldBehind(t, s)
			}
		}
		return nil
	}))
	verifyT(t, s, foldStartOps+40)
}

// hookCtx calls fn the first time Err is asked: Apply asks once its transaction has begun.
type hookCtx struct {
	context.Context
	once sync.Once
	fn   func()
}

func (c *hookCtx) Err() error {
	c.once.Do(c.fn)
	return c.Context.Err()
}

// TestApplyRedoneAfterBackgroundFold: an Apply whose changes cannot go to the log (their
// record passes logMaxBytes) takes the index at commit, and redoes its transaction after a
// fold that committed since it began.
func TestApplyRedoneAfterBackgroundFold(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	fillLogHeld(t, s, foldStartOps)
	var changes []reconcile.Change
	for i := range 40 {
		key := append(bytes.Repeat([]byte{'c'}, MaxKeyBytes-2), byte('0'+i/10), byte('0'+i%10))
		changes = append(changes, reconcile.Change{Key: key, Put: &reconcile.Row{Key: key, Value: []byte("v"), Version: uint64(9000 + i)}})
	}
	ctx := &hookCtx{Context: context.Background(), fn: func() { foldBehind(t, s) }}
	out, err := s.Apply(ctx, 0, changes)
	must(t, err)
	for i, o := range out {
		if o != reconcile.Applied {
			t.Fatalf("change %d: %v", i, o)
		}
	}
	verifyT(t, s, foldStartOps+40)
}

// TestFolderUnderLoad runs small writes, large Writes, snapshots and index checks at once
// with the background folder: the index ends equal to the rows, and every snapshot is
// consistent (VerifyIndex checks its own).
func TestFolderUnderLoad(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	run := func(fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(); err != nil {
				errs <- err
			}
		}()
	}
	for g := range 2 { // small writers: updates, inserts and deletes of their own keys
		run(func() error {
			for i := range 3000 {
				k := fmt.Appendf(nil, "s%d-%04d", g, i%700)
				var err error
				if i%9 == 8 {
					err = s.Delete(k)
				} else {
					err = s.Put(k, fmt.Appendf(nil, "v%d", i), uint64(i), 0)
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
	}
	run(func() error { // large Writes, each past logTxnOps
		for r := range 4 {
			err := s.Write(func(w *Writer) error {
				for i := range 1500 {
					if err := w.Put(fmt.Appendf(nil, "L%05d", (r*700+i)%3000), []byte("big"), uint64(r*10+i%3), 0); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	run(func() error { // readers
		for range 20 {
			c, err := s.VerifyIndex(ctx)
			if err != nil {
				return err
			}
			if !c.OK() {
				return fmt.Errorf("VerifyIndex during writes: %+v", c)
			}
		}
		return nil
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	c, err := s.VerifyIndex(ctx)
	if err != nil || !c.OK() {
		t.Fatalf("VerifyIndex = %+v, %v", c, err)
	}
	checkRoot(t, s, 0)
}
