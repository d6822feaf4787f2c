package badger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/reconcile-dev/reconcile/merkle"
)

// The index log. A small write (a Write of one transaction, or an Apply, with at most
// logTxnOps index changes, as a service's writes and a sync's apply batches are) does not
// update the index: it records its index changes in one log record, written in the
// transaction that writes its rows,
//
//	"l" || be64(seq) -> uvarint(n) || n × (opFlags || uvarint(len key) || key ||
//	                    be64(version) || be64(expiresAt) || flags || ValueHash)
//
// and the log is folded into the index, in order, in one merkle.Stored.Batch per chunk,
// before anything reads the index (a snapshot, VerifyIndex, Close) and when it would
// outgrow logMaxOps or logMaxBytes. A one-row write then costs Badger its row and one log
// record rather than the row, its index entry and every index node above it; the fold
// writes each node once for thousands of changes. Every fold chunk deletes the records it
// applied in the transaction that applies them, so rows, index and log are consistent at
// every commit, and a writable Open folds what a crash left. Read-only opens refuse a
// store whose log is not empty (they cannot fold it), saying how to fix it.
//
// Folds run under imu, the index's lock, not wmu, the writers': a writable Store runs a
// background folder that folds the log once it holds foldStartOps changes, while small
// writes go on adding to it (they write rows and log records, never index keys, so the
// two need no common lock). A write that must update the index itself (a large one, or
// one whose log record does not fit) takes imu, folding the rest of the log first; if a
// fold committed since its transaction began (Store.indexGen moved), that transaction
// would read index keys as they were before the fold, so it is redone (Writer.lockIndex).
// A reader that needs the index folded takes wmu, so that no write logs more, then imu.
// So no single write pays for folding thousands of others' changes, and on a machine
// with a core to spare the folds run beside the writes. Reads of the log start at
// Store.foldFrom, past the records folds deleted.
const (
	prefixLog = 'l'

	// logTxnOps is the most index changes a transaction logs; larger ones update the index
	// directly (after folding the log), which costs less per change for them.
	logTxnOps = 1024
	// logMaxOps and logMaxBytes bound the log: a write that would pass them folds it.
	logMaxOps         = 8192
	logMaxBytes int64 = 2 << 20
	// foldChunkOps and foldChunkBytes bound one fold transaction.
	foldChunkOps         = 4096
	foldChunkBytes int64 = 1 << 20
	// foldStartOps is how many changes the log holds when a write wakes the background
	// folder.
	foldStartOps = 2048
)

// indexLog is what a Store knows of its log (see Store.log for its locks). The counts may
// run ahead of the log or behind it for a moment: a write counts its record after it has
// committed, and the background folder may fold it before that.
type indexLog struct {
	ops   int
	bytes int64
	next  uint64 // the sequence number of the next record
}

// ErrNotClosedCleanly is wrapped by the error of a read-only Open of a store whose writer
// stopped without closing it, leaving Badger's write-ahead log to replay or index changes
// in the index log to fold (see above): a read-only Open can do neither, and any writable
// Open does both.
var ErrNotClosedCleanly = errors.New("the store was not closed cleanly (its writer stopped without closing it): open it writable once to recover it, for example with `reconcile index verify`, which changes no row")

