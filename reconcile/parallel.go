package reconcile

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/reconcile-dev/reconcile/merkle"
)

// Forker is implemented by snapshots that other goroutines can read at the same time,
// each through a fork. A round's reads are many independent queries (the digests of
// hundreds of ranges, the entries of thousands of leaves); with a Forker a side spreads
// them over the machine's cores, and then uses the answers in order as before, so a
// session's messages and results do not depend on it.
type Forker interface {
	// Fork returns a view of the snapshot (the same entries, the same moment) that one
	// other goroutine may read while the snapshot and its other forks are read. Its reads
	// count in the snapshot's ReadStats once it is closed; it is closed before the
	// snapshot.
	Fork() (Snapshot, error)
}

// parallelMin is the number of queries below which a side does not spread them: a fork
// and a goroutine cost more than a few reads. Tests lower it.
var parallelMin = 8

// parallelMax caps the goroutines one side reads with.
const parallelMax = 4

// forEach calls fn(view, i) for every i in [0, n), where view is snap or a fork of it
// that only that call's goroutine reads at that moment. Where snap is a Forker and n is
// large enough, the calls run on up to GOMAXPROCS goroutines (at most parallelMax), each
// taking the next chunk of consecutive i (queries come sorted by position, so a chunk
// reads neighbouring data); otherwise they run in order on this goroutine. fn must only
// write what belongs to its i. The first error stops the rest and is returned; so is a
// panic in fn on another goroutine, as an error.
func forEach(ctx context.Context, snap Snapshot, n int, fn func(view Snapshot, i int) error) error {
	workers := min(runtime.GOMAXPROCS(0), parallelMax, n/max(parallelMin/parallelMax, 1))
	forker, ok := snap.(Forker)
	if !ok || workers < 2 || n < parallelMin {
		for i := range n {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(snap, i); err != nil {
				return err
			}
		}
		return nil
	}
	views := make([]Snapshot, workers)
	views[0] = snap
	defer func() {
		for _, v := range views[1:] {
			if v != nil {
				v.Close()
			}
		}
	}()
	for w := 1; w < workers; w++ {
		f, err := forker.Fork()
		if err != nil {
			return err
		}
		views[w] = f
	}
	chunk := max(1, n/(workers*8))
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for _, view := range views {
		g.Go(func() (err error) {
			// A panic here would end the process; on the caller's goroutine it reached
			// the caller's recover (an HTTP server's, for one). Keep it an error.
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("reading on %d goroutines: panic: %v\n%s", workers, p, debug.Stack())
				}
			}()
			for {
				lo := int(next.Add(int64(chunk))) - chunk
				if lo >= n {
					return nil
				}
				if err := gctx.Err(); err != nil {
					return err
				}
				for i := lo; i < min(lo+chunk, n); i++ {
					if err := fn(view, i); err != nil {
						return err
					}
				}
			}
		})
	}
	return g.Wait()
}

// leafReader lists the entries of a round's leaves, each with its EntryHash and its
// keyed hash (its entry prefixes are the first bytes of that, see prefix). Where the snapshot
// forks, the round names its leaves first (readAhead), in the order it lists them; each
// then reads them a window at a time on several cores, hashing included, and answers
// from the window, so memory holds one window of entries, not a round's.
type leafReader struct {
	keyed *merkle.Keyed

	snap  Snapshot         // the Forker the named ranges are read from
	named []exactRange     // the ranges readAhead named, in listing order
	index map[rangeKey]int // their places in named
	next  int              // named[next:] are not read yet
	ahead map[rangeKey][]prefixedEntry
}

// prefixedEntry is an entry with its EntryHash and the keyed hash of that, whose first
// bytes are its entry prefix.
type prefixedEntry struct {
	e merkle.Entry
	h merkle.Hash
	p [32]byte
}

// prefix returns pe's entry prefix of bits bits (as appendShort writes it).
func (pe *prefixedEntry) prefix(bits int) string {
	var b [32]byte
	return string(appendShort(b[:0], pe.p[:], bits))
}

