// Package badger is the embedded default endpoint: rows and their version-range Merkle
// index kept together in one Badger database, so that every write updates both in one
// transaction and a read transaction is a consistent snapshot of both.
//
// # Storage layout
//
// One Badger DB holds five key spaces, told apart by their first byte:
//
//	"r" || key                          -> be64(version) || be64(expiresAt) || flags || value
//	"i" || ...                          -> the merkle.Stored index over every row's entry
//	"x" || be64(expiresAt^1<<63) || key -> be64(version) || flags || ValueHash; one per
//	                                       row with an expiry (empty if written by format 1)
//	"l" || be64(seq)                    -> one small write's index changes, not yet folded
//	                                       into "i" (the index log: see log.go)
//	"m" || name                         -> store metadata ("m"+"ordering": the ordering
//	                                       byte, then the format byte, 3; see StoreFormat)
//
// The row record does not repeat the value hash the index entry holds: replacing or
// deleting a row needs only its key and version, and the few reads that need the old
// entry (a conditional Apply, a snapshot's expired rows) hash the value. The expiry index
// is ordered by time (the sign bit is flipped so negative times sort first),
// so the rows expired at some now, but not yet purged, are one prefix scan away, and each
// expiry key's value holds its row's entry, rewritten whenever the row is. Rows stay
// in the index until PurgeExpired deletes them; snapshots subtract them (see Store.Open).
//
// Every write (Put, Delete, Write, Apply, PurgeExpired) updates the row, its index entry
// (or, for a small write, its index log record) and its expiry key in one Badger
// transaction, under one in-process writer lock: Badger lets only one process open the
// directory, so the lock serialises every writer. Index keys are written under a second
// lock, the index lock, by a write that updates the index directly and by every fold of
// the index log, which a background folder runs while small writes go on (log.go); so
// transactions never conflict on the index's shared upper nodes. Anything that reads the
// index (a snapshot, VerifyIndex, Close) folds the log into it first, so every reader
// sees an index equal to its rows.
//
// # Checking and rebuilding the index
//
// VerifyIndex reads the whole store in one snapshot and checks the index against its own
// definition (merkle.Stored.Check) and against the rows, and the expiry index against the
// rows; it changes nothing. RebuildIndex rebuilds both from the rows, under a metadata
// mark ("m"+"rebuild") that makes Open refuse a read-only store, and finish the rebuild
// in a writable one, when a rebuild was cut short. `reconcile index verify|install` run
// them.
//
// # Write cost
//
// Each row costs Badger about two entries (its record and its index entry) plus a share
// of the index's aggregate nodes. A Writer applies the row records as it goes and queues
// the index changes of the open transaction; at commit they go through one
// merkle.Stored.Batch, which sorts them and rewrites each covering aggregate node once per
// transaction rather than once per row. Index keys go through an in-memory cache (see
// cache) that answers the node reads and sends each written key to Badger once per
// transaction. A full transaction is sent with CommitWith and the next one is built while
// Badger writes it (see Writer.commit), so the index's CPU and Badger's overlap.
// BenchmarkWriteIndexed, BenchmarkWriteIndexedAppend and BenchmarkWriteIndexedUpdate
// measure the cost against plain Badger writes of the same rows (BenchmarkWritePlain,
// BenchmarkWritePlainTxn, BenchmarkWritePlainUpdate), and BenchmarkWritePlainLayout
// against plain writes of the very entries an indexed load leaves. Badger's cost is
// mostly per entry (a memtable skiplist insert and a write-ahead log record), so with two
// entries per row the floor is about twice plain (2.1–2.5× measured, on three machines); an update that
// moves a row's index entry writes three (record, old entry deleted, new entry).
// BenchmarkWritePlainPackedLayout measures the floor of a layout that would pack each
// level-1 node's entries into the node's value (one Badger entry per 16 index entries):
// 1.1–1.5× plain in the runs of 2026-12-02 (three machines), when each block is written once.
// Built and measured, that layout made appends faster but every scattered write rewrite
// a whole block, which cost inserts at random positions twice the flat layout's time and
// updates five times (README, "Writing through the index"); it is not used.
//
// A Write of one transaction with at most logTxnOps index changes (a service's writes, a
// sync's apply batches) writes its index changes as one index log record instead, and the
// log is folded into the index, thousands of changes in one Batch, by the background
// folder, before the index is read, or when it outgrows its bounds (log.go): such a write
// costs Badger its rows and one record rather than every index node above its entries. Measured with
// BenchmarkWriteService (the final fold timed too): 23.3 against 39–42 µs for one-row
// writes, 13.4–13.6 against 17.2–17.3 µs a row for 100-row writes (plain Badger: 7.2–7.4
// and 2.4–2.5), two runs each, alternating, on 2026-12-02.
//
// The cache outlives a write: the Store keeps the last one (see Store.keep), so a
// service's writes and folds find the upper index nodes, which nearly every fold rewrites,
// in memory rather than behind the versions Badger's memtables hold of them
// (BenchmarkWriteService). It holds at most about maxCacheBytes as the cache counts bytes,
// which is about 1.3 times that in heap (58 MB measured for 44 MB counted).
package badger

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bdg "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/skl"

	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// DefaultMaxRowBytes is the default Options.MaxRowBytes.