func logKey(seq uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefixLog
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

// hashSize is the length of a merkle.Hash.
const hashSize = len(merkle.Hash{})

// logOpFlags of one logged op.
const (
	logOpRemove = 1 << iota
	logOpKnown
)

// encodeLogRecord encodes ops as one log record.
func encodeLogRecord(ops []merkle.BatchOp) []byte {
	n := binary.MaxVarintLen64
	for i := range ops {
		n += 1 + binary.MaxVarintLen64 + len(ops[i].Entry.Key) + 8 + 8 + 1 + hashSize
	}
	b := make([]byte, 0, n)
	b = binary.AppendUvarint(b, uint64(len(ops)))
	for i := range ops {
		o := &ops[i]
		var f byte
		if o.Remove {
			f |= logOpRemove
		}
		if o.Known {
			f |= logOpKnown
		}
		b = append(b, f)
		b = binary.AppendUvarint(b, uint64(len(o.Entry.Key)))
		b = append(b, o.Entry.Key...)
		b = binary.BigEndian.AppendUint64(b, o.Entry.Version)
		b = binary.BigEndian.AppendUint64(b, uint64(o.Entry.ExpiresAt))
		b = append(b, o.Entry.Flags)
		b = append(b, o.Entry.ValueHash[:]...)
	}
	return b
}

// decodeLogRecord appends the ops of record b to ops. The keys are copies.
func decodeLogRecord(ops []merkle.BatchOp, b []byte) ([]merkle.BatchOp, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 {
		return ops, logCorrupt("op count")
	}
	b = b[w:]
	const fixed = 8 + 8 + 1 + hashSize
	if n > uint64(len(b)/(1+1+fixed)) {
		return ops, logCorrupt("op count past the record's end")
	}
	for range n {
		if len(b) < 1 {
			return ops, logCorrupt("truncated op")
		}
		f := b[0]
		if f&^(logOpRemove|logOpKnown) != 0 {
			return ops, logCorrupt("unknown op flags")
		}
		kl, w := binary.Uvarint(b[1:])
		if w <= 0 || kl > MaxKeyBytes || uint64(len(b)-1-w) < kl+uint64(fixed) {
			return ops, logCorrupt("truncated op")
		}
		b = b[1+w:]
		var o merkle.BatchOp
		o.Remove, o.Known = f&logOpRemove != 0, f&logOpKnown != 0
		o.Entry.Key = clone(b[:kl])
		b = b[kl:]
		o.Entry.Version = binary.BigEndian.Uint64(b)
		o.Entry.ExpiresAt = int64(binary.BigEndian.Uint64(b[8:]))
		o.Entry.Flags = b[16]
		copy(o.Entry.ValueHash[:], b[17:fixed])
		b = b[fixed:]
		ops = append(ops, o)
	}
	if len(b) != 0 {
		return ops, logCorrupt("bytes after the last op")
	}
	return ops, nil
}

// errLogCorrupt is wrapped by the error of a fold that found a log record it cannot decode.
var errLogCorrupt = errors.New("index log record corrupt")

func logCorrupt(what string) error {
	return fmt.Errorf("%w (%s): run `reconcile index install` to rebuild the index from the rows", errLogCorrupt, what)
}

// loadLog finds the log's next sequence number, and folds what a writer that stopped left
// in the log (a read-only store refuses such a log). A log that does not decode is left
// for RebuildIndex, which drops it: Open succeeds so that it can run, and every read of
// the index reports the damage and how to repair it.
func (s *Store) loadLog() error {
	var last []byte
	err := s.db.View(func(txn *bdg.Txn) error {
		return txnIterate(txn, []byte{prefixLog}, []byte{prefixLog + 1}, true, func(k, _ []byte) bool {
			last = clone(k)
			return false
		})
	})
	if err != nil {
		return fmt.Errorf("read the index log: %w", err)
	}
	if last == nil {
		return nil
	}
	if s.opts.ReadOnly {
		return ErrNotClosedCleanly
	}
	if len(last) == 9 {
		s.log.next = binary.BigEndian.Uint64(last[1:]) + 1
	}
	// How much the log holds is not known: as full, so that writes fold it before anything.
	s.logCount(logMaxOps, logMaxBytes)
	if err := s.foldNow(true); err != nil && !errors.Is(err, errLogCorrupt) {
		return err
	}
	return nil
}

// logFits reports whether a log record of ops changes and size bytes keeps the log within
// its bounds.
func (s *Store) logFits(ops int, size int64) bool {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.log.ops+ops <= logMaxOps && s.log.bytes+size <= logMaxBytes
}

// logCount adds ops changes and size bytes to the log's counts (negative: folded), and
// reports how many changes it then holds.
func (s *Store) logCount(ops int, size int64) int {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	s.log.ops += ops
	s.log.bytes += size
	s.logPending.Store(int64(s.log.ops))
	return s.log.ops
}

// logReset sets the log's counts to empty: called by a fold that found the log empty
// with wmu held, so that no write could add to it.
func (s *Store) logReset() {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	s.log.ops, s.log.bytes = 0, 0
	s.logPending.Store(0)
}

// fold applies the log to the index through v's cache, in transactions of its own that each
// apply a prefix of the log and delete it, until it finds the log empty (or stop is
// closed). Called with imu held, and with wmu too when exclusive, before v's transaction
// writes anything to the index: v's transaction, if begun before, reads the index keys the
// fold wrote from the cache, which holds them (as after a background commit, Writer.commit).
// After an error v's cache holds writes that may not have committed: drop v.
func (s *Store) fold(v *view, exclusive bool, stop <-chan struct{}) error {
	if len(v.c.dirty) > 0 {
		return errors.New("index log: fold with index writes pending") // a bug, not a store problem
	}
	savedTxn, savedP := v.c.txn, v.c.p
	defer func() { v.c.txn, v.c.p = savedTxn, savedP }()
	var p pending
	v.c.p = &p
	for {
		more, err := s.foldChunk(v)
		if err != nil {
			return fmt.Errorf("fold the index log: %w", err)
		}
		if !more {
			break
		}
		select {
		case <-stop:
			return nil
		default:
		}
	}
	if exclusive {
		s.logReset()
	}
	return nil
}

// foldChunk folds the oldest log records, up to foldChunkOps changes or foldChunkBytes,
// and reports whether it found any.
func (s *Store) foldChunk(v *view) (bool, error) {
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	v.c.txn = txn
	var ops []merkle.BatchOp
	var keys [][]byte
	var size int64
	var derr error
	err := txnIterate(txn, logKey(s.foldFrom.Load()), []byte{prefixLog + 1}, false, func(k, val []byte) bool {
		if len(keys) > 0 && (len(ops) >= foldChunkOps || size >= foldChunkBytes) {
			return false
		}
		if len(k) != 9 {
			derr = logCorrupt("key length")
			return false
		}
		ops, derr = decodeLogRecord(ops, val)
		keys = append(keys, clone(k))
		size += int64(len(val))
		return derr == nil
	})
	if err == nil {
		err = derr
	}
	if err != nil || len(keys) == 0 {
		return false, err
	}
	if err := v.idx.Batch(ops); err != nil {
		return false, err
	}
	if err := v.c.flush(); err != nil {
		return false, err
	}
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return false, err
		}
	}
	if err := txn.Commit(); err != nil {
		return false, err
	}
	s.foldFrom.Store(binary.BigEndian.Uint64(keys[len(keys)-1][1:]) + 1)
	s.indexGen.Add(1)
	s.logCount(-len(ops), -size)
	return true, nil
}

