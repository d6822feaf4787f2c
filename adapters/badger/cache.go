package badger

import (
	"bytes"
	"errors"

	bdg "github.com/dgraph-io/badger/v4"
)

// cache is the merkle.KV the index is written through: an ordered in-memory view of the
// index keys a Writer has read or written, over the committed state in Badger.
//
// Why: the index reads its upper nodes on every insert (a reverse seek per level), and a
// Badger iterator costs a merge over every memtable and level; in a read-write
// transaction it also sorts every pending write, which makes a large transaction
// quadratic. So writes stay here until flush, and reads are answered here whenever the
// cache knows the answer, reaching Badger only for what it has never seen.
//
// What the cache knows: every node holds one key's state (present with its value, or known
// absent), and a node's gap flag says that no key exists strictly between it and the next
// node. A Badger read fills in what it saw and marks the gaps it proved empty. Because the
// Store serialises its writers, what the cache knows stays true after its writes commit,
// so one cache serves all the transactions of a Write; it is dropped when a transaction
// fails or when it grows past maxCacheNodes or maxCacheBytes.
type cache struct {
	txn   *bdg.Txn // the current read-write transaction: reads at its snapshot, writes at flush
	head  *cnode   // sentinel before every key; head.gap covers the keys before the first node
	byKey map[string]*cnode
	level int
	rnd   uint64
	nodes int
	// entries counts the nodes of index entries (level 0), which writes rarely read again:
	// a row records its own entry (see merkle.BatchOp.Known).
	entries int
	size    int64  // bytes held, roughly
	mod     uint64 // counts inserts: a finger is valid while it is unchanged

	// finger remembers where the last Get found its key absent: the index and the rows
	// read a key and then write it, and the write can insert without searching again.
	finger struct {
		key   []byte
		preds [cacheMaxLevel]*cnode
		mod   uint64
	}

	dirty []*cnode // nodes whose state flush must send, each once
	p     *pending
}

// pending estimates what the flushes of one transaction will send, in Badger's terms.
type pending struct {
	count, bytes int64 // entries and Badger's per-entry size estimate
	raw          int64 // value bytes held, inline or not
	threshold    int64 // Badger's value threshold: larger values go to the value log
}

// entrySize mirrors Badger's Txn.checkSize estimate for one entry.
func (p *pending) entrySize(key, value []byte) int64 {
	v := int64(len(value))
	if v >= p.threshold {
		v = 12 // a value pointer
	}
	return int64(len(key)) + v + 2 + 10
}

// change accounts for key's pending value going from old (fresh: none) to value.
func (p *pending) change(key, old, value []byte, fresh bool) {
	if fresh {
		p.count++
	} else {
		p.bytes -= p.entrySize(key, old)
		p.raw -= int64(len(old))
	}
	p.bytes += p.entrySize(key, value)
	p.raw += int64(len(value))
}

const cacheMaxLevel = 20

// maxCacheNodes and maxCacheBytes bound the memory a cache keeps from one transaction to
// the next, and from one write to the next (variables so that tests can make them small).
var (
	maxCacheNodes       = 1 << 19
	maxCacheBytes int64 = 64 << 20
)

type cnode struct {
	key   []byte
	value []byte
	ok    bool // the key exists
	dirty bool
	gap   bool // no key exists strictly between this node and the next one
	prev  *cnode
	next  []*cnode
}

func newCache(p *pending) *cache {
	return &cache{head: &cnode{next: make([]*cnode, cacheMaxLevel)}, byKey: make(map[string]*cnode, 1024),
		level: 1, rnd: 0x2545f4914f6cdd1d, p: p}
}

// floor returns the last node with key <= k (the head if none), filling preds with the
// last node before k at each level when preds is not nil.
func (c *cache) floor(k []byte, preds *[cacheMaxLevel]*cnode) *cnode {
	x := c.head
	for l := c.level - 1; l >= 0; l-- {
		for n := x.next[l]; n != nil && bytes.Compare(n.key, k) < 0; n = x.next[l] {
			x = n
		}
		if preds != nil {
			preds[l] = x
		}
	}
	if n := x.next[0]; n != nil && bytes.Equal(n.key, k) {
		return n
	}
	return x
}

// below returns the last node with key < k (the head if none).
func (c *cache) below(k []byte) *cnode {
	x := c.head
	for l := c.level - 1; l >= 0; l-- {
		for n := x.next[l]; n != nil && bytes.Compare(n.key, k) < 0; n = x.next[l] {
			x = n
		}
	}
	return x
}

// insert adds a node for k, which must be absent. It lies in its predecessor's gap, so it
// inherits what the predecessor knew about that gap.
func (c *cache) insert(k, v []byte, ok bool) *cnode {
	var preds [cacheMaxLevel]*cnode
	c.floor(k, &preds)
	return c.insertAfter(&preds, k, v, ok)
}