const DefaultMaxRowBytes = 64 << 20

// MaxKeyBytes is the longest key a Store accepts. Badger limits its keys to 65000 bytes,
// and the index keys built from a row's position carry a few bytes more than the key.
const MaxKeyBytes = 60000

// ErrRowTooLarge is wrapped by errors for a row over Options.MaxRowBytes or a key over
// MaxKeyBytes. A smaller batch will not help; the row must be skipped.
var ErrRowTooLarge = errors.New("row too large")

// Options configure Open. The zero value opens an existing, writable store.
type Options struct {
	// Ordering is the index order, fixed when the store is created and kept in its
	// metadata. Zero means: the stored ordering, or VersionOrder for a new store. A
	// non-zero Ordering that differs from the stored one is an error.
	Ordering merkle.Ordering
	// Create creates the store when path does not hold one. Without it a missing store
	// is an error.
	Create bool
	// ReadOnly opens the store for reading; writes return reconcile.ErrReadOnly. Several
	// read-only opens may share a directory, but not with a writer.
	ReadOnly bool
	// MaxRowBytes caps len(key)+len(value) of one row; Put, Write and Apply refuse a larger
	// row with an error wrapping ErrRowTooLarge. Zero means DefaultMaxRowBytes. A session
	// quarantines a row whose value is over reconcile.MaxValue (256 MiB), so a store that
	// is synced gains nothing from a cap above it.
	MaxRowBytes int
	// Logger receives Badger's own log lines. Nil (the default) discards them.
	Logger bdg.Logger

	// memTableSize overrides Badger's memtable size (64 MiB); tests shrink it to make
	// transactions split. A transaction holds at most 15% of it.
	memTableSize int64
	// foregroundFolds turns the background folder off (see log.go): tests that count
	// what the index log holds need it to change only when they write or read.
	foregroundFolds bool
}

