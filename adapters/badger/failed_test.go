package badger

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/reconcile-dev/reconcile/reconcile"
)

// TestDirectoryRemovedWhileOpen removes a store's directory while it is open and goes on
// writing, as a `run` job whose target an operator deleted would: Badger cannot create the
// next memtable's file, after which any read of its would panic and its close would retry
// a flush for ever. The Store must instead fail every call with a *FailedError (which a
// session takes for reconcile.ErrEndpointFailed) and Close must return.
func TestDirectoryRemovedWhileOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s, err := Open(dir, Options{Create: true, memTableSize: 1 << 20})
	must(t, err)
	value := make([]byte, 1000)
	put := func(i int) error {
		return s.Write(func(w *Writer) error {
			for j := range 100 {
				if err := w.Put(fmt.Appendf(nil, "k%08d", i*100+j), value, uint64(i*100+j+1), 0); err != nil {
					return err
				}
			}
			return nil
		})
	}
	must(t, put(0))
	must(t, os.RemoveAll(dir))

	var werr error
	for i := 1; i < 1000 && werr == nil; i++ {
		werr = put(i)
	}
	var f *FailedError
	if !errors.As(werr, &f) || !errors.Is(werr, reconcile.ErrEndpointFailed) {
		t.Fatalf("writes into a removed directory: got %v, want a *FailedError", werr)
	}
	// Every call now says so, rather than panicking inside Badger.
	if _, _, err := s.Get([]byte("k00000001")); !errors.As(err, &f) {
		t.Errorf("Get after the failure: %v", err)
	}
	if _, err := s.Open(context.Background(), time.Now().UnixNano()); !errors.As(err, &f) {
		t.Errorf("Open after the failure: %v", err)
	}
	_, err = s.Apply(context.Background(), time.Now().UnixNano(), []reconcile.Change{{Key: []byte("x"), Put: &reconcile.Row{Key: []byte("x"), Version: 1}}})
	if !errors.Is(err, reconcile.ErrEndpointFailed) {
		t.Errorf("Apply after the failure: %v", err)
	}

	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err == nil {
			t.Error("Close of a store whose directory was removed: no error")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close of a store whose directory was removed did not return in 30s")
	}
}

// recordLog is a bdg.Logger that keeps its lines.
type recordLog struct{ lines []string }

func (r *recordLog) Errorf(f string, a ...any) { r.lines = append(r.lines, "E "+fmt.Sprintf(f, a...)) }
func (r *recordLog) Warningf(f string, a ...any) {
	r.lines = append(r.lines, "W "+fmt.Sprintf(f, a...))
}
func (r *recordLog) Infof(f string, a ...any)  { r.lines = append(r.lines, "I "+fmt.Sprintf(f, a...)) }
func (r *recordLog) Debugf(f string, a ...any) { r.lines = append(r.lines, "D "+fmt.Sprintf(f, a...)) }

// TestFlushWatch: the logger a Store gives Badger passes every line on to Options.Logger
// and counts the memtable flushes Badger reports failing (Close gives up after three).
func TestFlushWatch(t *testing.T) {
	rec := &recordLog{}
	w := &flushWatch{next: rec}
	w.Infof("opened %d tables", 3)
	w.Errorf("error flushing memtable to disk: %v, retrying", errors.New("no space left on device"))
	w.Errorf("some other error")
	if n := w.failures.Load(); n != 1 || !strings.Contains(*w.last.Load(), "no space left") {
		t.Fatalf("%d flush failures counted, last %q", n, *w.last.Load())
	}
	if len(rec.lines) != 3 || rec.lines[0] != "I opened 3 tables" {
		t.Fatalf("forwarded %q", rec.lines)
	}
	(&flushWatch{}).Errorf("error flushing memtable to disk: %v, retrying", "x") // no next logger: no panic
}

