package badger

import (
	"context"
	"errors"
	"fmt"
	"slices"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/reconcile-dev/reconcile/merkle"
)

// IndexCheck is what Store.VerifyIndex found.
type IndexCheck struct {
	// Index is the index's check of its own structure (merkle.Stored.Check).
	Index merkle.StoredCheck
	// Rows counts the row records read; RowsMatch says the index holds exactly their
	// entries (equal counts and 256-bit sums of EntryHashes).
	Rows      int64
	RowsMatch bool
	// Expiring counts the rows with an expiry; ExpiryMatch says the expiry index holds
	// exactly those rows, each at its expiry and, where the value holds the row's entry
	// (format 2 on), with that entry.
	Expiring    int64
	ExpiryMatch bool
}

// OK reports whether the check found nothing wrong.
func (c IndexCheck) OK() bool { return c.Index.OK() && c.RowsMatch && c.ExpiryMatch }

// VerifyIndex reads the whole store in one snapshot and checks that its index and expiry
// index are what its rows define: the index's structure (every node the sum of its
// children, nodes exactly where the entries put them), and the sums of the rows' entries
// against the index's and the expiry index's. It hashes every value, so it costs a read
// of the whole store; memory stays small (about 1/16 of the entries' positions). It
// changes nothing but the index log, which it folds into the index first (see log.go).
// RebuildIndex repairs what it finds.
func (s *Store) VerifyIndex(ctx context.Context) (IndexCheck, error) {
	var c IndexCheck
	txn, err := s.readTxn() // holds snapMu shared: not while a rebuild runs
	if err != nil {
		return c, fmt.Errorf("verify index: %w", err)
	}
	defer s.snapMu.RUnlock()
	defer txn.Discard()
	kv := &readKV{txn: txn}
	defer kv.close()
	if c.Index, err = s.newIndex(kv).Check(ctx); err != nil {
		return c, fmt.Errorf("verify index: %w", err)
	}
	var rows, expiring merkle.Digest
	err = s.eachRecord(ctx, txn, func(r *record) error {
		e := s.recordEntry(r)
		c.Rows++
		rows = rows.Add(e.Digest())
		if e.ExpiresAt != 0 {
			c.Expiring++
			expiring = expiring.Add(e.Digest())
		}
		return nil
	})
	if err != nil {
		return c, fmt.Errorf("verify index: read rows: %w", err)
	}
	c.RowsMatch = rows == c.Index.Sum
	inExpiry, err := s.expiryDigest(ctx, txn)
	if err != nil {
		return c, fmt.Errorf("verify index: read the expiry index: %w", err)
	}
	c.ExpiryMatch = inExpiry == expiring
	return c, nil
}

// eachRecord calls fn with every row record txn sees, in key order (the record's key and
// value are valid only during the call), until fn or a record fails or ctx is done.
func (s *Store) eachRecord(ctx context.Context, txn *bdg.Txn, fn func(r *record) error) error {
	var ferr error
	n := 0
	err := txnIterate(txn, []byte{prefixRow}, []byte{prefixRow + 1}, false, func(k, v []byte) bool {
		r, err := decodeRecord(k[1:], v)
		if err == nil {
			err = fn(&r)
		}
		if n++; err == nil && n%4096 == 0 {
			err = ctx.Err()
		}
		ferr = err
		return err == nil
	})
	if err != nil {
		return err
	}
	return ferr
}

// recordEntry is the index entry of r as a write would have made it: in a key-ordered
// store at version 0 (see Store.putOp).
func (s *Store) recordEntry(r *record) merkle.Entry {
	e := r.entry()
	if s.ord == merkle.KeyOrder {
		e.Version = 0
	}
	return e
}

// expiryDigest sums the entries the expiry index names: from its values, or for a value
// written by format 1 (empty) from the row, which must expire at the key's time (else it
// counts as a stray key and the sums differ).
func (s *Store) expiryDigest(ctx context.Context, txn *bdg.Txn) (merkle.Digest, error) {
	var sum merkle.Digest
	n := 0
	err := scanExpired(txn, 1<<63-1, func(at int64, key, value []byte) (bool, error) {
		e, ok, err := expiredEntry(at, key, value)
		if err != nil {
			return false, err
		}
		if !ok {
			b, found, err := txnGet(txn, rowKey(key))
			if err != nil {
				return false, err
			}
			var r record
			if found {
				r, err = decodeRecord(key, b)
			}
			if !found || err != nil || r.expiresAt != at {
				sum = sum.Add(merkle.Digest{Count: 1}) // a stray key: never equal to the rows' sum
				return true, nil
			}
			e = s.recordEntry(&r)
		} else if s.ord == merkle.KeyOrder {
			e.Version = 0
		}
		sum = sum.Add(e.Digest())
		n++
		if n%4096 == 0 {
			return true, ctx.Err()
		}
		return true, nil
	})
	return sum, err
}