// insertAfter adds a node for k after preds, the last nodes before k at each level.
func (c *cache) insertAfter(preds *[cacheMaxLevel]*cnode, k, v []byte, ok bool) *cnode {
	lvl := 1
	for lvl < cacheMaxLevel {
		c.rnd ^= c.rnd << 13
		c.rnd ^= c.rnd >> 7
		c.rnd ^= c.rnd << 17
		if c.rnd&3 != 0 {
			break
		}
		lvl++
	}
	if lvl > c.level {
		for l := c.level; l < lvl; l++ {
			preds[l] = c.head
		}
		c.level = lvl
	}
	n := &cnode{key: k, value: v, ok: ok, gap: preds[0].gap, prev: preds[0], next: make([]*cnode, lvl)}
	for l := 0; l < lvl; l++ {
		n.next[l] = preds[l].next[l]
		preds[l].next[l] = n
	}
	if nx := n.next[0]; nx != nil {
		nx.prev = n
	}
	c.byKey[string(k)] = n
	c.mod++
	c.nodes++
	if len(k) > 1 && k[0] == prefixIndex && k[1] == 0 {
		c.entries++
	}
	c.size += int64(len(k)+len(v)) + 120
	return n
}

func (c *cache) Get(key []byte) ([]byte, bool, error) {
	if n, found := c.byKey[string(key)]; found {
		return n.value, n.ok, nil
	}
	var preds [cacheMaxLevel]*cnode
	if c.floor(key, &preds).gap {
		c.finger.key, c.finger.preds, c.finger.mod = key, preds, c.mod
		return nil, false, nil
	}
	v, ok, err := txnGet(c.txn, key)
	if err != nil {
		return nil, false, err
	}
	c.insertAfter(&preds, clone(key), v, ok)
	return v, ok, nil
}

func (c *cache) put(key, value []byte, ok bool) {
	n, found := c.byKey[string(key)]
	if !found {
		if c.finger.mod == c.mod && bytes.Equal(c.finger.key, key) {
			n = c.insertAfter(&c.finger.preds, key, nil, false)
		} else {
			n = c.insert(key, nil, false)
		}
	}
	c.p.change(n.key, n.value, value, !n.dirty)
	if !n.dirty {
		n.dirty = true
		c.dirty = append(c.dirty, n)
	}
	c.size += int64(len(value) - len(n.value))
	n.value, n.ok = value, ok
}

func (c *cache) Set(key, value []byte) error { c.put(key, value, true); return nil }
func (c *cache) Delete(key []byte) error     { c.put(key, nil, false); return nil }

// flush sends the pending writes to the transaction, which then holds them until Commit.
// After bdg.ErrTxnTooBig the transaction and the cache must be discarded. The caller
// resets the pending estimate.
func (c *cache) flush() error {
	for _, n := range c.dirty {
		var err error
		if n.ok {
			err = c.txn.SetEntry(bdg.NewEntry(n.key, n.value))
		} else {
			err = c.txn.Delete(n.key)
		}
		if err != nil {
			return err
		}
		n.dirty = false
	}
	c.dirty = c.dirty[:0]
	return nil
}

// iter is one Badger iterator opened on demand by an Iterate call.
type iter struct {
	txn *bdg.Txn
	opt bdg.IteratorOptions
	it  *bdg.Iterator
}

// newIter prepares an iterator over [start, end): the bounds' common prefix lets Badger
// skip tables that cannot hold the range.
func (c *cache) newIter(start, end []byte, reverse bool) *iter {
	return &iter{txn: c.txn, opt: bdg.IteratorOptions{Reverse: reverse, Prefix: boundsPrefix(start, end)}}
}

func (i *iter) open() *bdg.Iterator {
	if i.it == nil {
		i.it = i.txn.NewIterator(i.opt)
	}
	return i.it
}

func (i *iter) close() {
	if i.it != nil {
		i.it.Close()
	}
}

// errStop ends an Iterate whose callback asked to stop.
var errStop = errors.New("stop")

// fetchForward reads from Badger the keys in [from, to) (to nil: no bound) in order,
// inserting a node for each right after prev, and calls emit for each until it returns
// false (then it returns errStop). Otherwise it returns the last node inserted (prev if
// none), after which Badger has no key before to, and to's own state.
func (c *cache) fetchForward(i *iter, prev *cnode, from, to []byte, emit func(n *cnode) bool) (last *cnode, toValue []byte, toOK bool, err error) {
	it := i.open()
	for it.Seek(from); it.Valid(); it.Next() {
		item := it.Item()
		k := item.Key()
		if to != nil && bytes.Compare(k, to) >= 0 {
			if bytes.Equal(k, to) {
				v, err := item.ValueCopy(nil)
				return prev, v, true, err
			}
			return prev, nil, false, nil
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return prev, nil, false, err
		}
		prev.gap = true // Badger returned consecutive keys
		n := c.insert(item.KeyCopy(nil), v, true)
		n.gap = false // until the next key is read
		prev = n
		if !emit(n) {
			return prev, nil, false, errStop
		}
	}
	return prev, nil, false, nil
}

