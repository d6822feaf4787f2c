package badger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// Schema is the schema fingerprint of every Badger store: a plain keyspace.
const Schema = reconcile.SchemaKV

// Open takes a snapshot over one Badger read transaction that sees the rows live at now.
//
// Rows expired at now stay in the stored index until PurgeExpired, so Open reads them from
// the expiry index (one scan of the expired-but-not-purged rows) into a sorted in-memory
// overlay with prefix digests: every digest subtracts the overlay, and Entries and Split
// skip its entries. The snapshot is not safe for concurrent use; Fork gives other
// goroutines their own views of it.
func (s *Store) Open(ctx context.Context, now int64) (reconcile.Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open snapshot: %w", err)
	}
	snap, err := s.openSnapshot(now)
	if err != nil {
		return nil, fmt.Errorf("open snapshot: %w", err)
	}
	return snap, nil
}

// snapshot is a Store's reconcile.Snapshot: the stored index read through one Badger read
// transaction, less the overlay of expired entries.
type snapshot struct {
	s       *Store
	txn     *bdg.Txn
	kv      *readKV
	idx     *merkle.Stored
	now     int64
	expired *merkle.Sorted      // entries expired at now, still in idx
	gone    map[string]struct{} // their positions
	root    merkle.Digest

	parent *snapshot // of a fork: the snapshot it reads (and reports its reads to)
	mu     sync.Mutex
	forked merkle.ReadStats // what closed forks read
	closed bool
}

func (s *Store) openSnapshot(now int64) (*snapshot, error) {
	txn, err := s.readTxn() // holds snapMu shared until Close; see RebuildIndex
	if err != nil {
		return nil, err
	}
	kv := &readKV{txn: txn}
	snap := &snapshot{s: s, txn: txn, kv: kv, idx: s.newIndex(kv), now: now}
	entries, err := expiredEntries(txn, now)
	if err == nil {
		snap.root, err = snap.idx.Root()
	}
	if err != nil {
		txn.Discard()
		s.snapMu.RUnlock()
		return nil, err
	}
	if len(entries) > 0 {
		snap.expired = merkle.NewSorted(s.ord, entries)
		snap.gone = make(map[string]struct{}, len(entries))
		for _, e := range entries {
			snap.gone[string(e.Position(s.ord))] = struct{}{}
		}
		d, _ := snap.expired.Digest(nil, nil)
		snap.root = snap.root.Sub(d)
	}
	return snap, nil
}

// expiredEntries returns the index entries of the rows the expiry index says are expired at
// now. Format 2 keeps each entry in its expiry key's value, so one scan of the expired
// prefix of the expiry index is enough. Expiry keys written before a store's upgrade to
// format 2 hold no entry, and their rows are read: in key order through one iterator, not
// one random read each (the expiry index is in expiry order, random in key order), so a
// block of rows is loaded once however many expired rows it holds.
func expiredEntries(txn *bdg.Txn, now int64) ([]merkle.Entry, error) {
	type expiredKey struct {
		at  int64
		key []byte // the row key
	}
	var entries []merkle.Entry
	var xs []expiredKey
	err := scanExpired(txn, now, func(at int64, key, value []byte) (bool, error) {
		e, ok, err := expiredEntry(at, key, value)
		if ok {
			entries = append(entries, e)
		} else if err == nil {
			xs = append(xs, expiredKey{at, rowKey(key)})
		}
		return err == nil, err
	})
	if err != nil || len(xs) == 0 {
		return entries, err
	}
	slices.SortFunc(xs, func(a, b expiredKey) int { return bytes.Compare(a.key, b.key) })
	it := txn.NewIterator(bdg.IteratorOptions{Prefix: []byte{prefixRow}})
	defer it.Close()
	for _, x := range xs {
		it.Seek(x.key)
		if !it.Valid() || !bytes.Equal(it.Item().Key(), x.key) {
			continue // purged meanwhile: only the expiry key was left
		}
		b, err := it.Item().ValueCopy(nil)
		if err != nil {
			return nil, err
		}
		r, err := decodeRecord(x.key[1:], b)
		if err != nil {
			return nil, err
		}
		if r.expiresAt == x.at { // writes keep the two together; be safe anyway
			entries = append(entries, r.entry())
		}
	}
	return entries, nil
}

// Info reports the store's ordering, Schema and the live root at the snapshot's now.
func (sn *snapshot) Info() reconcile.Info {
	return reconcile.Info{Ordering: sn.s.ord, Schema: Schema, Root: sn.root}
}

