package merkle

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
)

// orderedKV is an in-memory ordered KV for tests and benchmarks: a treap keyed by string.
// With scribble set, the key and value slices handed to an Iterate callback are overwritten
// once the callback returns, so a Stored that keeps them past the call is caught.
type orderedKV struct {
	root     *okvNode
	n        int
	seed     uint64
	scribble bool
	// operation counts
	gets, iterates, sets, deletes int
}

type okvNode struct {
	key  string
	bkey []byte // key as bytes, handed to Iterate callbacks
	val  []byte
	prio uint64
	l, r *okvNode
}

func newOrderedKV(scribble bool) *orderedKV { return &orderedKV{seed: 1, scribble: scribble} }

func (kv *orderedKV) prio() uint64 {
	kv.seed ^= kv.seed << 13
	kv.seed ^= kv.seed >> 7
	kv.seed ^= kv.seed << 17
	return kv.seed
}

func (kv *orderedKV) Get(key []byte) ([]byte, bool, error) {
	kv.gets++
	k := string(key)
	for t := kv.root; t != nil; {
		switch {
		case k < t.key:
			t = t.l
		case k > t.key:
			t = t.r
		default:
			return append([]byte{}, t.val...), true, nil
		}
	}
	return nil, false, nil
}

func okvInsert(t, x *okvNode) *okvNode {
	if t == nil {
		return x
	}
	switch {
	case x.key < t.key:
		t.l = okvInsert(t.l, x)
		if t.l.prio > t.prio {
			l := t.l
			t.l, l.r = l.r, t
			return l
		}
	case x.key > t.key:
		t.r = okvInsert(t.r, x)
		if t.r.prio > t.prio {
			r := t.r
			t.r, r.l = r.l, t
			return r
		}
	default:
		t.val = x.val
	}
	return t
}

func okvMerge(a, b *okvNode) *okvNode {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	if a.prio > b.prio {
		a.r = okvMerge(a.r, b)
		return a
	}
	b.l = okvMerge(a, b.l)
	return b
}

func okvDelete(t *okvNode, k string) (*okvNode, bool) {
	if t == nil {
		return nil, false
	}
	var ok bool
	switch {
	case k < t.key:
		t.l, ok = okvDelete(t.l, k)
	case k > t.key:
		t.r, ok = okvDelete(t.r, k)
	default:
		return okvMerge(t.l, t.r), true
	}
	return t, ok
}

func (kv *orderedKV) Set(key, value []byte) error {
	kv.sets++
	if _, ok, _ := kv.Get(key); !ok {
		kv.n++
	}
	kv.gets--
	kv.root = okvInsert(kv.root, &okvNode{key: string(key), bkey: key, val: value, prio: kv.prio()})
	return nil
}

func (kv *orderedKV) Delete(key []byte) error {
	kv.deletes++
	var ok bool
	kv.root, ok = okvDelete(kv.root, string(key))
	if ok {
		kv.n--
	}
	return nil
}

func (kv *orderedKV) Iterate(start, end []byte, reverse bool, fn func(key, value []byte) bool) error {
	kv.iterates++
	call := func(t *okvNode) bool {
		if !kv.scribble {
			return fn(t.bkey, t.val)
		}
		k, v := append([]byte{}, t.bkey...), append([]byte{}, t.val...)
		goOn := fn(k, v)
		for i := range k {
			k[i] = 0xEE
		}
		for i := range v {
			v[i] = 0xEE
		}
		return goOn
	}
	var walk func(t *okvNode) bool
	walk = func(t *okvNode) bool {
		for t != nil {
			if bytes.Compare(t.bkey, start) < 0 {
				t = t.r
				continue
			}
			if end != nil && bytes.Compare(t.bkey, end) >= 0 {
				t = t.l
				continue
			}
			first, second := t.l, t.r
			if reverse {
				first, second = second, first
			}
			if !walk(first) || !call(t) {
				return false
			}
			t = second
		}
		return true
	}
	walk(kv.root)
	return nil
}

// dump returns every key and value.
func (kv *orderedKV) dump() map[string]string {
	out := map[string]string{}
	kv.Iterate(nil, nil, false, func(k, v []byte) bool {
		out[string(k)] = string(v)
		return true
	})
	return out
}

// diffDumps describes the differences between two dumps (empty: equal).
func diffDumps(got, want map[string]string) string {
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		g, gok := got[k]
		w, wok := want[k]
		if gok == wok && g == w {
			continue
		}
		if b.Len() > 2000 {
			b.WriteString("...\n")
			break
		}
		fmt.Fprintf(&b, "key %x: got %x (%v), want %x (%v)\n", k, g, gok, w, wok)
	}
	return b.String()
}
