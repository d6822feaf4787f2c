package badger

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
	"github.com/reconcile-dev/reconcile/reconcile/endpointtest"
)

func openT(t *testing.T, path string, opts Options) *Store {
	t.Helper()
	opts.Create = true
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	for _, o := range []merkle.Ordering{merkle.VersionOrder, merkle.KeyOrder} {
		t.Run(o.String(), func(t *testing.T) {
			endpointtest.Run(t, func(t *testing.T) endpointtest.Harness {
				s := openT(t, t.TempDir(), Options{Ordering: o, MaxRowBytes: 2 << 20})
				return endpointtest.Harness{
					Endpoint: s,
					Put:      func(r reconcile.Row) error { return s.Put(r.Key, r.Value, r.Version, r.ExpiresAt) },
					Delete:   s.Delete,
					PutMany: func(rows []reconcile.Row) error {
						return s.Write(func(w *Writer) error {
							for _, r := range rows {
								if err := w.Put(r.Key, r.Value, r.Version, r.ExpiresAt); err != nil {
									return err
								}
							}
							return nil
						})
					},
					RejectValueBytes: 2<<20 + 1,
				}
			})
		})
	}
}

func TestPutGetDeleteScan(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	now := time.Now().UnixNano()
	must(t, s.Put([]byte("b"), []byte("B"), 2, 0))
	must(t, s.Put([]byte("a"), []byte("A"), 1, 0))
	must(t, s.Put([]byte("c"), []byte("C"), 3, now+int64(time.Hour)))
	must(t, s.Put([]byte("d"), []byte("D"), 4, now-int64(time.Hour))) // already expired
	must(t, s.Put([]byte("a"), []byte("A2"), 5, 0))                   // replaces a
	row, ok, err := s.Get([]byte("a"))
	if err != nil || !ok || string(row.Value) != "A2" || row.Version != 5 {
		t.Fatalf("Get(a) = %+v, %v, %v", row, ok, err)
	}
	if _, ok, _ := s.Get([]byte("d")); ok {
		t.Fatalf("Get returned an expired row")
	}
	if _, ok, _ := s.Get([]byte("zz")); ok {
		t.Fatalf("Get returned a row never written")
	}
	must(t, s.Delete([]byte("b")))
	must(t, s.Delete([]byte("never"))) // absent is fine
	var keys []string
	must(t, s.Scan(nil, func(r reconcile.Row) bool { keys = append(keys, string(r.Key)); return true }))
	if got := strings.Join(keys, ","); got != "a,c" {
		t.Fatalf("Scan(nil) = %s, want a,c", got)
	}
	keys = nil
	must(t, s.Scan([]byte("b"), func(r reconcile.Row) bool { keys = append(keys, string(r.Key)); return false }))
	if got := strings.Join(keys, ","); got != "c" {
		t.Fatalf("Scan(b) stopping after one = %s, want c", got)
	}
	checkRoot(t, s, now)
}

// naiveRoot sums EntryHash over the rows Scan returns (live at time.Now()).
func naiveRoot(t *testing.T, s *Store) merkle.Digest {
	t.Helper()
	var d merkle.Digest
	must(t, s.Scan(nil, func(r reconcile.Row) bool {
		var flags byte
		if r.Tombstone {
			flags = merkle.FlagTombstone
		}
		h := merkle.EntryHash(r.Key, r.Version, r.ExpiresAt, flags, merkle.ValueHash(r.Value))
		d = d.Add(merkle.Digest{Count: 1, Sum: h})
		return true
	}))
	return d
}

func checkRoot(t *testing.T, s *Store, now int64) {
	t.Helper()
	root, err := s.Root(now)
	if err != nil {
		t.Fatalf("root: %v", err)
	}
	if want := naiveRoot(t, s); root != want {
		t.Fatalf("Root = %d entries %x, naive digest of live rows %d entries %x", root.Count, root.Sum[:6], want.Count, want.Sum[:6])
	}
}