// Digests answers from the stored index less the expired entries it still holds.
func (sn *snapshot) Digests(ctx context.Context, lo, hi []byte, bounds [][]byte) ([]merkle.Digest, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("digests: %w", err)
	}
	ds, err := sn.idx.Digests(lo, hi, bounds)
	if err != nil {
		return nil, fmt.Errorf("digests: %w", err)
	}
	if sn.expired != nil {
		xs, _ := sn.expired.Digests(lo, hi, bounds)
		for i := range ds {
			ds[i] = ds[i].Sub(xs[i])
		}
	}
	return ds, nil
}

// Split returns positions of live entries only; see split.
func (sn *snapshot) Split(ctx context.Context, lo, hi []byte, k int) ([][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("split: %w", err)
	}
	out, err := sn.split(lo, hi, k)
	if err != nil {
		return nil, fmt.Errorf("split: %w", err)
	}
	return out, nil
}

// split answers Split around the expired entries the stored index still holds: it asks
// the index for more candidates than needed (as many more as expired entries dilute the
// range), moves each expired candidate to the next live entry, ranks the candidates by
// live count, and keeps those nearest the live quantiles.
func (sn *snapshot) split(lo, hi []byte, k int) ([][]byte, error) {
	var ex uint64
	if sn.expired != nil {
		d, _ := sn.expired.Digest(lo, hi)
		ex = d.Count
	}
	if ex == 0 {
		return sn.idx.Split(lo, hi, k)
	}
	if k < 2 {
		return nil, nil
	}
	all, err := sn.idx.Digest(lo, hi)
	if err != nil {
		return nil, err
	}
	live := all.Count - ex
	if live < 2 {
		return nil, nil
	}
	over := min(2*((all.Count+live-1)/live), 64)
	if ex*8 < all.Count {
		// Few expired entries here: the index's own cut, with expired bounds moved to the
		// next live entry, is near enough, and asking for more candidates would make the
		// index read entries instead of nodes.
		over = 1
	}
	cands, err := sn.idx.Split(lo, hi, int(min(uint64(k)*over, all.Count)))
	if err != nil {
		return nil, err
	}
	moved := cands[:0]
	for _, c := range cands {
		if _, isGone := sn.gone[string(c)]; isGone {
			var next []byte
			err := sn.idx.Entries(c, hi, func(e merkle.Entry) bool {
				p := e.Position(sn.s.ord)
				if _, isGone := sn.gone[string(p)]; isGone {
					return true
				}
				next = p
				return false
			})
			if err != nil {
				return nil, err
			}
			if next == nil {
				break // only expired entries from c to hi
			}
			c = next
		}
		if n := len(moved); n > 0 && bytes.Equal(moved[n-1], c) {
			continue
		}
		moved = append(moved, c)
	}
	if len(moved) == 0 || over == 1 {
		return moved, nil
	}
	parts, err := sn.Digests(context.Background(), lo, hi, moved)
	if err != nil {
		return nil, err
	}
	ranks := make([]uint64, len(moved)) // live entries before each candidate
	var r uint64
	for i := range moved {
		r += parts[i].Count
		ranks[i] = r
	}
	var out [][]byte
	j := 0
	for q := uint64(1); q < uint64(k) && q < live; q++ {
		target := q * live / uint64(k)
		for j+1 < len(moved) && absDiff(ranks[j+1], target) <= absDiff(ranks[j], target) {
			j++
		}
		if ranks[j] == 0 || (len(out) > 0 && bytes.Equal(out[len(out)-1], moved[j])) {
			continue
		}
		out = append(out, moved[j])
	}
	return out, nil
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}

var _ reconcile.LevelCutSnapshot = (*snapshot)(nil)

// SnapCutsAt finds cut entries of level l as the stored index's level-l nodes, expired
// ones included, as SnapCuts does at level 1.
func (sn *snapshot) SnapCutsAt(ctx context.Context, l int, ps [][]byte) ([][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("snap cuts: %w", err)
	}
	out, err := sn.idx.SnapCutsAt(l, ps)
	if err != nil {
		return nil, fmt.Errorf("snap cuts: %w", err)
	}
	return out, nil
}