// prefixValue returns prefixValue of pe's entry prefix of bits bits, at most 64.
func (pe *prefixedEntry) prefixValue(bits int) uint64 {
	v := binary.BigEndian.Uint64(pe.p[:8])
	if bits < 64 {
		v &^= 1<<(64-bits) - 1
	}
	return v
}

// rangeKey is an exactRange as a map key.
type rangeKey struct {
	lo, hi       string
	loNil, hiNil bool
}

func keyOf(x exactRange) rangeKey {
	return rangeKey{lo: string(x.lo), hi: string(x.hi), loNil: x.lo == nil, hiNil: x.hi == nil}
}

const (
	// aheadWindow is how many named ranges one read ahead covers: about 10,000 entries
	// of leaves, enough to keep several cores busy.
	aheadWindow = 512
	// aheadMax is the most entries read ahead for one range: a leaf holds far fewer, and
	// a larger range (a listing of most of a range, or a peer's odd request) is read
	// when it is listed, as it streams.
	aheadMax = 1 << 12
)

// readAhead names the ranges xs that the round is about to list, in that order, and
// forgets what it read for the previous round. It reads nothing unless snap is a Forker
// (the point is to read on several cores): each reads them.
func (l *leafReader) readAhead(snap Snapshot, xs []exactRange) {
	l.snap, l.named, l.index, l.next, l.ahead = nil, nil, nil, 0, nil
	if _, ok := snap.(Forker); !ok || len(xs) < parallelMin {
		return
	}
	l.snap, l.named, l.index = snap, xs, make(map[rangeKey]int, len(xs))
	for i, x := range xs {
		if !x.empty {
			l.index[keyOf(x)] = i
		}
	}
}

// readWindow reads the named ranges from i on, aheadWindow of them, with forEach, in
// place of the window read before.
func (l *leafReader) readWindow(ctx context.Context, i int) error {
	xs := l.named[i:min(i+aheadWindow, len(l.named))]
	l.next = i + len(xs)
	got := make([][]prefixedEntry, len(xs))
	whole := make([]bool, len(xs))
	err := forEach(ctx, l.snap, len(xs), func(view Snapshot, i int) error {
		hs, ok := view.(HashedEntries)
		if xs[i].empty || !ok {
			return nil
		}
		whole[i] = true
		got[i] = make([]prefixedEntry, 0, 32) // a leaf's worth: fewer growths
		return hs.EachHashed(ctx, xs[i].lo, xs[i].hi, func(e merkle.Entry, h merkle.Hash) bool {
			if len(got[i]) == aheadMax {
				got[i], whole[i] = nil, false
				return false
			}
			got[i] = append(got[i], prefixedEntry{e: e, h: h, p: l.keyed.EntryHashSum(h)})
			return true
		})
	})
	if err != nil {
		return err
	}
	l.ahead = make(map[rangeKey][]prefixedEntry, len(xs))
	for i, x := range xs {
		if whole[i] {
			l.ahead[keyOf(x)] = got[i]
		}
	}
	return nil
}

// each calls fn with each entry of the exact range x, with its hashes (pe is valid only
// during the call). A range readAhead named and not yet read is read with the window that
// starts at it; a range read ahead is answered from what was read (once); any other range
// is read from snap.
func (l *leafReader) each(ctx context.Context, snap Snapshot, x exactRange, fn func(pe *prefixedEntry)) error {
	if x.empty {
		return nil
	}
	k := keyOf(x)
	if i, ok := l.index[k]; ok && i >= l.next {
		if err := l.readWindow(ctx, i); err != nil {
			return err
		}
	}
	if es, ok := l.ahead[k]; ok {
		delete(l.ahead, k)
		for i := range es {
			fn(&es[i])
		}
		return nil
	}
	return eachHashed(ctx, snap, x, func(e merkle.Entry, h merkle.Hash) {
		fn(&prefixedEntry{e: e, h: h, p: l.keyed.EntryHashSum(h)})
	})
}
