package merkle

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
)

// TestStoredCheck: Check passes random indexes (flat, several fanouts, and empty) and
// reports each kind of damage: a node's digest changed, a node deleted or added, an
// entry's fields changed under its hash, an entry deleted under its nodes, a wrong
// top-level record, a stray level above the top.
func TestStoredCheck(t *testing.T) {
	ctx := context.Background()
	for _, nbits := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("bits%d", nbits), func(t *testing.T) {
			g := ixGen{rng: rand.New(rand.NewPCG(uint64(nbits), 11)), o: VersionOrder}
			prefix := []byte("c/")
			build := func() (*orderedKV, *naiveIndex) {
				kv := newOrderedKV(false)
				model := newNaiveIndex(VersionOrder)
				var ops []BatchOp
				for range 400 {
					e := g.entry(g.key(), g.version())
					model.insert(e)
					ops = append(ops, BatchOp{Entry: e})
				}
				if err := newStoredBits(kv, prefix, VersionOrder, nbits).Batch(ops); err != nil {
					t.Fatal(err)
				}
				return kv, model
			}
			check := func(kv *orderedKV) StoredCheck {
				c, err := newStoredBits(kv, prefix, VersionOrder, nbits).Check(ctx)
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
			kv, model := build()
			c := check(kv)
			if !c.OK() || c.Sum != model.digest(nil, nil) || c.Entries != int64(len(model.m)) {
				t.Fatalf("intact index: %+v; want OK, %d entries, sum %v", c, len(model.m), model.digest(nil, nil))
			}
			if c := check(newOrderedKV(false)); !c.OK() || c.Entries != 0 {
				t.Fatalf("empty index: %+v", c)
			}
			// keysOf returns the KV's keys under prefix+level byte, in order.
			keysOf := func(kv *orderedKV, level byte) []string {
				var out []string
				for k := range kv.dump() {
					if strings.HasPrefix(k, string(prefix)+string([]byte{level})) {
						out = append(out, k)
					}
				}
				return out
			}
			damage := map[string]func(kv *orderedKV){
				"node digest": func(kv *orderedKV) {
					k := keysOf(kv, 1)[0]
					v, _, _ := kv.Get([]byte(k))
					d, _ := UnmarshalDigest(v)
					d.Sum[0]++
					kv.Set([]byte(k), d.MarshalBinary())
				},
				"node deleted": func(kv *orderedKV) {
					for _, k := range keysOf(kv, 1) {
						if k[len(prefix)+1] == storedNodeMark {
							kv.Delete([]byte(k))
							return
						}
					}
				},
				"stray node": func(kv *orderedKV) {
					kv.Set(append(append([]byte{}, prefix...), 1, storedNodeMark, 0xEE), Digest{Count: 1}.MarshalBinary())
				},
				"entry fields": func(kv *orderedKV) {
					k := keysOf(kv, 0)[0]
					v, _, _ := kv.Get([]byte(k))
					v[9]++ // the value hash, not the stored EntryHash
					kv.Set([]byte(k), v)
				},
				"entry deleted": func(kv *orderedKV) { kv.Delete([]byte(keysOf(kv, 0)[3])) },
				"top record": func(kv *orderedKV) {
					k := append(append([]byte{}, prefix...), storedMetaByte)
					v, _, _ := kv.Get(k)
					top := v[0] + 1 // a level with no nodes
					if v[0] > 1 {
						top = v[0] - 1 // a level left above the top
					}
					kv.Set(k, []byte{top})
				},
				"level above top": func(kv *orderedKV) {
					kv.Set(append(append([]byte{}, prefix...), storedMaxLevel, storedHeadMark), Digest{Count: 1}.MarshalBinary())
				},
			}
			names := make([]string, 0, len(damage))
			for name := range damage {
				names = append(names, name)
			}
			sort.Strings(names) // the same indexes every run
			for _, name := range names {
				kv, _ := build()
				damage[name](kv)
				if c := check(kv); c.OK() {
					t.Errorf("%s: Check found nothing wrong: %+v", name, c)
				}
			}
		})
	}
}