// SplitCutsAt is SplitCuts that returns the level of cuts taken from above level 1 with
// their predecessors at that level (merkle.Stored.SplitCutsAt).
func (sn *snapshot) SplitCutsAt(ctx context.Context, lo, hi []byte, k int, count uint64) ([][]byte, [][]byte, int, []merkle.Digest, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, 0, nil, fmt.Errorf("split: %w", err)
	}
	bounds, prevs, level, ds, err := sn.idx.SplitCutsAt(lo, hi, k, count)
	if err != nil {
		return nil, nil, 0, nil, fmt.Errorf("split: %w", err)
	}
	if ds, err = sn.lessExpired(lo, hi, bounds, ds); err != nil {
		return nil, nil, 0, nil, fmt.Errorf("split: %w", err)
	}
	return bounds, prevs, level, ds, nil
}

// lessExpired takes the expired entries the snapshot still holds off the digests ds of
// the parts of [lo, hi) cut at bounds, level-1 node positions all (ds nil: nothing to do).
func (sn *snapshot) lessExpired(lo, hi []byte, bounds [][]byte, ds []merkle.Digest) ([]merkle.Digest, error) {
	if ds == nil || sn.expired == nil {
		return ds, nil
	}
	xs, err := sn.expired.Digests(lo, hi, bounds)
	if err != nil {
		return nil, err
	}
	for i := range ds {
		ds[i] = ds[i].Sub(xs[i])
	}
	return ds, nil
}

// SnapCuts finds cut entries as the stored index's level-1 nodes, expired ones included
// (a snapshot may cut at entries it does not show; see reconcile.CutSnapshot).
func (sn *snapshot) SnapCuts(ctx context.Context, ps [][]byte) ([][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("snap cuts: %w", err)
	}
	out, err := sn.idx.SnapCuts(ps)
	if err != nil {
		return nil, fmt.Errorf("snap cuts: %w", err)
	}
	return out, nil
}

// SplitCuts cuts at level-1 nodes of the stored index, balanced by its counts (expired
// entries not yet purged count too: they are few, and a part they fill is merely empty).
// lo, hi and the bounds are level-1 node positions, so the expired entries come off the
// parts' digests exactly.
func (sn *snapshot) SplitCuts(ctx context.Context, lo, hi []byte, k int, count uint64) ([][]byte, [][]byte, []merkle.Digest, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, nil, fmt.Errorf("split: %w", err)
	}
	bounds, prevs, ds, err := sn.idx.SplitCuts(lo, hi, k, count)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("split: %w", err)
	}
	if ds, err = sn.lessExpired(lo, hi, bounds, ds); err != nil {
		return nil, nil, nil, fmt.Errorf("split: %w", err)
	}
	return bounds, prevs, ds, nil
}

// CutDigests answers from the stored index's level-1 nodes (merkle.Stored.CutDigestsSnapped),
// less the expired entries it still holds, placed by the positions the cut points snap to,
// which it finds on the way (merkle's walk records those it passes).
func (sn *snapshot) CutDigests(ctx context.Context, lo, hi []byte, bounds [][]byte, count uint64) ([]merkle.Digest, [][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("digests: %w", err)
	}
	ds, snapped, err := sn.idx.CutDigestsSnapped(lo, hi, bounds, count, sn.expired != nil)
	if err != nil {
		return nil, nil, fmt.Errorf("digests: %w", err)
	}
	if sn.expired == nil {
		return ds, snapped, nil
	}
	// The cut entries lo, each bound and hi stand for (nil: an open lo or hi, or none).
	xs := snapped
	// Part j runs from xs[j] to xs[j+1]: the expired entries in it come off its digest.
	if lo != nil && xs[0] == nil {
		return ds, snapped, nil // the range starts past the last level-1 node: empty
	}
	for j := range ds {
		plo, phi := xs[j], xs[len(xs)-1]
		if j > 0 && plo == nil {
			break // this part and the rest are empty
		}
		if j+1 < len(xs)-1 && xs[j+1] != nil {
			phi = xs[j+1]
		}
		d, _ := sn.expired.Digest(plo, phi)
		ds[j] = ds[j].Sub(d)
	}
	return ds, snapped, nil
}

// Entries lists the live entries of [lo, hi), skipping expired ones.
func (sn *snapshot) Entries(ctx context.Context, lo, hi []byte, limit int) ([]merkle.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("entries: %w", err)
	}
	var out []merkle.Entry
	err := sn.idx.Entries(lo, hi, func(e merkle.Entry) bool {
		if sn.gone != nil {
			if _, isGone := sn.gone[string(e.Position(sn.s.ord))]; isGone {
				return true
			}
		}
		out = append(out, e) // Stored hands out its own copy of the key
		return limit <= 0 || len(out) < limit
	})
	if err != nil {
		return nil, fmt.Errorf("entries: %w", err)
	}
	return out, nil
}

