package merkle

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
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
	}
}
