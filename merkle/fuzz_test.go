package merkle

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// FuzzStoredOps decodes bytes into a sequence of inserts, replacements and removes, applies
// them to a Stored (in a small-fanout configuration so a few entries build several levels)
// and to the model, checks the KV against the canonical layout after every write (every
// 16th once the set holds more than 32 entries) and every query against the model at the
// end.
//
// Encoding: data[0] picks the ordering (bit 0) and bits per level (1 + bits 1-2); then
// ops of 3+n bytes: op, n (low 2 bits: key length), version, key bytes. op bit 0-1: 0, 1
// insert, 2 remove, 3 insert then a new Stored (a new transaction); bit 7 tombstone;
// bits 4-5 expiry; the whole op byte and the op index make the value hash.
func FuzzStoredOps(f *testing.F) {
	f.Add([]byte{0, 0, 1, 1, 'a', 0, 1, 2, 'b', 2, 1, 1, 'a'})
	f.Add([]byte{1, 3, 0, 0, 0x80, 1, 0, 'x', 2, 0, 0, 0x13, 2, 0, 'x', 'y'})
	f.Add([]byte{6, 0, 0, 0xFF, 0, 3, 0, 255, 0, 2, 0, 0xFF, 0x40, 3, 9, 1, 2, 3})
	seed := []byte{2}
	for i := range 60 {
		seed = append(seed, byte(i*7), 1, byte(i%3), byte(i*13))
	}
	f.Add(seed)
	f.Fuzz(fuzzStoredOps)
}

func fuzzStoredOps(t *testing.T, data []byte) {
	{
		if len(data) == 0 {
			return
		}
		o := VersionOrder
		if data[0]&1 == 1 {
			o = KeyOrder
		}
		nbits := 1 + int(data[0]>>1)&3
		prefix := []byte{0xAB}
		kv := newOrderedKV(true)
		model := newNaiveIndex(o)
		st := newStoredBits(kv, prefix, o, nbits)
		r := data[1:]
		for i := 0; len(r) >= 3 && i < 200; i++ {
			op, n, v := r[0], int(r[1]&3), r[2]
			if len(r) < 3+n {
				break
			}
			key := append([]byte{}, r[3:3+n]...)
			r = r[3+n:]
			version := uint64(v % 4)
			if v == 255 {
				version = math.MaxUint64
			}
			if o == KeyOrder {
				version = 0
			}
			e := Entry{Key: key, Version: version, Flags: op >> 7, ExpiresAt: int64(op>>4) & 3}
			e.ValueHash[0], e.ValueHash[1] = op, byte(i)
			var err error
			if op&3 == 2 {
				model.remove(e)
				err = st.Remove(e)
			} else {
				model.insert(e)
				err = st.Insert(e)
			}
			if err != nil {
				t.Fatalf("op %d: %v", i, err)
			}
			if op&3 == 3 {
				st = newStoredBits(kv, prefix, o, nbits)
			}
			if len(model.m) > 32 && i%16 != 0 {
				continue // keep long inputs cheap: the layout is checked below
			}
			if d := diffDumps(kv.dump(), canonicalStored(prefix, o, nbits, model)); d != "" {
				t.Fatalf("op %d: layout differs:\n%s", i, d)
			}
		}
		if d := diffDumps(kv.dump(), canonicalStored(prefix, o, nbits, model)); d != "" {
			t.Fatalf("layout differs:\n%s", d)
		}
		h := fnv.New64a()
		h.Write(data)
		g := ixGen{rng: rand.New(rand.NewPCG(h.Sum64(), 1)), o: o}
		checkIndex(t, "Stored", newStoredBits(kv, prefix, o, nbits), model, g, false)
		if c, err := newStoredBits(kv, prefix, o, nbits).Check(context.Background()); err != nil || !c.OK() || c.Sum != model.digest(nil, nil) {
			t.Fatalf("Check = %+v, %v", c, err)
		}
	}
}

// FuzzStoredCheck damages a small index with the input (each 3 bytes: which record, which
// byte, what to xor into it, or with a zero xor, delete the record) and runs Check, which
// must not panic and must not call a changed index intact unless its digest is unchanged.
func FuzzStoredCheck(f *testing.F) {
	f.Add([]byte{0, 0, 1})
	f.Add([]byte{5, 40, 0x80, 9, 0, 0})
	f.Add([]byte{200, 3, 7, 1, 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		kv := newOrderedKV(false)
		prefix := []byte{0xAB}
		g := ixGen{rng: rand.New(rand.NewPCG(1, 2)), o: VersionOrder}
		var ops []BatchOp
		for range 60 {
			ops = append(ops, BatchOp{Entry: g.entry(g.key(), g.version())})
		}
		st := newStoredBits(kv, prefix, VersionOrder, 1)
		if err := st.Batch(ops); err != nil {
			t.Fatal(err)
		}
		intact, err := st.Check(context.Background())
		if err != nil || !intact.OK() {
			t.Fatalf("intact index: %+v, %v", intact, err)
		}
		for ; len(data) >= 3; data = data[3:] {
			var keys []string
			for k := range kv.dump() {
				keys = append(keys, k)
			}
			if len(keys) == 0 {
				break
			}
			sort.Strings(keys)
			k := []byte(keys[int(data[0])%len(keys)])
			if data[2] == 0 {
				kv.Delete(k)
				continue
			}
			v, _, _ := kv.Get(k)
			if len(v) == 0 {
				continue
			}
			v[int(data[1])%len(v)] ^= data[2]
			kv.Set(k, v)
		}
		c, err := newStoredBits(kv, prefix, VersionOrder, 1).Check(context.Background())
		if err != nil {
			return
		}
		changed := fmt.Sprint(kv.dump()) != fmt.Sprint(canonicalFromIntact(t, ops))
		if changed && c.OK() && c.Sum == intact.Sum && c.Entries == intact.Entries {
			t.Fatalf("a damaged index passed Check: %+v", c)
		}
	})
}

// canonicalFromIntact is the KV dump of an index built from ops.
func canonicalFromIntact(t *testing.T, ops []BatchOp) map[string]string {
	kv := newOrderedKV(false)
	if err := newStoredBits(kv, []byte{0xAB}, VersionOrder, 1).Batch(ops); err != nil {
		t.Fatal(err)
	}
	return kv.dump()
}