var _ reconcile.HashedEntries = (*snapshot)(nil)

// EachHashed lists the live entries of [lo, hi) with the EntryHash the index keeps.
func (sn *snapshot) EachHashed(ctx context.Context, lo, hi []byte, fn func(merkle.Entry, merkle.Hash) bool) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("entries: %w", err)
	}
	err := sn.idx.EntriesHashed(lo, hi, func(e merkle.Entry, h merkle.Hash) bool {
		if sn.gone != nil {
			if _, isGone := sn.gone[string(e.Position(sn.s.ord))]; isGone {
				return true
			}
		}
		return fn(e, h)
	})
	if err != nil {
		return fmt.Errorf("entries: %w", err)
	}
	return nil
}

// Rows reads the row records at the snapshot; expired rows count as missing.
func (sn *snapshot) Rows(ctx context.Context, keys [][]byte) ([]reconcile.Row, error) {
	out := make([]reconcile.Row, len(keys))
	for i, key := range keys {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("rows: %w", err)
		}
		b, ok, err := txnGet(sn.txn, rowKey(key))
		if err != nil {
			return nil, fmt.Errorf("rows: get %s: %w", printable(key), err)
		}
		if !ok {
			continue
		}
		r, err := decodeRecord(clone(key), b)
		if err != nil {
			return nil, fmt.Errorf("rows: %w", err)
		}
		if !r.expired(sn.now) {
			out[i] = r.row()
		}
	}
	return out, nil
}

// ReadStats is what the stored index read (through this snapshot and its closed forks),
// plus the expired entries read at Open.
func (sn *snapshot) ReadStats() merkle.ReadStats {
	st := sn.idx.Stats()
	if sn.parent != nil {
		return st
	}
	sn.mu.Lock()
	st.Entries += sn.forked.Entries
	st.Nodes += sn.forked.Nodes
	sn.mu.Unlock()
	if sn.expired != nil {
		st.Entries += int64(sn.expired.Len()) // read from the expiry index at Open
	}
	return st
}

var _ reconcile.Forker = (*snapshot)(nil)

// Fork returns a view of the snapshot for another goroutine: the same Badger read
// transaction (a read-only transaction allows concurrent iterators) read through its own
// iterators and index reader, the expired overlay shared. Its reads count in the
// snapshot's ReadStats once it is closed. Close every fork before the snapshot.
func (sn *snapshot) Fork() (reconcile.Snapshot, error) {
	root := sn
	if sn.parent != nil {
		root = sn.parent
	}
	kv := &readKV{txn: root.txn}
	f := &snapshot{s: root.s, txn: root.txn, kv: kv, idx: root.s.newIndex(kv),
		now: root.now, gone: root.gone, root: root.root, parent: root}
	if root.expired != nil {
		f.expired = root.expired.View()
	}
	return f, nil
}

// Close discards the read transaction; a fork's Close only closes its iterators and hands
// its reads to its snapshot.
func (sn *snapshot) Close() error {
	sn.kv.close()
	if p := sn.parent; p != nil {
		st := sn.idx.Stats()
		p.mu.Lock()
		p.forked.Entries += st.Entries
		p.forked.Nodes += st.Nodes
		p.mu.Unlock()
		return nil
	}
	if !sn.closed {
		sn.closed = true
		sn.txn.Discard()
		sn.s.snapMu.RUnlock()
	}
	return nil
}