// Store is a Badger database holding rows and their index. It implements
// reconcile.Endpoint and is safe for concurrent use; writes are serialised. A writable
// Store runs one goroutine of its own, besides Badger's, the index log's background
// folder (see log.go), which Close stops.
type Store struct {
	db   *bdg.DB
	path string
	ord  merkle.Ordering
	opts Options

	// Limits of one Badger transaction, from its options (see Txn.checkSize).
	maxTxnCount, maxTxnBytes, valueThreshold int64

	// wmu serialises the transactions that write rows (see the package doc).
	wmu sync.Mutex
	// imu serialises the transactions that write the index: a Write or Apply that updates
	// it directly, and every fold of the index log, which may run on the background
	// folder without wmu (see log.go). Lock order: wmu, imu, snapMu.
	imu sync.Mutex
	// indexGen counts fold commits; a write that did not hold imu when its transaction
	// began, and then needs the index, redoes the transaction if it moved (see
	// Writer.lockIndex).
	indexGen atomic.Uint64
	// kept is the index cache the last successful index write left (nil: none), with the
	// index reading through it; guarded by imu. See Store.keep.
	kept *keptIndex
	// snapMu is held shared by every open snapshot (and VerifyIndex) and exclusively by
	// RebuildIndex, which drops the index under them.
	snapMu sync.RWMutex
	// log is what the index log holds (see log.go): next is guarded by wmu, the counts by
	// logMu; logPending mirrors log.ops for readers that hold neither.
	log        indexLog
	logMu      sync.Mutex
	logPending atomic.Int64
	// foldFrom is a sequence number below which the log holds no record: every record
	// before it has been folded, and the fold that deleted it had committed before
	// foldFrom passed it. Reads of the log start there rather than walk the deleted
	// records, which Badger keeps as tombstones until compaction.
	foldFrom atomic.Uint64
	// folder is the background folder's (see log.go); nil when it does not run.
	folder *folder
	// failed is set, once, by the first Badger write error after which the database
	// cannot be used (see noteFailure); every call then returns it.
	failed atomic.Pointer[FailedError]
	// dbClosed counts the directory no longer open here (openStores) once Badger closed.
	dbClosed sync.Once
	// watch is Badger's logger, which counts the memtable flushes that fail (closeDB).
	watch *flushWatch
}

// flushWatch is the logger a Store gives Badger: it passes every line on to
// Options.Logger, if any, and counts the memtable flushes Badger reports failing (it
// retries them every second, for ever).
type flushWatch struct {
	next     bdg.Logger
	failures atomic.Int64
	last     atomic.Pointer[string]
}

func (l *flushWatch) Errorf(format string, args ...any) {
	if strings.HasPrefix(format, "error flushing memtable") {
		msg := fmt.Sprintf(format, args...)
		l.last.Store(&msg)
		l.failures.Add(1)
	}
	if l.next != nil {
		l.next.Errorf(format, args...)
	}
}

func (l *flushWatch) Warningf(format string, args ...any) {
	if l.next != nil {
		l.next.Warningf(format, args...)
	}
}

func (l *flushWatch) Infof(format string, args ...any) {
	if l.next != nil {
		l.next.Infof(format, args...)
	}
}

func (l *flushWatch) Debugf(format string, args ...any) {
	if l.next != nil {
		l.next.Debugf(format, args...)
	}
}

var _ reconcile.Endpoint = (*Store)(nil)

var metaOrdering = []byte{prefixMeta, 'o', 'r', 'd', 'e', 'r', 'i', 'n', 'g'}

// metaKeyFormat holds the description of the store's keys that SetKeyFormat records.
var metaKeyFormat = []byte{prefixMeta, 'k', 'e', 'y', 'f', 'o', 'r', 'm', 'a', 't'}

// KeyFormat returns the description of the store's keys that SetKeyFormat recorded, or
// "" if none was.
func (s *Store) KeyFormat() (string, error) {
	if err := s.usable(); err != nil {
		return "", err
	}
	var f []byte
	err := s.db.View(func(txn *bdg.Txn) error {
		var err error
		f, _, err = txnGet(txn, metaKeyFormat)
		return err
	})
	return string(f), err
}

// SetKeyFormat records a description of the store's keys, such as the KeyFormat of the
// SQL table the store is a replica of ("sql/1 id:int"), so that programs can show keys
// as their columns (the CLI does). It changes no row, index or digest.
func (s *Store) SetKeyFormat(format string) error {
	if s.opts.ReadOnly {
		return reconcile.ErrReadOnly
	}
	if err := s.usable(); err != nil {
		return err
	}
	return s.noteFailure(s.db.Update(func(txn *bdg.Txn) error { return txn.Set(metaKeyFormat, []byte(format)) }))
}

