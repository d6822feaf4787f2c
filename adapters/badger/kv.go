package badger

import (
	"bytes"
	"errors"

	bdg "github.com/dgraph-io/badger/v4"
)

// errReadOnlyKV is returned by writes through a snapshot's KV; the index never writes on
// the read path, so seeing it is a bug.
var errReadOnlyKV = errors.New("write through a read-only snapshot")

// readKV is the merkle.KV view of one Badger read transaction. It keeps one forward and
// one reverse iterator for the transaction's life and re-seeks them: a session makes
// thousands of short scans, and building a Badger iterator costs more than the scan.
// Not safe for concurrent use (nor is the merkle.Stored over it).
type readKV struct {
	txn      *bdg.Txn
	fwd, rev *bdg.Iterator
}

func (kv *readKV) Get(key []byte) ([]byte, bool, error) { return txnGet(kv.txn, key) }
func (kv *readKV) Set(key, value []byte) error          { return errReadOnlyKV }
func (kv *readKV) Delete(key []byte) error              { return errReadOnlyKV }
func (kv *readKV) Iterate(start, end []byte, reverse bool, fn func(key, value []byte) bool) error {
	it := kv.fwd
	if reverse {
		it = kv.rev
	}
	if it == nil {
		it = kv.txn.NewIterator(bdg.IteratorOptions{Reverse: reverse})
		if reverse {
			kv.rev = it
		} else {
			kv.fwd = it
		}
	}
	return iterate(it, start, end, reverse, fn)
}

// close closes the iterators; the transaction is the caller's to discard after.
func (kv *readKV) close() {
	if kv.fwd != nil {
		kv.fwd.Close()
	}
	if kv.rev != nil {
		kv.rev.Close()
	}
	kv.fwd, kv.rev = nil, nil
}

func txnGet(txn *bdg.Txn, key []byte) ([]byte, bool, error) {
	item, err := txn.Get(key)
	if errors.Is(err, bdg.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, false, err
	}
	return v, true, nil
}

// boundsPrefix is the common prefix of a range's bounds: given as an iterator's Prefix, it
// lets Badger skip tables that cannot hold the range.
func boundsPrefix(start, end []byte) []byte {
	if start == nil || end == nil {
		return nil
	}
	n := 0
	for n < len(start) && n < len(end) && start[n] == end[n] {
		n++
	}
	return start[:n]
}

func txnIterate(txn *bdg.Txn, start, end []byte, reverse bool, fn func(key, value []byte) bool) error {
	it := txn.NewIterator(bdg.IteratorOptions{Reverse: reverse, Prefix: boundsPrefix(start, end)})
	defer it.Close()
	return iterate(it, start, end, reverse, fn)
}

// iterate runs fn over [start, end) of an open iterator, which it seeks first.
func iterate(it *bdg.Iterator, start, end []byte, reverse bool, fn func(key, value []byte) bool) error {
	if !reverse {
		it.Seek(start)
	} else if end != nil {
		it.Seek(end) // the last key at or before end
	} else {
		it.Rewind()
	}
	for ; it.Valid(); it.Next() {
		item := it.Item()
		k := item.Key()
		if !reverse && end != nil && bytes.Compare(k, end) >= 0 {
			break
		}
		if reverse {
			if end != nil && bytes.Compare(k, end) >= 0 {
				continue
			}
			if start != nil && bytes.Compare(k, start) < 0 {
				break
			}
		}
		goOn := true
		if err := item.Value(func(v []byte) error { goOn = fn(k, v); return nil }); err != nil {
			return err
		}
		if !goOn {
			break
		}
	}
	return nil
}