// Apply writes changes in one Badger transaction, all or none, each conditional on the
// key's current row: a change applies when Expect is nil and the key has no row live at
// now, or when Expect equals the row's entry exactly (key, version, expiresAt, flags,
// value hash); otherwise it is skipped as reconcile.Raced, unless the key already holds
// what the change would leave (reconcile.Change.InPlace: Applied). A Put row's key must be
// the change's key. Errors write nothing: bdg.ErrTxnTooBig (a smaller batch fits), a row
// over MaxRowBytes (a reconcile.RowRefusedError wrapping ErrRowTooLarge), a Badger
// failure, and reconcile.ErrReadOnly on a read-only store. In KeyOrder stores a Put's
// version is stored as 0.
func (s *Store) Apply(ctx context.Context, now int64, changes []reconcile.Change) ([]reconcile.Outcome, error) {
	if s.opts.ReadOnly {
		return nil, fmt.Errorf("apply: %w", reconcile.ErrReadOnly)
	}
	ops := make([]op, len(changes))
	for i, c := range changes {
		if c.Put == nil {
			ops[i] = op{kind: opDelete, key: c.Key}
			continue
		}
		if !bytes.Equal(c.Put.Key, c.Key) {
			return nil, fmt.Errorf("apply: change for key %s puts a row with key %s", printable(c.Key), printable(c.Put.Key))
		}
		if err := s.checkSize(c.Key, c.Put.Value); err != nil {
			// The error names no key: RowRefusedError.Index says which change it is, and a
			// session names the row in its own terms (a SQL replica's key columns).
			return nil, &reconcile.RowRefusedError{Index: i, Err: fmt.Errorf("apply: %w", err)}
		}
		var flags byte
		if c.Put.Tombstone {
			flags = merkle.FlagTombstone
		}
		ops[i] = s.putOp(c.Key, c.Put.Value, c.Put.Version, c.Put.ExpiresAt, flags)
	}

	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.usable(); err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	// A batch that may change more than a log record holds updates the index: it takes
	// imu first. A smaller one takes it only if its changes do not fit in the log, and
	// then redoes its transaction if a fold committed since it began (see Writer.lockIndex).
	index := 2*len(changes) > logTxnOps
	if index {
		s.imu.Lock()
	}
	defer func() {
		if index {
			s.imu.Unlock()
		}
	}()
	for {
		gen := s.indexGen.Load()
		t := s.newView(index)
		s.begin(t)
		out, err := s.applyChanges(ctx, t, now, changes, ops)
		if err == nil {
			err = t.commit(true)
			if errors.Is(err, errNeedIndex) {
				index = true
				if s.lockIndexFor(t, gen) {
					t.discard()
					continue
				}
				err = t.commit(true)
			}
		}
		t.discard()
		err = s.noteFailure(err)
		if err == nil && index {
			s.keep(t)
		}
		if errors.Is(err, bdg.ErrTxnTooBig) {
			return nil, fmt.Errorf("apply: %d changes do not fit in one badger transaction: %w", len(changes), err)
		}
		if err != nil {
			return nil, fmt.Errorf("apply: commit: %w", err)
		}
		return out, nil
	}
}

// applyChanges applies the changes whose expectation holds in t's transaction, and
// returns their outcomes (see Apply).
func (s *Store) applyChanges(ctx context.Context, t *view, now int64, changes []reconcile.Change, ops []op) ([]reconcile.Outcome, error) {
	out := make([]reconcile.Outcome, len(changes))
	for i, c := range changes {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("apply: %w", err)
		}
		b, ok, err := t.rows.Get(rowKey(c.Key))
		if err != nil {
			return nil, fmt.Errorf("apply: read %s: %w", printable(c.Key), err)
		}
		var cur *record
		if ok {
			r, err := decodeRecord(c.Key, b)
			if err != nil {
				return nil, fmt.Errorf("apply: %w", err)
			}
			cur = &r
		}
		var match bool
		if c.Expect == nil {
			match = cur == nil || cur.expired(now)
		} else {
			match = cur != nil && expectMatches(c.Expect, cur)
		}
		if !match {
			if !inPlace(&ops[i], cur, now) {
				out[i] = reconcile.Raced
			}
			continue // in place: Applied without a write
		}
		if _, err := s.apply(t, &ops[i]); err != nil {
			return nil, fmt.Errorf("apply: write %s: %w", printable(c.Key), err)
		}
		out[i] = reconcile.Applied
	}
	return out, nil
}

// inPlace reports whether the store already holds what o would leave (cur: the key's
// row, nil if none): reconcile.Change.InPlace, on the record.
func inPlace(o *op, cur *record, now int64) bool {
	live := cur != nil && !cur.expired(now)
	if o.kind == opDelete {
		return !live
	}
	e := o.putEntry()
	return live && expectMatches(&e, cur)
}

// expectMatches reports whether r's entry is exactly e, hashing r's value only when
// everything else agrees.
func expectMatches(e *merkle.Entry, r *record) bool {
	p := r.position()
	return e.Version == p.Version && e.ExpiresAt == p.ExpiresAt && e.Flags == p.Flags &&
		bytes.Equal(e.Key, p.Key) && e.ValueHash == merkle.ValueHash(r.value)
}