func (c *cache) Iterate(start, end []byte, reverse bool, fn func(key, value []byte) bool) error {
	if end != nil && start != nil && bytes.Compare(start, end) >= 0 {
		return nil
	}
	i := c.newIter(start, end, reverse)
	defer i.close()
	var err error
	if reverse {
		err = c.iterateReverse(i, start, end, fn)
	} else {
		err = c.iterateForward(i, start, end, fn)
	}
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

func (c *cache) iterateForward(i *iter, start, end []byte, fn func(key, value []byte) bool) error {
	emit := func(n *cnode) bool { return !n.ok || fn(n.key, n.value) }
	n := c.head
	if start != nil {
		n = c.floor(start, nil)
		if (n == c.head || !bytes.Equal(n.key, start)) && !n.gap {
			// start lies in an unknown gap: pin it with a node so that what is fetched
			// after it can be recorded as known.
			v, ok, err := txnGet(c.txn, start)
			if err != nil {
				return err
			}
			n = c.insert(clone(start), v, ok)
		}
		if n != c.head && bytes.Equal(n.key, start) && !emit(n) {
			return nil
		}
	}
	for {
		nx := n.next[0]
		if !n.gap {
			// Fetch the unknown gap after n, up to the next node or end.
			to := end
			if nx != nil && (end == nil || bytes.Compare(nx.key, end) < 0) {
				to = nx.key
			}
			from := start // only for the head: start is nil or pinned otherwise
			if n != c.head {
				from = keyAfter(n.key)
			}
			last, toValue, toOK, err := c.fetchForward(i, n, from, to, emit)
			if err != nil {
				return err
			}
			if to != nil && (nx == nil || !bytes.Equal(nx.key, to)) {
				// to is end, inside the gap: pin it so the proven-empty part ends there.
				c.insert(clone(to), toValue, toOK)
				last.gap = true
				return nil
			}
			last.gap = true
		}
		n = nx
		if n == nil || (end != nil && bytes.Compare(n.key, end) >= 0) {
			return nil
		}
		if !emit(n) {
			return nil
		}
	}
}

func (c *cache) iterateReverse(i *iter, start, end []byte, fn func(key, value []byte) bool) error {
	emit := func(n *cnode) bool { return !n.ok || fn(n.key, n.value) }
	// p is the node below the region to read, upper the node above it (nil: +inf).
	var p, upper *cnode
	if end == nil {
		p = c.head
		for l := c.level - 1; l >= 0; l-- {
			for p.next[l] != nil {
				p = p.next[l]
			}
		}
	} else {
		p = c.below(end)
		upper = p.next[0]
		if !p.gap && (upper == nil || !bytes.Equal(upper.key, end)) {
			// Pin end (see iterateForward).
			v, ok, err := txnGet(c.txn, end)
			if err != nil {
				return err
			}
			upper = c.insert(clone(end), v, ok)
		}
	}
	for {
		if !p.gap {
			done, err := c.fetchReverse(i, p, upper, start, emit)
			if err != nil || done {
				return err
			}
		}
		if p == c.head || (start != nil && bytes.Compare(p.key, start) < 0) {
			return nil
		}
		if !emit(p) || (start != nil && bytes.Equal(p.key, start)) {
			return nil
		}
		upper = p
		p = p.prev
	}
}

// fetchReverse reads from Badger the keys strictly between p and upper (nil: +inf),
// highest first, inserting and emitting each, and records what it proves empty. It
// reports done when the iteration is over: emit said stop, or the keys went below start.
func (c *cache) fetchReverse(i *iter, p, upper *cnode, start []byte, emit func(n *cnode) bool) (bool, error) {
	it := i.open()
	if upper != nil {
		it.Seek(upper.key)
	} else {
		it.Rewind()
	}
	hi := upper
	for ; it.Valid(); it.Next() {
		item := it.Item()
		k := item.Key()
		if hi != nil && bytes.Compare(k, hi.key) >= 0 {
			continue // the seek lands at or before upper: skip upper itself
		}
		if p != c.head && bytes.Compare(k, p.key) <= 0 {
			p.gap = true // every key between p and hi was read
			return false, nil
		}
		if start != nil && bytes.Compare(k, start) < 0 {
			if hi == nil || !bytes.Equal(hi.key, start) {
				c.pinStart(start)
			}
			return true, nil
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return false, err
		}
		n := c.insert(item.KeyCopy(nil), v, true)
		n.gap = true // Badger had nothing between n and hi
		hi = n
		if !emit(n) {
			return true, nil
		}
	}
	// Out of keys. The iterator's prefix (common to start and end) hides keys below
	// start, so only [start, hi) is proven empty unless there is no start.
	if start == nil || (p != c.head && bytes.Compare(p.key, start) >= 0) {
		p.gap = true
		return false, nil
	}
	if hi == nil || !bytes.Equal(hi.key, start) {
		c.pinStart(start)
	}
	return true, nil
}

// pinStart records start, found absent in a gap being read from above, as a node with
// nothing between it and the lowest key read.
func (c *cache) pinStart(start []byte) {
	m := c.insert(clone(start), nil, false)
	m.gap = true
}

// suffix returns a new cache knowing what c knows about the keys at and after from, and
// nothing before. c must have no pending writes.
func (c *cache) suffix(from []byte) *cache {
	d := newCache(c.p)
	n := c.floor(from, nil)
	if n == c.head || bytes.Compare(n.key, from) < 0 {
		n = n.next[0]
	}
	var preds [cacheMaxLevel]*cnode
	for l := range preds {
		preds[l] = d.head
	}
	for ; n != nil; n = n.next[0] {
		m := d.insertAfter(&preds, n.key, n.value, n.ok)
		m.gap = n.gap
		for l := range m.next {
			preds[l] = m
		}
	}
	return d
}

// keyAfter is the smallest key greater than k.
func keyAfter(k []byte) []byte { return append(append(make([]byte, 0, len(k)+1), k...), 0) }

// flat is the cache of row records and expiry keys, which are only read and written by
// key, never iterated: a map, plus the key ranges that priming proved empty.
type flat struct {
	txn   *bdg.Txn
	m     map[string]*fval
	dirty []string
	empty [][2][]byte // [lo, hi) ranges with no key in Badger (hi nil: no bound)
	p     *pending
	size  int64
}

type fval struct {
	value     []byte
	ok, dirty bool
}

func newFlat(p *pending) *flat { return &flat{m: make(map[string]*fval), p: p} }

func (f *flat) Get(key []byte) ([]byte, bool, error) {
	if v, found := f.m[string(key)]; found {
		return v.value, v.ok, nil
	}
	for _, r := range f.empty {
		if bytes.Compare(key, r[0]) >= 0 && (r[1] == nil || bytes.Compare(key, r[1]) < 0) {
			return nil, false, nil
		}
	}
	v, ok, err := txnGet(f.txn, key)
	if err != nil {
		return nil, false, err
	}
	f.m[string(key)] = &fval{value: v, ok: ok}
	f.size += int64(len(key)+len(v)) + 64
	return v, ok, nil
}

func (f *flat) put(key, value []byte, ok bool) {
	v, found := f.m[string(key)]
	if !found {
		v = &fval{}
		f.m[string(key)] = v
		f.size += int64(len(key)) + 64
	}
	f.p.change(key, v.value, value, !v.dirty)
	if !v.dirty {
		v.dirty = true
		f.dirty = append(f.dirty, string(key))
	}
	f.size += int64(len(value) - len(v.value))
	v.value, v.ok = value, ok
}

func (f *flat) Set(key, value []byte) { f.put(key, value, true) }
func (f *flat) Delete(key []byte)     { f.put(key, nil, false) }

// prime learns which parts of [lo, hi) hold no key: before the first and after the last.
// Later writes are in the map, so what it learns stays true while the Store's writer
// lock is held.
func (f *flat) prime(lo, hi []byte) error {
	var first, last []byte
	err := txnIterate(f.txn, lo, hi, false, func(k, _ []byte) bool { first = clone(k); return false })
	if err == nil && first != nil {
		err = txnIterate(f.txn, lo, hi, true, func(k, _ []byte) bool { last = clone(k); return false })
	}
	if err != nil {
		return err
	}
	if first == nil {
		f.empty = append(f.empty, [2][]byte{lo, hi})
		return nil
	}
	f.empty = append(f.empty, [2][]byte{lo, first}, [2][]byte{keyAfter(last), hi})
	return nil
}

func (f *flat) flush() error {
	for _, k := range f.dirty {
		v := f.m[k]
		key := []byte(k)
		var err error
		if v.ok {
			err = f.txn.SetEntry(bdg.NewEntry(key, v.value))
		} else {
			err = f.txn.Delete(key)
		}
		if err != nil {
			return err
		}
		v.dirty = false
	}
	f.dirty = f.dirty[:0]
	return nil
}