// foldNow folds the log through the kept cache. Called with imu held, and with wmu too
// when exclusive.
func (s *Store) foldNow(exclusive bool) error {
	v := s.newView(true)
	if err := s.fold(v, exclusive, nil); err != nil {
		return err
	}
	s.keep(v)
	return nil
}

// folder is the background folder: a goroutine that folds the log when kicked, until
// stop is closed.
type folder struct {
	kick, stop, done chan struct{}
	once             sync.Once
}

func (s *Store) startFolder() {
	f := &folder{kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	s.folder = f
	go func() {
		defer close(f.done)
		for {
			select {
			case <-f.stop:
				return
			case <-f.kick:
			}
			s.imu.Lock()
			if s.usable() == nil {
				v := s.newView(true)
				// An error leaves the log to the next fold in the foreground, which
				// reports it (or, when the database failed, to every call; see noteFailure).
				if err := s.noteFailure(s.fold(v, false, f.stop)); err == nil {
					s.keep(v)
				}
			}
			s.imu.Unlock()
		}
	}()
}

// kickFolder wakes the background folder when the log holds ops changes, foldStartOps or
// more.
func (s *Store) kickFolder(ops int) {
	if ops >= foldStartOps {
		s.wakeFolder()
	}
}

// wakeFolder wakes the background folder, if it runs.
func (s *Store) wakeFolder() {
	if s.folder == nil {
		return
	}
	select {
	case s.folder.kick <- struct{}{}:
	default: // already kicked
	}
}

// stopFolder stops the background folder, if it runs, and waits for it. Kicks after that
// do nothing.
func (s *Store) stopFolder() {
	if f := s.folder; f != nil {
		f.once.Do(func() { close(f.stop) })
		<-f.done
	}
}

// readTxn opens a read transaction in which the index holds every committed write, and
// returns holding snapMu shared (the caller releases it with the transaction; see
// RebuildIndex). When the log holds changes it folds them first, holding wmu while it
// opens the transaction. While it waits for wmu it keeps looking at the log: a Write that
// updates the index directly folds the log at its first commit, and the background folder
// may empty it, so a snapshot waits for a long load's first transaction, not for the whole
// load. Lock order: wmu, imu, then snapMu, as RebuildIndex takes them; snapMu is never
// held while waiting for wmu.
func (s *Store) readTxn() (*bdg.Txn, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	if txn, err := s.readTxnIfFolded(); txn != nil || err != nil {
		return txn, err
	}
	if s.opts.ReadOnly {
		return nil, ErrNotClosedCleanly
	}
	s.wakeFolder() // it may empty the log before wmu is free
	locked := make(chan struct{})
	go func() {
		s.wmu.Lock()
		close(locked)
	}()
	for wait := 100 * time.Microsecond; ; wait = min(2*wait, 10*time.Millisecond) {
		select {
		case <-locked:
			defer s.wmu.Unlock()
			s.imu.Lock()
			err := s.foldNow(true)
			s.imu.Unlock()
			if err != nil {
				return nil, err
			}
			s.snapMu.RLock()
			return s.db.NewTransaction(false), nil
		case <-time.After(wait):
		}
		if txn, err := s.readTxnIfFolded(); txn != nil || err != nil {
			go func() { // the lock is not needed after all
				<-locked
				s.wmu.Unlock()
			}()
			return txn, err
		}
	}
}

// readTxnIfFolded opens a read transaction, holding snapMu shared, if the log is empty in
// it, and returns nil, holding nothing, otherwise.
func (s *Store) readTxnIfFolded() (*bdg.Txn, error) {
	if s.logPending.Load() != 0 {
		return nil, nil
	}
	s.snapMu.RLock()
	from := s.foldFrom.Load()
	txn := s.db.NewTransaction(false)
	empty, err := logEmpty(txn, from)
	if err != nil || !empty { // not empty: a small write committed since the check
		txn.Discard()
		s.snapMu.RUnlock()
		return nil, err
	}
	return txn, nil
}

// logEmpty reports whether txn sees no log record from sequence number from on: from
// must be a value of Store.foldFrom read before txn began.
func logEmpty(txn *bdg.Txn, from uint64) (bool, error) {
	empty := true
	err := txnIterate(txn, logKey(from), []byte{prefixLog + 1}, false, func(_, _ []byte) bool {
		empty = false
		return false
	})
	return empty, err
}
