package badger

import (
	"bytes"
	"errors"
	"fmt"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

type opKind uint8

const (
	opPut opKind = iota
	opDelete
	opPurge // delete the row if it is expired at purgeAt; drop a stale expiry key
)

// op is one row write, kept until its transaction commits so that it can be replayed in a
// smaller transaction after bdg.ErrTxnTooBig.
type op struct {
	kind      opKind
	key       []byte
	rec       []byte      // opPut: the encoded record
	valueHash merkle.Hash // opPut: of the record's value
	expiresAt int64       // opPurge: the expiry key's time
	purgeAt   int64
}

// putEntry returns the index entry of an opPut. (An op keeps its entry in pieces: a
// large Write keeps every op of a transaction, and the key and the version, expiry and
// flags in the record's header need not be held twice.)
func (o *op) putEntry() merkle.Entry {
	r, _ := decodeRecord(o.key, o.rec) // o.rec was encoded by encodeRecord
	e := r.position()
	e.ValueHash = o.valueHash
	return e
}

// WriteError is returned by Write when it fails after committing some transactions:
// the first Committed writes (in call order) are durable, the rest were not written.
type WriteError struct {
	Committed int
	Err       error
}

// Error says how many writes committed and why the rest did not.
func (e *WriteError) Error() string {
	rows := "rows"
	if e.Committed == 1 {
		rows = "row"
	}
	return fmt.Sprintf("write: %d %s committed, the rest not written: %v", e.Committed, rows, e.Err)
}

// Unwrap returns the cause.
func (e *WriteError) Unwrap() error { return e.Err }

// Writer batches writes for Store.Write. It is valid only during the Write callback.
type Writer struct {
	s *Store
	// v is the cache and index the transactions of this Write share (nil until needed,
	// and again after a failed transaction).
	v *view
	// ops are the writes applied to the open transaction, kept to redo them in smaller
	// transactions after bdg.ErrTxnTooBig; wroteTxn counts those that changed a row.
	ops      []op
	wroteTxn int
	// committed counts writes in committed transactions; wrote counts those that changed
	// a row (purges of rows that are no longer expired do not).
	committed, wrote int
	// err is the first failure; the open transaction is then unusable and every later
	// call returns err.
	err error
	// applied counts the writes applied so far: a view is primed once there are
	// primeAfter of them.
	applied int
	// inflight is the transaction Badger is writing while the next one is built (nil:
	// none); it must have committed before the next one is sent.
	inflight *inflightTxn
	// index says the Write holds imu (see lockIndex); until it does, its views have no
	// index and gen is the Store's indexGen from before the open transaction began.
	index bool
	gen   uint64
}

// inflightTxn is a transaction sent with CommitWith: done receives its outcome.
type inflightTxn struct {
	done       chan error
	ops, wrote int
}

// view is what the transactions of a Write read and write through: the rows (and expiry
// keys) by key, the index through its ordered cache. See cache. A view of a write that
// does not hold imu has no index (c and idx are nil): its index changes can only go to
// the index log.
type view struct {
	s      *Store
	txn    *bdg.Txn
	p      pending
	rows   *flat
	c      *cache
	idx    *merkle.Stored
	primed bool
	// indexPrimed says prime has primed c too.
	indexPrimed bool
	// ixops are the index changes of the open transaction, applied in one
	// merkle.Stored.Batch when it commits; ixEst is what they add to p meanwhile.
	ixops []merkle.BatchOp
	ixEst pending
	// logged is what the open transaction adds to the index log (see log.go), counted
	// into the Store's once it commits.
	logged struct {
		ops   int
		bytes int64
	}
}

// newView returns a view for the next write; with index (imu held), over the index cache
// the last index write kept, if any (the view then owns it until keep).
func (s *Store) newView(index bool) *view {
	v := &view{s: s, p: pending{threshold: s.valueThreshold}}
	v.rows = newFlat(&v.p)
	if index {
		v.takeIndex()
	}
	return v
}

// takeIndex gives v the index, through the cache the last index write kept, if any.
// Called with imu held.
func (v *view) takeIndex() {
	s := v.s
	if k := s.kept; k != nil {
		s.kept = nil
		v.c, v.idx = k.c, k.idx
		v.c.p = &v.p
	} else {
		v.c = newCache(&v.p)
		v.idx = s.newIndex(v.c)
	}
	v.c.txn = v.txn
}

// keptEntriesMax is how many index entries (level 0) a kept cache may hold before keep
// drops them all (once they are half of it).
const keptEntriesMax = 4096

// keptIndex is an index cache kept from one write to the next, with the index over it.
type keptIndex struct {
	c   *cache
	idx *merkle.Stored
}

// keep holds on to the index cache of v, whose writes have all committed, for the next
// index write (called with imu held; a view without the index keeps nothing): what it
// knows stays true because every index write goes through a view while imu is held.
// Without it each write would read the index's upper nodes from Badger again, and those
// are rewritten by nearly every write: Badger keeps every version of a
// key in its memtables until they are flushed and compacted, and a reverse seek onto a key
// walks all of them, so a service making many small writes paid a growing cost per write
// (2.4–2.6 ms a write, averaged over 10,000 one-row writes into a 50,000-row store; see
// BenchmarkWriteService). A cache grown past maxCacheNodes or maxCacheBytes keeps only
// the index's nodes (level 1 up, about 1/16 of its records), which hold the hottest keys,
// or the levels from 2 up if those are still too many, and so on. Keeping level 1 spares a
// long Write a Badger seek for each scattered change's level-1 node: `reconcile gen` of 1M
// rows (3.5M writes in one Write) took 62.4-64.1 s against 67.7-71.0 s when trimming
// started at level 2 (four runs each, alternating). A cache holding more than
// keptEntriesMax index entries (level 0) drops them first, since writes rarely read an
// entry again (a row records its own: merkle.BatchOp.Known): one-row service writes 21.4-21.6
// against 22.4-22.5 us, 100-row writes 11.5-12.0 against 12.6-12.7 us a row (two runs each,
// alternating).
func (s *Store) keep(v *view) {
	if v == nil || v.c == nil || len(v.c.dirty) > 0 {
		return
	}
	k := &keptIndex{c: v.c, idx: v.idx}
	// Dropping the entries copies the rest of the cache, so only once they are at least
	// half of it: each copy then costs no more than the entries added since the last.
	if k.c.entries > keptEntriesMax && 2*k.c.entries >= k.c.nodes {
		k.c = k.c.suffix([]byte{prefixIndex, 1}) // the nodes, level 1 up, and the meta key
		k.idx = s.newIndex(k.c)
	}
	for level := 1; level <= 0xFF && (k.c.nodes > maxCacheNodes || k.c.size > maxCacheBytes); level++ {
		k.c = k.c.suffix([]byte{prefixIndex, byte(level)}) // the levels from level up, and the meta key
		k.idx = s.newIndex(k.c)
	}
	k.c.txn, k.c.p = nil, nil
	s.kept = k
}

// begin starts a read-write transaction under v.
func (s *Store) begin(v *view) {
	v.setTxn(s.db.NewTransaction(true))
}

// setTxn makes txn v's transaction.
func (v *view) setTxn(txn *bdg.Txn) {
	v.txn, v.rows.txn = txn, txn
	if v.c != nil {
		v.c.txn = txn
	}
}

// discard drops v's transaction, if any.
func (v *view) discard() {
	if v != nil && v.txn != nil {
		v.txn.Discard()
		v.setTxn(nil)
	}
}

// queueIndex records an index change for the batch applied at commit, estimating what it
// will write: its entry, and a level-1 node of its own (an overestimate when many changes
// share their nodes, as in a bulk load; about right for scattered writes to a large
// index). The upper levels' nodes are few.
//
// known says the index holds, before this change, nothing at e's position (an insert) or
// e itself (a remove): see merkle.BatchOp.Known.
func (v *view) queueIndex(e merkle.Entry, remove, known bool) {
	v.ixops = appendDoubling(v.ixops, merkle.BatchOp{Entry: e, Remove: remove, Known: known})
	k := int64(2 + len(e.Key) + 8) // prefix, level, position
	val := int64(73)
	if remove {
		val = 0
	}
	est := pending{count: 2, bytes: k + val + 12 + k + 1 + 40 + 12, raw: val + 40}
	v.ixEst.count += est.count
	v.ixEst.bytes += est.bytes
	v.ixEst.raw += est.raw
	v.p.count += est.count
	v.p.bytes += est.bytes
	v.p.raw += est.raw
}

// errNeedIndex is returned by flushIndex, having changed nothing, when v's index changes
// must go to the index but v has none: the caller takes imu and the index (or redoes the
// transaction, if the index moved since it began) and flushes again.
var errNeedIndex = errors.New("badger: the write must update the index") // never leaves the package

// flushIndex applies the queued index changes: with logOK, into one index log record when
// the transaction is small and the log has room (see log.go); otherwise through the cache,
// after folding the log into the index.
func (v *view) flushIndex(logOK bool) error {
	if len(v.ixops) == 0 {
		return nil
	}
	s := v.s
	var rec []byte
	if logOK && len(v.ixops) <= logTxnOps {
		if rec = encodeLogRecord(v.ixops); !s.logFits(len(v.ixops), int64(len(rec))) {
			rec = nil
		}
	}
	if rec == nil && v.c == nil {
		return errNeedIndex
	}
	v.p.count -= v.ixEst.count
	v.p.bytes -= v.ixEst.bytes
	v.p.raw -= v.ixEst.raw
	v.ixEst = pending{}
	defer func() {
		clear(v.ixops)
		v.ixops = v.ixops[:0]
	}()
	if rec != nil {
		v.rows.Set(logKey(s.log.next), rec)
		v.logged.ops, v.logged.bytes = len(v.ixops), int64(len(rec))
		return nil
	}
	// With wmu and imu held the log's counts are exact: every logged write has counted its
	// record, and every fold has counted what it folded.
	if s.logPending.Load() != 0 {
		if err := s.fold(v, true, nil); err != nil {
			return err
		}
	}
	if err := v.idx.Batch(v.ixops); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	return nil
}

// committed counts what v's transaction, now committed, added to the index log, and wakes
// the background folder when the log has grown enough.
func (v *view) committed() {
	if v.logged.ops == 0 {
		return
	}
	s := v.s
	s.log.next++
	n := s.logCount(v.logged.ops, v.logged.bytes)
	v.logged.ops, v.logged.bytes = 0, 0
	s.kickFolder(n)
}

// flush sends v's writes into its transaction; with logOK its index changes may go to the
// index log.
func (v *view) flush(logOK bool) error {
	err := v.flushIndex(logOK)
	if err == nil {
		err = v.rows.flush()
	}
	if err == nil && v.c != nil {
		err = v.c.flush()
	}
	return err
}

// commit flushes v's writes and commits its transaction (see flush for logOK). After
// errNeedIndex v is as it was.
func (v *view) commit(logOK bool) error {
	err := v.flush(logOK)
	if errors.Is(err, errNeedIndex) {
		return err
	}
	if err == nil {
		err = v.txn.Commit()
	}
	if err == nil {
		v.committed()
	}
	v.logged.ops, v.logged.bytes = 0, 0
	v.discard()
	v.p.count, v.p.bytes, v.p.raw = 0, 0, 0
	return err
}

// big reports whether v holds more than a Write should keep between transactions.
func (v *view) big() bool {
	nodes, size := len(v.rows.m), v.rows.size
	if v.c != nil {
		nodes += v.c.nodes
		size += v.c.size
	}
	return nodes > maxCacheNodes || size > maxCacheBytes
}

// primeAfter is how many writes a Write applies before it primes its view: priming costs
// a few Badger iterators, which a small write would spend on nothing.
const primeAfter = 32

// prime learns, with a seek or two per key space, which row keys and index keys cannot
// exist: in an empty store, or past the last key of a growing one, that answers the reads
// of new keys without asking Badger for each. What it learns stays true for the rest of
// the Write: the rows already written are in the view's map, which is read first. A view
// without the index primes its rows only; it is called again once the view has the index.
func (v *view) prime() error {
	if !v.primed {
		v.primed = true
		if err := v.rows.prime([]byte{prefixRow}, []byte{prefixRow + 1}); err != nil {
			return err
		}
	}
	if v.c == nil || v.indexPrimed {
		return nil
	}
	v.indexPrimed = true
	return v.c.Iterate([]byte{prefixIndex}, []byte{prefixIndex + 1}, false, func(_, _ []byte) bool { return false })
}

// Write calls fn with a Writer and commits its writes in as few Badger transactions as
// fit: a transaction is committed when it nears Badger's size limit (Badger writes it
// while the next one is built), and one that still turns out too big (bdg.ErrTxnTooBig)
// is redone as two halves. Each row's write (row, index entry, expiry key) is always in
// one transaction, and writes commit in call order.
//
// Write is not atomic: if fn or a commit fails, the transactions committed before stay
// committed and the error is a *WriteError whose Committed says how many writes they
// held; the writes after them are discarded. Writes issued through w are not visible to
// reads outside Write until their transaction commits. Other writers wait for Write, so fn
// must not call the Store's own writes (Put, Delete, Write, Apply, PurgeExpired): they
// would wait for ever; reads are fine. The Writer is valid only during fn.
func (s *Store) Write(fn func(w *Writer) error) error {
	committed, _, err := s.write(fn)
	if err != nil {
		return &WriteError{Committed: committed, Err: err}
	}
	return nil
}

// write runs Write and reports how many writes committed and how many changed a row.
func (s *Store) write(fn func(w *Writer) error) (committed, wrote int, err error) {
	if s.opts.ReadOnly {
		return 0, 0, reconcile.ErrReadOnly
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.usable(); err != nil {
		return 0, 0, err
	}
	w := &Writer{s: s}
	defer func() {
		w.v.discard()
		w.v, w.err = nil, errWriterDone
		if w.index {
			s.imu.Unlock()
		}
	}()
	err = fn(w)
	if err == nil {
		err = w.err
	}
	if err == nil {
		err = w.commit(false)
	}
	if err != nil {
		w.settle() // a transaction sent before the failure still counts if it committed
		err = s.noteFailure(err)
	} else if w.index {
		s.keep(w.v)
	}
	return w.committed, w.wrote, err
}

// begin starts a transaction under v, noting the index's generation if the Write does
// not hold the index.
func (w *Writer) begin(v *view) {
	if !w.index {
		w.gen = w.s.indexGen.Load()
	}
	w.s.begin(v)
}

// lockIndex takes imu for the rest of the Write, if it does not hold it yet, and gives its
// view the index. If a fold committed since the open transaction began, that transaction
// would read index keys as they were before the fold, so its writes are redone in a new
// one.
func (w *Writer) lockIndex() error {
	if w.index {
		return nil
	}
	w.index = true
	if w.s.lockIndexFor(w.v, w.gen) {
		return w.redo()
	}
	return nil
}

// lockIndexFor takes imu and gives v (nil: none) the index, unless v's transaction began
// when indexGen was not gen: a fold has committed since, and the transaction would read
// index keys as they were before it; lockIndexFor then reports stale, and the caller
// redoes the transaction in a new view.
func (s *Store) lockIndexFor(v *view, gen uint64) (stale bool) {
	s.imu.Lock()
	if v == nil {
		return false
	}
	if v.txn != nil && s.indexGen.Load() != gen {
		return true
	}
	v.takeIndex()
	return false
}

// redo drops the open transaction and applies its writes again in a new one, once the
// transaction sent before it, if any, has committed (the new view does not hold its
// writes).
func (w *Writer) redo() error {
	if err := w.settle(); err != nil {
		return err
	}
	ops := w.ops
	w.ops, w.wroteTxn = nil, 0
	w.v.discard()
	w.v = w.s.newView(w.index)
	w.begin(w.v)
	for i := range ops {
		wrote, err := w.s.apply(w.v, &ops[i])
		if err != nil {
			return err
		}
		w.ops = appendDoubling(w.ops, ops[i])
		if wrote {
			w.wroteTxn++
		}
	}
	return nil
}

// Put queues an upsert of one row (see Store.Put). It fails at once for a row over
// Options.MaxRowBytes or a key over MaxKeyBytes; the Writer then refuses further writes.
func (w *Writer) Put(key, value []byte, version uint64, expiresAt int64) error {
	if w.err != nil {
		return w.err
	}
	if err := w.s.checkRow(key, value); err != nil {
		w.err = fmt.Errorf("put: %w", err)
		return w.err
	}
	return w.do(w.s.putOp(key, value, version, expiresAt, 0))
}

// errWriterDone is what a Writer's calls return once its Write has returned.
var errWriterDone = errors.New("badger: Writer used after its Write returned (a Writer is valid only during the function Write calls); nothing was written")

// Delete queues the removal of the row under key; an absent key is not an error.
func (w *Writer) Delete(key []byte) error {
	if w.err != nil {
		return w.err
	}
	if len(key) > MaxKeyBytes {
		return nil // no such row can exist
	}
	return w.do(op{kind: opDelete, key: clone(key)})
}

// CheckRow returns the error Put would return for the row's size (a key over MaxKeyBytes,
// a row over Options.MaxRowBytes; wraps ErrRowTooLarge), without writing: a caller that
// must write all of its rows or none (Write is not atomic) checks them all first.
func (s *Store) CheckRow(key, value []byte) error { return s.checkRow(key, value) }

func (s *Store) checkRow(key, value []byte) error {
	if err := s.checkSize(key, value); err != nil {
		return fmt.Errorf("key %s: %w", printable(key), err)
	}
	return nil
}

// checkSize is checkRow's error without the key, for callers that name the row
// themselves (Apply: a session labels the rows it quarantines in its endpoints' terms).
func (s *Store) checkSize(key, value []byte) error {
	if len(key) > MaxKeyBytes {
		return fmt.Errorf("%w: key of %d bytes, limit %d", ErrRowTooLarge, len(key), MaxKeyBytes)
	}
	if n := len(key) + len(value); n > s.opts.MaxRowBytes {
		return fmt.Errorf("%w: %d bytes, limit %d (Options.MaxRowBytes; in a badger:// URL, ?max_row=SIZE)", ErrRowTooLarge, n, s.opts.MaxRowBytes)
	}
	return nil
}

func (s *Store) putOp(key, value []byte, version uint64, expiresAt int64, flags byte) op {
	if s.ord == merkle.KeyOrder {
		version = 0 // key order replicates no version (DESIGN §2)
	}
	key = clone(key)
	rec := encodeRecord(version, expiresAt, flags, value)
	return op{kind: opPut, key: key, rec: rec, valueHash: merkle.ValueHash(value)}
}

// full reports whether the transaction of v should commit before taking another write:
// near Badger's limits. Smaller transactions were tried on 2026-12-02: at a third of the
// limits a 50,000-row load overlapped more of its work with Badger's (insert 12.7-12.9 ->
// 10.8-11.1 us/row, append 7.7-8.2 -> 6.4-6.8, BenchmarkWrite*), but a long Write paid
// more, each transaction rewriting the upper nodes its writes touch: `reconcile gen
// --rows 300000` (a million inserts, updates and deletes in one Write) took 21.6-25.7 s
// against 20.0-23.1 s, with 10-20% more CPU (eight runs each, alternating). Long loads
// are the ones whose time matters, so the limit stayed.
func (s *Store) full(v *view) bool {
	return v.p.count >= s.maxTxnCount*9/10 || v.p.bytes >= s.maxTxnBytes*9/10 || v.p.raw >= maxTxnRawBytes
}

// do applies o in the open transaction, committing it when it is full.
func (w *Writer) do(o op) error {
	if w.err != nil {
		return w.err
	}
	if err := w.doOnce(o); err != nil {
		w.err = err
		w.v.discard()
		w.v = nil
		return err
	}
	return nil
}

func (w *Writer) doOnce(o op) error {
	if w.v == nil {
		w.v = w.s.newView(w.index)
	}
	if w.v.txn == nil {
		w.begin(w.v)
	}
	if !w.index && len(w.v.ixops) >= logTxnOps {
		// Too many changes to log: take the index before the transaction grows, as
		// lockIndex may have to redo it.
		if err := w.lockIndex(); err != nil {
			return err
		}
	}
	if (!w.v.primed || (w.v.c != nil && !w.v.indexPrimed)) && w.applied >= primeAfter {
		if err := w.v.prime(); err != nil {
			return err
		}
	}
	wrote, err := w.s.apply(w.v, &o)
	if err != nil {
		return err
	}
	w.applied++
	w.ops = appendDoubling(w.ops, o)
	if wrote {
		w.wroteTxn++
	}
	if w.s.full(w.v) {
		return w.commit(true)
	}
	return nil
}

// commit commits the open transaction; when Badger finds it too big, its writes are
// redone in smaller transactions. With background set (a full transaction in the middle
// of a Write) it sends the transaction with CommitWith and returns while Badger writes
// it, the next transaction being built meanwhile: that one is begun before the commit is
// sent (Badger would make a transaction begun after wait for it), so it reads the state
// before it, and every key the sent transaction wrote is answered by the view's caches,
// which hold them. So a view that is to be dropped is committed in the foreground. The
// next commit waits for the one sent (settle), so transactions commit in call order and
// a failure stops the Write with the writes before it committed.
func (w *Writer) commit(background bool) error {
	if w.v == nil || w.v.txn == nil {
		return w.settle()
	}
	// Only a Write of one transaction logs its index changes: a longer one is a load, which
	// keeps the index current as it goes.
	logOK := !background && w.inflight == nil && w.committed == 0
	err := w.v.flush(logOK)
	if errors.Is(err, errNeedIndex) {
		if err = w.lockIndex(); err == nil {
			err = w.v.flush(logOK)
		}
	}
	ops, wrote := w.ops, w.wroteTxn
	w.ops, w.wroteTxn = nil, 0
	if err == nil {
		err = w.settle()
	}
	if err != nil {
		w.v.discard()
		w.v = nil // its cache holds writes that did not commit
		if errors.Is(err, bdg.ErrTxnTooBig) {
			if err := w.settle(); err != nil {
				return err
			}
			return w.replay(ops)
		}
		return err
	}
	v := w.v
	v.p.count, v.p.bytes, v.p.raw = 0, 0, 0
	if background && !v.big() {
		if !w.index {
			w.gen = w.s.indexGen.Load()
		}
		next := w.s.db.NewTransaction(true)
		f := &inflightTxn{done: make(chan error, 1), ops: len(ops), wrote: wrote}
		v.txn.CommitWith(func(err error) { f.done <- err })
		w.inflight = f
		v.setTxn(next)
	} else {
		err = v.txn.Commit()
		v.discard()
		if err != nil {
			w.v = nil
			return err
		}
		v.committed()
		w.committed += len(ops)
		w.wrote += wrote
		if v.big() {
			w.s.keep(v) // trimmed for the next view
			w.v = nil
		}
	}
	clear(ops)
	w.ops = ops[:0] // the next transaction reuses the memory
	return nil
}

// settle waits for the transaction sent in the background, if any, and counts its writes
// once it has committed.
func (w *Writer) settle() error {
	f := w.inflight
	if f == nil {
		return nil
	}
	w.inflight = nil
	if err := <-f.done; err != nil {
		return err
	}
	w.committed += f.ops
	w.wrote += f.wrote
	return nil
}

// replay redoes ops in two transactions of half as many, recursively.
func (w *Writer) replay(ops []op) error {
	if len(ops) == 1 {
		return w.replayOne(ops)
	}
	h := len(ops) / 2
	if err := w.replayOne(ops[:h]); err != nil {
		return err
	}
	return w.replayOne(ops[h:])
}

// replayOne redoes ops in one transaction, splitting further when it is too big.
func (w *Writer) replayOne(ops []op) error {
	if err := w.lockIndex(); err != nil { // replays are rare: take the index for them
		return err
	}
	v := w.s.newView(true)
	w.s.begin(v)
	defer v.discard()
	wrote := 0
	err := func() error {
		for i := range ops {
			ok, err := w.s.apply(v, &ops[i])
			if err != nil {
				return err
			}
			if ok {
				wrote++
			}
		}
		return v.commit(true)
	}()
	if errors.Is(err, bdg.ErrTxnTooBig) {
		if len(ops) == 1 {
			return fmt.Errorf("row %s does not fit in one badger transaction: %w", printable(ops[0].key), err)
		}
		return w.replay(ops)
	}
	if err != nil {
		return err
	}
	w.s.keep(v)
	w.committed += len(ops)
	w.wrote += wrote
	return nil
}

// apply performs one op in t's transaction: the row record, its index entry and its expiry key move
// together. It reports whether anything changed.
func (s *Store) apply(t *view, o *op) (bool, error) {
	rk := rowKey(o.key)
	b, ok, err := t.rows.Get(rk)
	if err != nil {
		return false, err
	}
	var old *record
	if ok {
		r, err := decodeRecord(o.key, b)
		if err != nil {
			return false, err
		}
		old = &r
	}
	switch o.kind {
	case opPut:
		return true, s.upsert(t, rk, old, o.rec, o.putEntry())
	case opDelete:
		if old == nil {
			return false, nil
		}
		return true, s.remove(t, rk, old)
	case opPurge:
		if old == nil || !old.expired(o.purgeAt) {
			if old == nil || old.expiresAt != o.expiresAt {
				// An expiry key without its row: drop it so that purges make progress.
				t.rows.Delete(expiryKey(o.expiresAt, o.key))
				return false, nil
			}
			return false, nil
		}
		return true, s.remove(t, rk, old)
	}
	return false, fmt.Errorf("unknown write kind %d", o.kind)
}

// upsert replaces old (nil: none) with the row record rec whose entry is e.
func (s *Store) upsert(t *view, rk []byte, old *record, rec []byte, e merkle.Entry) error {
	if old != nil {
		if old.same(e.Version, e.ExpiresAt, e.Flags, rec[headerSize:]) {
			return nil // the row is already there
		}
		// The old entry goes; at the same position the insert after it replaces it (the
		// batch reads the remove as what the slot held).
		queueRemove(t, old)
		if old.expiresAt != 0 && old.expiresAt != e.ExpiresAt {
			t.rows.Delete(expiryKey(old.expiresAt, old.key))
		}
	}
	t.rows.Set(rk, rec)
	// Known: the new position is empty, or holds the entry just removed, since only this
	// key's row can hold an entry there.
	t.queueIndex(e, false, true)
	if e.ExpiresAt != 0 {
		// Rewritten whenever the row is, also at the same expiry: its value is the entry.
		t.rows.Set(expiryKey(e.ExpiresAt, e.Key), expiryValue(e))
	}
	return nil
}

// remove deletes old, stored at rk, with its index entry and expiry key.
func (s *Store) remove(t *view, rk []byte, old *record) error {
	queueRemove(t, old)
	if old.expiresAt != 0 {
		t.rows.Delete(expiryKey(old.expiresAt, old.key))
	}
	t.rows.Delete(rk)
	return nil
}

// knownRemoveMax is the largest value whose entry a remove computes from the row rather
// than reading it from the index: hashing a value costs about as much as that read (a
// Badger Get, 2-5 us in a large store) at a few KiB.
const knownRemoveMax = 4 << 10

// queueRemove queues the removal of old's index entry. The row is the index's record of
// what it holds (they are written in one transaction), so for a small value the entry is
// computed from it and the index need not be read.
func queueRemove(t *view, old *record) {
	if len(old.value) <= knownRemoveMax {
		t.queueIndex(old.entry(), true, true)
		return
	}
	t.queueIndex(old.position(), true, false)
}

// appendDoubling is append that doubles a full slice's capacity. append grows large slices
// by a quarter, so a slice built up to n elements allocates about 5n in all, each block
// fresh memory the kernel must fault in (on a virtual machine a page fault can cost 10
// µs); doubling allocates about 2n.
func appendDoubling[T any](s []T, v T) []T {
	if len(s) == cap(s) {
		n := make([]T, len(s), max(2*cap(s), 4))
		copy(n, s)
		s = n
	}
	return append(s, v)
}

func entriesEqual(a, b merkle.Entry) bool {
	return a.Version == b.Version && a.ExpiresAt == b.ExpiresAt && a.Flags == b.Flags &&
		a.ValueHash == b.ValueHash && bytes.Equal(a.Key, b.Key)
}