// metaFlush is the key Compact writes and drops to make Badger flush its memtables.
var metaFlush = []byte{prefixMeta, 'f', 'l', 'u', 's', 'h'}

// StoreFormat is the storage format this package writes, kept after the ordering byte in
// the ordering metadata. Format 3 may hold an index log (see log.go): index changes of
// small writes not yet folded into the index, which programs that know only format 2
// would not read, so they refuse a format-3 store. Format 2 keeps each expiry key's row
// entry in its value (see the package doc); format 1 left it empty and held the ordering
// byte alone. A writable Open upgrades a format-1 or format-2 store (empty expiry values
// stay readable: their rows are read); programs that know only format 1 refuse a store
// holding two bytes there, so none of them can write a row without its expiry value after
// the upgrade.
const StoreFormat = 3

// maxTxnRawBytes caps the value bytes one write transaction holds in memory: Badger's own
// limit counts a value-log value as a 12-byte pointer, so many large values would
// otherwise pile up in one transaction.
const maxTxnRawBytes = 64 << 20

// Open opens the store at path. A missing store is an error unless opts.Create is set; a
// store another process has open is an error that says so; an explicit opts.Ordering
// other than the store's is an error.
func Open(path string, opts Options) (*Store, error) {
	if opts.MaxRowBytes <= 0 {
		opts.MaxRowBytes = DefaultMaxRowBytes
	}
	if opts.Ordering != 0 && opts.Ordering != merkle.VersionOrder && opts.Ordering != merkle.KeyOrder {
		return nil, fmt.Errorf("open badger store %s: unknown %v", path, opts.Ordering)
	}
	exists, err := storeExists(path)
	if err != nil {
		return nil, fmt.Errorf("open badger store %s: %w", path, err)
	}
	if !exists && (!opts.Create || opts.ReadOnly) {
		return nil, fmt.Errorf("open badger store %s: no store there; create one with `reconcile load` or `reconcile gen` (Go: badger.Options{Create: true})", path)
	}
	watch := &flushWatch{next: opts.Logger}
	bo := bdg.DefaultOptions(path).
		WithLogger(watch).
		WithReadOnly(opts.ReadOnly).
		WithDetectConflicts(false) // wmu serialises writers; see the package doc
	if opts.memTableSize > 0 {
		bo = bo.WithMemTableSize(opts.memTableSize).
			WithValueThreshold(min(bo.ValueThreshold, 15*opts.memTableSize/100/2))
	}
	db, err := bdg.Open(bo)
	if err != nil {
		// Badger formats the flock failure with %+v, not %w: its text is all there is.
		if strings.Contains(err.Error(), "Another process is using this Badger database") {
			if openHere(path) {
				return nil, fmt.Errorf("badger store %s is in use, open already in this process (a directory opens once: share its *Store, or Close it before opening it again)", path)
			}
			return nil, fmt.Errorf("badger store %s is in use by another process (close it and retry; if `reconcile serve` holds it, use the server's http(s):// URL instead)", path)
		}
		// Badger formats its write-ahead log's replay error with %+v too.
		if opts.ReadOnly && strings.Contains(err.Error(), bdg.ErrTruncateNeeded.Error()) {
			return nil, fmt.Errorf("open badger store %s: %w", path, ErrNotClosedCleanly)
		}
		return nil, fmt.Errorf("open badger store %s: %w", path, err)
	}
	s := &Store{db: db, path: path, opts: opts, watch: watch}
	s.noteOpen(true)
	bo = db.Opts()
	s.maxTxnBytes = 15 * bo.MemTableSize / 100
	s.maxTxnCount = s.maxTxnBytes / int64(skl.MaxNodeSize)
	s.valueThreshold = bo.ValueThreshold
	for _, step := range []func() error{s.initMeta, s.finishRebuild, s.loadLog} {
		if err := step(); err != nil {
			db.Close()
			s.noteOpen(false)
			return nil, fmt.Errorf("open badger store %s: %w", path, err)
		}
	}
	if !opts.ReadOnly && !opts.foregroundFolds {
		s.startFolder()
	}
	return s, nil
}