func TestRootMatchesNaiveDigest(t *testing.T) {
	for _, o := range []merkle.Ordering{merkle.VersionOrder, merkle.KeyOrder} {
		t.Run(o.String(), func(t *testing.T) {
			s := openT(t, t.TempDir(), Options{Ordering: o})
			rng := rand.New(rand.NewPCG(1, uint64(o)))
			now := time.Now().UnixNano()
			for range 2000 {
				key := fmt.Appendf(nil, "k%03d", rng.IntN(300))
				switch rng.IntN(6) {
				case 0:
					must(t, s.Delete(key))
				case 1:
					must(t, s.Put(key, fmt.Appendf(nil, "v%d", rng.IntN(5)), rng.Uint64N(9), now-int64(time.Hour)+rng.Int64N(int64(time.Minute))))
				case 2:
					must(t, s.Put(key, fmt.Appendf(nil, "v%d", rng.IntN(5)), rng.Uint64N(9), now+int64(time.Hour)))
				default:
					must(t, s.Put(key, fmt.Appendf(nil, "v%d", rng.IntN(5)), rng.Uint64N(9), 0))
				}
			}
			checkRoot(t, s, now)
		})
	}
}

func TestExpiryAndPurge(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	now := time.Now().UnixNano()
	must(t, s.Write(func(w *Writer) error {
		for i := range 5000 {
			exp := int64(0)
			switch i % 3 {
			case 0:
				exp = now - int64(time.Hour) - int64(i) // expiry order is reverse key order
			case 1:
				exp = now + int64(time.Hour)
			}
			if err := w.Put(fmt.Appendf(nil, "k%05d", i), []byte("v"), uint64(i), exp); err != nil {
				return err
			}
		}
		return nil
	}))
	checkRoot(t, s, now)
	before, err := s.Root(now)
	must(t, err)
	if before.Count != 5000-1667 {
		t.Fatalf("root counts %d live rows, want %d", before.Count, 5000-1667)
	}
	all, err := s.Root(0) // at time 0 nothing has expired yet
	must(t, err)
	if all.Count != 5000 {
		t.Fatalf("root at time 0 counts %d rows, want 5000", all.Count)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if n, err := s.PurgeExpired(ctx, now); !errors.Is(err, context.Canceled) || n != 0 {
		t.Fatalf("purge with its context ended = %d, %v; want 0, context.Canceled", n, err)
	}
	n, err := s.PurgeExpired(context.Background(), now)
	must(t, err)
	if n != 1667 {
		t.Fatalf("purged %d rows, want 1667", n)
	}
	after, err := s.Root(now)
	must(t, err)
	if after != before {
		t.Fatalf("purging changed the live root")
	}
	all, err = s.Root(0)
	must(t, err)
	if all.Count != 5000-1667 {
		t.Fatalf("after purging, root at time 0 counts %d rows, want %d", all.Count, 5000-1667)
	}
	if n, err := s.PurgeExpired(context.Background(), now); err != nil || n != 0 {
		t.Fatalf("second purge = %d, %v; want 0", n, err)
	}
	checkRoot(t, s, now)
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{Create: true, Ordering: merkle.KeyOrder})
	must(t, err)
	for i := range 100 {
		must(t, s.Put(fmt.Appendf(nil, "k%d", i), []byte("v"), 0, 0))
	}
	root, err := s.Root(0)
	must(t, err)
	must(t, s.Close())

	_, err = Open(dir, Options{Ordering: merkle.VersionOrder})
	if err == nil || !strings.Contains(err.Error(), "created with key ordering") {
		t.Fatalf("reopen with another ordering: %v; want an ordering error", err)
	}
	s, err = Open(dir, Options{})
	must(t, err)
	if s.Ordering() != merkle.KeyOrder {
		t.Fatalf("reopened ordering %v, want key", s.Ordering())
	}
	got, err := s.Root(0)
	must(t, err)
	if got != root {
		t.Fatalf("root changed across reopen")
	}
	must(t, s.Close())

	ro, err := Open(dir, Options{ReadOnly: true})
	must(t, err)
	defer ro.Close()
	if err := ro.Put([]byte("x"), nil, 0, 0); !errors.Is(err, reconcile.ErrReadOnly) {
		t.Fatalf("Put on a read-only store: %v", err)
	}
	if _, err := ro.Apply(context.Background(), 0, []reconcile.Change{{Key: []byte("x")}}); !errors.Is(err, reconcile.ErrReadOnly) {
		t.Fatalf("Apply on a read-only store: %v", err)
	}
	if got, err := ro.Root(0); err != nil || got != root {
		t.Fatalf("read-only root = %v, %v", got, err)
	}
}

func TestMissingStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nothing")
	_, err := Open(dir, Options{})
	if err == nil || !strings.Contains(err.Error(), "reconcile load") {
		t.Fatalf("open of a missing store: %v; want an error saying how to create one", err)
	}
	if _, err := Open(dir, Options{ReadOnly: true, Create: true}); err == nil {
		t.Fatalf("read-only open created a store")
	}
	file := filepath.Join(t.TempDir(), "rows.jl")
	if err := os.WriteFile(file, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(file, Options{Create: true}); err == nil || !strings.Contains(err.Error(), "a Badger store is a directory") {
		t.Fatalf("open of a file: %v; want an error saying a store is a directory", err)
	}
}

// TestLocked: a store open elsewhere is refused with a message that says where: in this
// process (a Go program that opens a directory twice) or in another.
func TestLocked(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	for _, ro := range []bool{false, true} {
		_, err := Open(dir, Options{ReadOnly: ro})
		want := fmt.Sprintf("badger store %s is in use, open already in this process (a directory opens once: share its *Store, or Close it before opening it again)", dir)
		if err == nil || err.Error() != want {
			t.Fatalf("second open (read-only %v): %v; want %q", ro, err, want)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	again := openT(t, dir, Options{}) // closed, it opens again
	if openHere(filepath.Join(dir, "x")) {
		t.Fatal("another directory counted open")
	}
	again.Close()
	if openHere(dir) {
		t.Fatal("a closed store still counted open in this process")
	}
	// Another process: the message says so.
	if os.Getenv("RECONCILE_TEST_HOLD_STORE") != "" {
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestHoldStore$")
	cmd.Env = append(os.Environ(), "RECONCILE_TEST_HOLD_STORE="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	line, _ := bufio.NewReader(out).ReadString('\n')
	if !strings.HasPrefix(line, "holding") {
		t.Fatalf("the holding process said %q", line)
	}
	_, err = Open(dir, Options{})
	want := fmt.Sprintf("badger store %s is in use by another process (close it and retry; if `reconcile serve` holds it, use the server's http(s):// URL instead)", dir)
	if err == nil || err.Error() != want {
		t.Fatalf("open held by another process: %v; want %q", err, want)
	}
}

// TestHoldStore opens the store RECONCILE_TEST_HOLD_STORE names and holds it until
// killed: TestLocked's other process.
func TestHoldStore(t *testing.T) {
	dir := os.Getenv("RECONCILE_TEST_HOLD_STORE")
	if dir == "" {
		t.Skip("TestLocked runs this in a process of its own")
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fmt.Println("holding")
	time.Sleep(time.Minute)
}

func TestMaxRowBytes(t *testing.T) {
	s := openT(t, t.TempDir(), Options{MaxRowBytes: 100})
	must(t, s.Put([]byte("ok"), make([]byte, 98), 1, 0))
	err := s.Put([]byte("too big"), make([]byte, 94), 1, 0)
	if !errors.Is(err, ErrRowTooLarge) || !strings.Contains(err.Error(), `"too big"`) {
		t.Fatalf("Put of a 101-byte row: %v; want ErrRowTooLarge naming the key", err)
	}
	_, err = s.Apply(context.Background(), 0, []reconcile.Change{
		{Key: []byte("a"), Put: &reconcile.Row{Key: []byte("a"), Value: []byte("a")}},
		{Key: []byte{0xff, 1}, Put: &reconcile.Row{Key: []byte{0xff, 1}, Value: make([]byte, 100)}},
	})
	var refused *reconcile.RowRefusedError
	if !errors.Is(err, ErrRowTooLarge) || !errors.As(err, &refused) || refused.Index != 1 {
		t.Fatalf("Apply of a 102-byte row: %v; want ErrRowTooLarge in a RowRefusedError naming change 1", err)
	}
	if _, ok, _ := s.Get([]byte("a")); ok {
		t.Fatalf("failed Apply wrote a row")
	}
}

func TestApplyConditions(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	ctx := context.Background()
	must(t, s.Put([]byte("k"), []byte("v1"), 1, 0))
	row, _, _ := s.Get([]byte("k"))
	e := row.Entry()
	put := func(v uint64) *reconcile.Row { return &reconcile.Row{Key: []byte("k"), Version: v, Value: []byte("v")} }
	// Two changes to one key in one batch: the second sees the first.
	out, err := s.Apply(ctx, 0, []reconcile.Change{
		{Key: []byte("k"), Expect: &e, Put: put(2)},
		{Key: []byte("k"), Expect: &e, Put: put(3)},
	})
	must(t, err)
	if out[0] != reconcile.Applied || out[1] != reconcile.Raced {
		t.Fatalf("outcomes %v, want applied then raced", out)
	}
	if row, _, _ := s.Get([]byte("k")); row.Version != 2 {
		t.Fatalf("version %d after apply, want 2", row.Version)
	}
	// A cancelled context writes nothing.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Apply(cctx, 0, []reconcile.Change{{Key: []byte("n"), Put: &reconcile.Row{Key: []byte("n")}}}); err == nil {
		t.Fatalf("apply with a cancelled context succeeded")
	}
	if _, ok, _ := s.Get([]byte("n")); ok {
		t.Fatalf("cancelled apply wrote a row")
	}
	// A put whose row names another key is refused.
	if _, err := s.Apply(ctx, 0, []reconcile.Change{{Key: []byte("a"), Put: &reconcile.Row{Key: []byte("b")}}}); err == nil {
		t.Fatalf("apply of a row under another key succeeded")
	}
	checkRoot(t, s, time.Now().UnixNano())
}

// TestWriteSplits writes through a store whose transactions hold ~300 KiB, so Write must
// commit many transactions and redo the ones Badger finds too big.
func TestWriteSplits(t *testing.T) {
	s := openT(t, t.TempDir(), Options{memTableSize: 2 << 20})
	const n = 4000
	err := s.Write(func(w *Writer) error {
		for i := range n {
			if err := w.Put(fmt.Appendf(nil, "key%06d", i*7919%n), bytes.Repeat([]byte{byte(i)}, i%300), uint64(i%7), 0); err != nil {
				return err
			}
		}
		return nil
	})
	must(t, err)
	checkRoot(t, s, 0)
	if root, _ := s.Root(0); root.Count != n {
		t.Fatalf("root counts %d rows, want %d", root.Count, n)
	}

	// With limits above Badger's, commits fail with ErrTxnTooBig and are redone in halves.
	s.maxTxnBytes, s.maxTxnCount = 8*s.maxTxnBytes, 8*s.maxTxnCount
	err = s.Write(func(w *Writer) error {
		for i := range n {
			if err := w.Put(fmt.Appendf(nil, "key%06d", i), []byte("again"), uint64(i%5), 0); err != nil {
				return err
			}
		}
		return nil
	})
	must(t, err)
	s.maxTxnBytes, s.maxTxnCount = s.maxTxnBytes/8, s.maxTxnCount/8
	checkRoot(t, s, 0)

	// A failure part-way reports what was committed, and exactly that is written.
	boom := errors.New("boom")
	err = s.Write(func(w *Writer) error {
		for i := range n {
			if err := w.Delete(fmt.Appendf(nil, "key%06d", i)); err != nil {
				return err
			}
		}
		return boom
	})
	var we *WriteError
	if !errors.As(err, &we) || !errors.Is(err, boom) {
		t.Fatalf("Write = %v; want a *WriteError wrapping the callback's error", err)
	}
	if we.Committed == 0 || we.Committed >= n {
		t.Fatalf("Committed = %d; want some but not all of %d", we.Committed, n)
	}
	checkRoot(t, s, 0)
	for _, i := range []int{0, we.Committed - 1, we.Committed, n - 1} {
		_, ok, err := s.Get(fmt.Appendf(nil, "key%06d", i))
		must(t, err)
		if ok != (i >= we.Committed) {
			t.Fatalf("row %d present = %v after %d committed deletes", i, ok, we.Committed)
		}
	}
	if root, _ := s.Root(0); int(root.Count) != n-we.Committed {
		t.Fatalf("root counts %d rows, want %d", root.Count, n-we.Committed)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentWrites runs writers and snapshot readers at once: writes are serialised,
// snapshots stay consistent, and the index ends equal to the rows.
func TestConcurrentWrites(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				key := fmt.Appendf(nil, "g%d-%d", g, i%37)
				var err error
				if i%10 == 0 {
					err = s.Write(func(w *Writer) error {
						for j := range 20 {
							if err := w.Put(fmt.Appendf(nil, "w%d", j), []byte{byte(i)}, uint64(i), 0); err != nil {
								return err
							}
						}
						return nil
					})
				} else {
					err = s.Put(key, []byte{byte(i)}, uint64(i), 0)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 30 {
			snap, err := s.Open(context.Background(), 0)
			if err != nil {
				errs <- err
				return
			}
			es, err := snap.Entries(context.Background(), nil, nil, 0)
			if err == nil && uint64(len(es)) != snap.Info().Root.Count {
				err = fmt.Errorf("snapshot lists %d entries, root counts %d", len(es), snap.Info().Root.Count)
			}
			snap.Close()
			if err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	checkRoot(t, s, 0)
}

// TestCompactFlushesMemtables: after Compact every row is in one level of tables, none
// left in a memtable to become a level-0 table at close, and the store reads the same.
func TestCompactFlushesMemtables(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	for i := range 2000 {
		must(t, s.Put(fmt.Appendf(nil, "k%05d", i), []byte("v"), uint64(i), 0))
	}
	before, err := s.Root(0)
	must(t, err)
	must(t, s.Compact())
	tables := s.db.Tables()
	if len(tables) == 0 {
		t.Fatal("no tables after Compact: the rows are still in a memtable")
	}
	for _, ti := range tables {
		if ti.Level != tables[0].Level {
			t.Fatalf("tables on levels %d and %d after Compact", tables[0].Level, ti.Level)
		}
	}
	txn := s.db.NewTransaction(false)
	_, ok, err := txnGet(txn, metaFlush)
	txn.Discard()
	if err != nil || ok {
		t.Fatalf("Compact's flush key is still there (%v)", err)
	}
	after, err := s.Root(0)
	must(t, err)
	if after != before {
		t.Fatal("Compact changed the root")
	}
	checkRoot(t, s, 0)
}

// TestKeyFormat: a recorded key format survives reopening, a read-only store reads it
// and refuses to set it, and recording it changes no digest.
func TestKeyFormat(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put([]byte("k"), []byte("v"), 1, 0); err != nil {
		t.Fatal(err)
	}
	before, err := reconcile.Root(context.Background(), s, 0)
	if err != nil {
		t.Fatal(err)
	}
	if f, err := s.KeyFormat(); err != nil || f != "" {
		t.Fatalf("a new store's key format: %q, %v", f, err)
	}
	if err := s.SetKeyFormat("sql/1 id:int"); err != nil {
		t.Fatal(err)
	}
	after, err := reconcile.Root(context.Background(), s, 0)
	if err != nil || after.Root != before.Root {
		t.Fatalf("the root moved: %+v, %+v, %v", before, after, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := Open(dir, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if f, err := ro.KeyFormat(); err != nil || f != "sql/1 id:int" {
		t.Fatalf("after reopening: %q, %v", f, err)
	}
	if err := ro.SetKeyFormat("x"); !errors.Is(err, reconcile.ErrReadOnly) {
		t.Fatalf("a read-only store set its key format: %v", err)
	}
	if c, err := ro.VerifyIndex(context.Background()); err != nil || !c.RowsMatch || c.Rows != 1 {
		t.Fatalf("verify after recording a key format: %+v, %v", c, err)
	}
}