// metaRebuild marks a store whose index is being rebuilt: until RebuildIndex finishes,
// the index is incomplete, and a store holding this key is not read (see Open).
var metaRebuild = []byte{prefixMeta, 'r', 'e', 'b', 'u', 'i', 'l', 'd'}

// ErrRebuildInterrupted is wrapped by the error of a read-only Open of a store whose index
// rebuild stopped (interrupted or killed): its index is incomplete until a writable Open
// finishes the rebuild.
var ErrRebuildInterrupted = errors.New("the store's index rebuild was interrupted, so its index is incomplete: open it writable once to finish the rebuild, for example with `reconcile index verify`, which changes no row")

// RebuildIndex throws away the index and the expiry index and builds them again from the
// rows, and returns how many rows it indexed. It waits for every open snapshot to close
// (so a goroutine must not call it while holding one), and writers and new snapshots wait
// for it. It marks the store first, so that a rebuild cut short (a crash, or ctx ending,
// when the error wraps ErrRebuildInterrupted) is finished by the next writable Open and
// refused by read-only ones rather than read half-built.
func (s *Store) RebuildIndex(ctx context.Context) (int, error) {
	if s.opts.ReadOnly {
		return 0, fmt.Errorf("rebuild index: the store is open read-only")
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.usable(); err != nil {
		return 0, fmt.Errorf("rebuild index: %w", err)
	}
	s.imu.Lock()
	defer s.imu.Unlock()
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	if err := ctx.Err(); err != nil { // before anything is dropped
		return 0, fmt.Errorf("rebuild index: %w; nothing was changed", err)
	}
	n, err := s.rebuildIndex(ctx)
	if err != nil {
		if rebuilding, rerr := s.rebuilding(); rerr != nil || rebuilding {
			// The index is half built: this Store would show every session a store
			// missing rows (a mirror from it would delete them from its replica). Only a
			// new writable Open, which finishes the rebuild, may use it.
			s.failed.CompareAndSwap(nil, &FailedError{Path: s.path, Err: fmt.Errorf("its index rebuild stopped half way (%v): close it and open it writable again, which finishes the rebuild", err)})
			return n, fmt.Errorf("rebuild index: %w: %w", err, ErrRebuildInterrupted)
		}
		return n, fmt.Errorf("rebuild index: %w", err)
	}
	return n, nil
}

// rebuildRun is how many entries RebuildIndex sorts at a time: about 200 MB of them with
// short keys. A variable for tests.
var rebuildRun = 2 << 20

func (s *Store) rebuildIndex(ctx context.Context) (int, error) {
	s.kept = nil
	err := s.db.Update(func(txn *bdg.Txn) error { return txn.Set(metaRebuild, nil) })
	if err == nil {
		// The log's changes are in the rows the index is rebuilt from.
		err = s.db.DropPrefix(indexPrefix, []byte{prefixExpiry}, []byte{prefixLog})
	}
	if err != nil {
		return 0, err
	}
	s.logReset()
	read := s.db.NewTransaction(false)
	defer read.Discard()
	v := s.newView(true)
	defer func() { v.discard() }()
	begin := func() error {
		s.begin(v)
		if v.primed {
			return nil
		}
		return v.prime() // the index starts empty: the cache need not ask Badger about new keys
	}
	if err := begin(); err != nil {
		return 0, err
	}
	// The rows come in key order; the index is cheapest to build in position order (each
	// node written once, as by an append), so each run of up to rebuildRun entries is
	// sorted first.
	n := 0
	var run []merkle.Entry
	index := func() error {
		slices.SortFunc(run, s.ord.Compare) // in key order already, if that is the ordering
		for _, e := range run {
			v.queueIndex(e, false, true) // the index was dropped: every position is empty
			if e.ExpiresAt != 0 {
				v.rows.Set(expiryKey(e.ExpiresAt, e.Key), expiryValue(e))
			}
			n++
			if !s.full(v) {
				continue
			}
			if err := v.commit(false); err != nil {
				return err
			}
			if v.big() {
				v = s.newView(true)
			}
			if err := begin(); err != nil {
				return err
			}
		}
		clear(run)
		run = run[:0]
		return nil
	}
	err = s.eachRecord(ctx, read, func(r *record) error {
		r.key = clone(r.key) // the index keeps it past the call
		run = append(run, s.recordEntry(r))
		if len(run) < rebuildRun {
			return nil
		}
		return index()
	})
	if err == nil {
		err = index()
	}
	if err == nil {
		err = v.commit(false)
	}
	if err == nil {
		err = s.db.Update(func(txn *bdg.Txn) error { return txn.Delete(metaRebuild) })
	}
	if err != nil {
		return n, err
	}
	s.keep(v)
	return n, nil
}

// rebuilding reports whether a rebuild of the index was cut short.
func (s *Store) rebuilding() (bool, error) {
	var found bool
	err := s.db.View(func(txn *bdg.Txn) error {
		_, ok, err := txnGet(txn, metaRebuild)
		found = ok
		return err
	})
	return found, err
}