// openStores counts the Stores open in this process by directory, so that a second open
// of one can say where the first is.
var openStores struct {
	sync.Mutex
	dirs map[string]int
}

// noteOpen counts s's directory as open in this process, or no longer.
func (s *Store) noteOpen(open bool) {
	dir, err := filepath.Abs(s.path)
	if err != nil {
		return
	}
	openStores.Lock()
	defer openStores.Unlock()
	if openStores.dirs == nil {
		openStores.dirs = map[string]int{}
	}
	if open {
		openStores.dirs[dir]++
	} else if openStores.dirs[dir]--; openStores.dirs[dir] <= 0 {
		delete(openStores.dirs, dir)
	}
}

// openHere reports whether a Store of this process has path open.
func openHere(path string) bool {
	dir, err := filepath.Abs(path)
	if err != nil {
		return false
	}
	openStores.Lock()
	defer openStores.Unlock()
	return openStores.dirs[dir] > 0
}

// finishRebuild redoes an index rebuild that was cut short, or refuses a read-only store
// whose rebuild was.
func (s *Store) finishRebuild() error {
	stopped, err := s.rebuilding()
	if err != nil || !stopped {
		return err
	}
	if s.opts.ReadOnly {
		return ErrRebuildInterrupted
	}
	if _, err := s.rebuildIndex(context.Background()); err != nil {
		return fmt.Errorf("finish the index rebuild that was interrupted: %w", err)
	}
	return nil
}