// TestUseAfterClose: every call on a closed Store returns an error (some used to panic
// inside Badger, and a session's in a goroutine of its own took the process down); a
// RebuildIndex cancelled before it starts changes nothing, and one stopped half way
// leaves a Store that refuses every call instead of one that looks empty.
func TestUseAfterClose(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{Create: true})
	must(t, err)
	must(t, s.Put([]byte("a"), []byte("x"), 1, 0))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.RebuildIndex(ctx); err == nil || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("rebuild with a cancelled context: %v", err)
	}
	if root, err := s.Root(time.Now().UnixNano()); err != nil || root.Count != 1 {
		t.Fatalf("root after a cancelled rebuild: %v, %v", root, err)
	}
	must(t, s.Close())
	now := time.Now().UnixNano()
	if _, err := s.Root(now); !errors.Is(err, reconcile.ErrEndpointFailed) {
		t.Errorf("Root after Close: %v", err)
	}
	if _, err := s.Open(context.Background(), now); !errors.Is(err, reconcile.ErrEndpointFailed) {
		t.Errorf("Open after Close: %v", err)
	}
	if _, err := s.VerifyIndex(context.Background()); !errors.Is(err, reconcile.ErrEndpointFailed) {
		t.Errorf("VerifyIndex after Close: %v", err)
	}
	other, err := Open(t.TempDir(), Options{Create: true})
	must(t, err)
	defer other.Close()
	if _, err := reconcile.Run(context.Background(), other, s, reconcile.Options{Mode: reconcile.Diff}); err == nil {
		t.Error("a session against a closed store: no error")
	}
	if err := s.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
}

// TestWriterRefusesAfterTooLarge: as Writer.Put says, a row over the limits fails the
// Put and every write after it, and the Write returns the error (the next Put used to
// succeed and commit).
func TestWriterRefusesAfterTooLarge(t *testing.T) {
	s, err := Open(t.TempDir(), Options{Create: true})
	must(t, err)
	defer s.Close()
	var next error
	err = s.Write(func(w *Writer) error {
		if err := w.Put(make([]byte, MaxKeyBytes+1), nil, 1, 0); !errors.Is(err, ErrRowTooLarge) {
			t.Errorf("over-long key: %v", err)
		}
		next = w.Put([]byte("after"), []byte("x"), 1, 0)
		return nil
	})
	if !errors.Is(next, ErrRowTooLarge) || !errors.Is(err, ErrRowTooLarge) {
		t.Fatalf("the Put after, %v; the Write, %v; want both to be the too-large error", next, err)
	}
	if _, ok, _ := s.Get([]byte("after")); ok {
		t.Fatal("the row after a refused one was written")
	}
}

// TestWriterAfterWrite: a Writer kept past its Write refuses every call with an error
// that says so (a Put used to start a Badger transaction of its own that was never
// committed, outside the Store's write lock, and returned nil).
func TestWriterAfterWrite(t *testing.T) {
	s, err := Open(t.TempDir(), Options{Create: true})
	must(t, err)
	defer s.Close()
	var kept *Writer
	must(t, s.Write(func(w *Writer) error {
		kept = w
		return w.Put([]byte("a"), []byte("x"), 1, 0)
	}))
	if err := kept.Put([]byte("late"), []byte("x"), 2, 0); err == nil || !strings.Contains(err.Error(), "after its Write returned") {
		t.Fatalf("Put on a kept Writer: %v", err)
	}
	if err := kept.Delete([]byte("a")); err == nil || !strings.Contains(err.Error(), "after its Write returned") {
		t.Fatalf("Delete on a kept Writer: %v", err)
	}
	if _, ok, _ := s.Get([]byte("late")); ok {
		t.Fatal("a kept Writer's Put was written")
	}
	if _, ok, _ := s.Get([]byte("a")); !ok {
		t.Fatal("a kept Writer's Delete was written")
	}
	must(t, s.Put([]byte("b"), []byte("y"), 3, 0)) // the store takes writes as before
}