// storeExists reports whether path holds a Badger database (its MANIFEST file).
func storeExists(path string) (bool, error) {
	if fi, err := os.Stat(path); err == nil && !fi.IsDir() {
		return false, fmt.Errorf("%s is a file: a Badger store is a directory (name a new or existing directory)", path)
	}
	_, err := os.Stat(filepath.Join(path, "MANIFEST"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// initMeta reads the stored ordering, or records one in a new store.
func (s *Store) initMeta() error {
	var stored []byte
	var empty bool
	err := s.db.View(func(txn *bdg.Txn) error {
		v, ok, err := txnGet(txn, metaOrdering)
		if err != nil || ok {
			stored = v
			return err
		}
		it := txn.NewIterator(bdg.IteratorOptions{})
		defer it.Close()
		it.Rewind()
		empty = !it.Valid()
		return nil
	})
	if err != nil {
		return fmt.Errorf("read metadata: %w", err)
	}
	switch {
	case stored != nil:
		format := 1 // the ordering byte alone
		if len(stored) == 2 {
			format = int(stored[1])
		}
		if len(stored) < 1 || len(stored) > 2 || format < 1 {
			return fmt.Errorf("metadata: ordering of %d bytes, want 1 or 2", len(stored))
		}
		if format > StoreFormat {
			return fmt.Errorf("store format %d is newer than this program's %d: open it with a newer reconcile", format, StoreFormat)
		}
		o := merkle.Ordering(stored[0])
		if o != merkle.VersionOrder && o != merkle.KeyOrder {
			return fmt.Errorf("metadata: unknown %v", o)
		}
		if s.opts.Ordering != 0 && s.opts.Ordering != o {
			return fmt.Errorf("store was created with %s ordering, not %s: open it without an ordering or with %s", o, s.opts.Ordering, o)
		}
		s.ord = o
		if format == StoreFormat || s.opts.ReadOnly {
			return nil // a format-1 store opened read-only is read as it is
		}
	case !empty:
		return errors.New("not a reconcile store: Badger keys but no reconcile metadata")
	default:
		s.ord = s.opts.Ordering
		if s.ord == 0 {
			s.ord = merkle.VersionOrder
		}
		if s.opts.ReadOnly {
			return nil
		}
	}
	// A new store, or a format-1 store upgraded before its first write.
	err = s.db.Update(func(txn *bdg.Txn) error { return txn.Set(metaOrdering, []byte{byte(s.ord), StoreFormat}) })
	if err != nil {
		return fmt.Errorf("write metadata: %w", err)
	}
	return nil
}

// Ordering returns the store's index ordering.
func (s *Store) Ordering() merkle.Ordering { return s.ord }

// Compact merges the memtables and every level of the LSM tree into one level, dropping
// the versions that rewrites left behind. The index rewrites its aggregate nodes on every
// write, so after a bulk load a read has to step over many stale versions until Badger's
// background compaction catches up; call Compact after a large load (reconcile load and
// gen do) to make the first sessions fast. It blocks until done; writers wait for it.
//
// Badger's Flatten merges only the levels: the newest writes, still in a memtable, would
// become a level-0 table spanning the whole key space when the store closes, which every
// read then merges. Badger has no call that flushes the memtables, but DropPrefix flushes
// them all before it drops its prefix, so Compact writes a key of its own and drops it.
func (s *Store) Compact() error {
	if s.opts.ReadOnly {
		return reconcile.ErrReadOnly
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.imu.Lock() // DropPrefix refuses the writes of a fold while it runs
	defer s.imu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	err := s.db.Update(func(txn *bdg.Txn) error { return txn.Set(metaFlush, nil) })
	if err == nil {
		err = s.db.DropPrefix(metaFlush)
	}
	if err == nil {
		err = s.db.Flatten(2)
	}
	if err = s.noteFailure(err); err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	return nil
}

// Close stops the background folder, folds what the index log still holds into the
// index (see log.go) and closes the database. Snapshots must be closed first, and no
// write may run or follow.
//
// Badger's own close flushes its memtables and retries a flush that fails for ever (a
// directory removed while open, a full disk). Close does not: it returns an error as soon
// as the store's directory is gone, or Badger has reported the flush failing three times,
// leaving Badger's close to go on in the background (the process should exit; the rows
// are in Badger's write-ahead log, which the next open replays). A close that is merely
// slow (a large flush, the level-0 compaction Badger runs at close) is waited for.
func (s *Store) Close() error {
	var ferr error
	if !s.opts.ReadOnly {
		s.stopFolder()
		s.wmu.Lock()
		s.imu.Lock()
		if s.logPending.Load() != 0 && s.failed.Load() == nil {
			ferr = s.noteFailure(s.foldNow(true))
		}
		s.kept = nil
		s.imu.Unlock()
		s.wmu.Unlock()
	}
	// Every call from now on says the store is closed, rather than reach Badger, which
	// panics on some of them.
	s.failed.CompareAndSwap(nil, &FailedError{Path: s.path, Err: errClosed})
	if err := s.closeDB(); err != nil {
		return fmt.Errorf("close badger store %s: %w", s.path, err)
	}
	if ferr != nil {
		// The log stays, and the next writable Open folds it.
		return fmt.Errorf("close badger store %s: %w", s.path, ferr)
	}
	return nil
}

// closeDB closes the Badger database, giving up when its directory is gone or Badger's
// memtable flush keeps failing (Badger would retry it for ever).
func (s *Store) closeDB() error {
	done := make(chan error, 1)
	failed := s.watch.failures.Load()
	go func() {
		err := s.db.Close()
		s.dbClosed.Do(func() { s.noteOpen(false) }) // Badger's lock on the directory is gone
		done <- err
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
			if err := s.dirGone(); err != nil {
				return fmt.Errorf("%v; Badger cannot flush what it holds in memory, and the rows written since its last flush are lost", err)
			}
			if s.watch.failures.Load()-failed >= 3 {
				return fmt.Errorf("Badger cannot flush its memtable and retries for ever (%s): is the disk full, or the directory not writable? The rows are in its write-ahead log, which the next open replays", *s.watch.last.Load())
			}
		}
	}
}

// dirGone returns an error when the store's directory, or the manifest Badger keeps in
// it, is no longer there.
func (s *Store) dirGone() error {
	_, err := os.Stat(filepath.Join(s.path, bdgManifest))
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return fmt.Errorf("its directory %s (or Badger's %s in it) was removed while the store was open", s.path, bdgManifest)
}

// errClosed is a closed Store's FailedError's cause.
var errClosed = errors.New("it is closed")

// bdgManifest is the file Badger keeps its list of tables in.
const bdgManifest = "MANIFEST"

// FailedError is returned by every call on a Store after a Badger write failed in a way
// that leaves the database unusable (its directory was removed while open, or Badger could
// not create the file its next memtable needs, after which any read of Badger's would
// panic), or after RebuildIndex stopped half way (a session would see rows missing). It
// wraps reconcile.ErrEndpointFailed, so a session stops at once.
type FailedError struct {
	Path string
	Err  error // the write's error, or what was found
}

func (e *FailedError) Error() string {
	return fmt.Sprintf("badger store %s can no longer be used: %v", e.Path, e.Err)
}

func (e *FailedError) Unwrap() []error { return []error{reconcile.ErrEndpointFailed, e.Err} }

// noteFailure looks at a write's error: when the database can no longer be used (see
// FailedError) it records that and returns the *FailedError; otherwise it returns err.
func (s *Store) noteFailure(err error) error {
	if err == nil {
		return nil
	}
	var f *FailedError
	if errors.As(err, &f) {
		return err
	}
	var cause error
	if gone := s.dirGone(); gone != nil {
		cause = fmt.Errorf("%v (%w)", gone, err)
	} else if !strings.Contains(err.Error(), "cannot create new mem table") {
		return err // Badger formats its error with %+v: its text is all there is
	} else {
		cause = err
	}
	cause = fmt.Errorf("%w; close it (or stop the process) and check the directory and the disk before opening it again", cause)
	s.failed.CompareAndSwap(nil, &FailedError{Path: s.path, Err: cause})
	return s.failed.Load()
}

// usable returns the *FailedError after which the store cannot be used, or nil.
func (s *Store) usable() error {
	if f := s.failed.Load(); f != nil {
		return f
	}
	return nil
}

// Get returns the row stored under key if it is live now (not expired at time.Now()).
// The returned slices are the caller's.
func (s *Store) Get(key []byte) (reconcile.Row, bool, error) {
	if err := s.usable(); err != nil {
		return reconcile.Row{}, false, err
	}
	now := time.Now().UnixNano()
	var row reconcile.Row
	var found bool
	err := s.db.View(func(txn *bdg.Txn) error {
		b, ok, err := txnGet(txn, rowKey(key))
		if err != nil || !ok {
			return err
		}
		r, err := decodeRecord(clone(key), b)
		if err != nil || r.expired(now) {
			return err
		}
		row, found = r.row(), true
		return nil
	})
	if err != nil {
		return reconcile.Row{}, false, fmt.Errorf("get %s: %w", printable(key), err)
	}
	return row, found, nil
}

// Scan calls fn for every row live now with key >= start (nil: from the first key), in
// key order, until fn returns false. It reads one consistent snapshot; fn owns the Row's
// slices and may write to the store (those writes are not seen by this scan).
func (s *Store) Scan(start []byte, fn func(reconcile.Row) bool) error {
	if err := s.usable(); err != nil {
		return err
	}
	now := time.Now().UnixNano()
	err := s.db.View(func(txn *bdg.Txn) error {
		it := txn.NewIterator(bdg.IteratorOptions{PrefetchValues: true, PrefetchSize: 64, Prefix: []byte{prefixRow}})
		defer it.Close()
		for it.Seek(rowKey(start)); it.Valid(); it.Next() {
			item := it.Item()
			b, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			r, err := decodeRecord(item.KeyCopy(nil)[1:], b)
			if err != nil {
				return err
			}
			if r.expired(now) {
				continue
			}
			if !fn(r.row()) {
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	return nil
}

// Root returns the digest of the rows live at now (unix ns): the root of the index less
// the rows expired but not yet purged.
func (s *Store) Root(now int64) (merkle.Digest, error) {
	snap, err := s.openSnapshot(now)
	if err != nil {
		return merkle.Digest{}, fmt.Errorf("root: %w", err)
	}
	defer snap.Close()
	return snap.root, nil
}

// Put stores a row, replacing any row under key (its index entry and expiry too), in one
// transaction. expiresAt is unix ns, 0 for never. In a KeyOrder store the version is
// stored as 0 (key order replicates no version). A row over Options.MaxRowBytes, or a key
// over MaxKeyBytes, is refused with an error wrapping ErrRowTooLarge. For many rows use
// Write: each Put is a transaction of its own.
func (s *Store) Put(key, value []byte, version uint64, expiresAt int64) error {
	_, _, err := s.write(func(w *Writer) error { return w.Put(key, value, version, expiresAt) })
	if err != nil && !errors.Is(err, ErrRowTooLarge) {
		err = fmt.Errorf("put %s: %w", printable(key), err)
	}
	return err
}

// Delete removes the row under key and its index entry in one transaction. Deleting an
// absent key is not an error.
func (s *Store) Delete(key []byte) error {
	_, _, err := s.write(func(w *Writer) error { return w.Delete(key) })
	if err != nil {
		return fmt.Errorf("delete %s: %w", printable(key), err)
	}
	return nil
}

// scanExpired calls fn with the expiry time, key (a copy) and expiry value (valid only
// during the call) of every row the expiry index says is expired at now, oldest first,
// until fn returns false or an error.
func scanExpired(txn *bdg.Txn, now int64, fn func(at int64, key, value []byte) (bool, error)) error {
	var ferr error
	err := txnIterate(txn, []byte{prefixExpiry}, expiryBound(now), false, func(k, v []byte) bool {
		at, key, err := decodeExpiryKey(k)
		if err != nil {
			ferr = err
			return false
		}
		more, err := fn(at, clone(key), v)
		if err != nil {
			ferr = err
			return false
		}
		return more
	})
	if err != nil {
		return err
	}
	return ferr
}

// PurgeExpired physically deletes the rows expired at now (unix ns), with their index
// entries, in transactions of at most 4,096 rows, and returns how many it deleted. When ctx
// ends it stops after the transaction under way and returns ctx's error. On error the count
// covers the transactions already committed; each is whole, so purging again finishes.
func (s *Store) PurgeExpired(ctx context.Context, now int64) (int, error) {
	const batch = 4096
	purged := 0
	for {
		var keys [][]byte
		var times []int64
		if err := s.usable(); err != nil {
			return purged, err
		}
		if err := ctx.Err(); err != nil {
			return purged, err
		}
		err := s.db.View(func(txn *bdg.Txn) error {
			return scanExpired(txn, now, func(at int64, key, _ []byte) (bool, error) {
				keys = append(keys, key)
				times = append(times, at)
				return len(keys) < batch, nil
			})
		})
		if err != nil {
			return purged, fmt.Errorf("purge expired: %w", err)
		}
		if len(keys) == 0 {
			return purged, nil
		}
		_, n, err := s.write(func(w *Writer) error {
			for i, k := range keys {
				if err := w.do(op{kind: opPurge, key: k, expiresAt: times[i], purgeAt: now}); err != nil {
					return err
				}
			}
			return nil
		})
		purged += n
		if err != nil {
			return purged, fmt.Errorf("purge expired: %w", err)
		}
		if len(keys) < batch {
			return purged, nil
		}
	}
}
