package merkle

import (
	"context"
	"math/rand/v2"
	"testing"
)

// TestStoredBatch applies random batches (inserts, replacements, removes, repeated
// positions) through Stored.Batch and checks the stored bytes against the canonical
// layout after every batch, queries against the model, and that removing everything in
// one batch empties the KV. Where the model knows what a slot holds before an op, the op
// says so (BatchOp.Known) half the time, so Batch mixes ops it reads and ops it trusts,
// also at one position.
func TestStoredBatch(t *testing.T) {
	for _, o := range []Ordering{VersionOrder, KeyOrder} {
		for _, nbits := range []int{1, 2, 4} {
			t.Run(o.String()+"/bits"+string(rune('0'+nbits)), func(t *testing.T) {
				runStoredBatch(t, o, nbits, uint64(nbits)*7+uint64(o))
			})
		}
	}
}

func runStoredBatch(t *testing.T, o Ordering, nbits int, seed uint64) {
	g := ixGen{rng: rand.New(rand.NewPCG(seed, 5)), o: o}
	kv := newOrderedKV(true)
	prefix := []byte("ix/")
	model := newNaiveIndex(o)
	var live []Entry
	for b := 0; b < 120; b++ {
		st := newStoredBits(kv, prefix, o, nbits)
		n := 1 + g.rng.IntN(40)
		if b%10 == 9 {
			n = 300
		}
		var ops []BatchOp
		for range n {
			var op BatchOp
			switch r := g.rng.IntN(10); {
			case r < 6 || len(live) == 0:
				op.Entry = g.entry(g.key(), g.version())
				live = append(live, op.Entry)
			case r < 8:
				old := live[g.rng.IntN(len(live))]
				op.Entry = g.entry(old.Key, old.Version)
			case r < 9:
				j := g.rng.IntN(len(live))
				op = BatchOp{Entry: live[j], Remove: true}
				live[j] = live[len(live)-1]
				live = live[:len(live)-1]
			default:
				op = BatchOp{Entry: g.entry(g.key(), g.version()), Remove: true}
			}
			cur, held := model.m[string(op.Entry.Position(o))]
			if g.rng.IntN(2) == 0 {
				switch {
				case !op.Remove && !held:
					op.Known = true
				case op.Remove && held:
					op.Entry, op.Known = cur, true
				}
			}
			if op.Remove {
				model.remove(op.Entry)
			} else {
				model.insert(op.Entry)
			}
			ops = append(ops, op)
		}
		if err := st.Batch(ops); err != nil {
			t.Fatalf("batch %d: %v", b, err)
		}
		if d := diffDumps(kv.dump(), canonicalStored(prefix, o, nbits, model)); d != "" {
			t.Fatalf("batch %d: stored layout differs from canonical:\n%s", b, d)
		}
		if c, err := newStoredBits(kv, prefix, o, nbits).Check(context.Background()); err != nil || !c.OK() {
			t.Fatalf("batch %d: Check = %+v, %v", b, c, err)
		}
		if b%20 == 0 {
			checkIndex(t, "Stored", newStoredBits(kv, prefix, o, nbits), model, g, false)
		}
	}
	// Replace everything in one batch: the index may empty in the middle of it.
	{
		_, es := model.sorted()
		var ops []BatchOp
		for _, e := range es {
			ops = append(ops, BatchOp{Entry: e, Remove: true})
			model.remove(e)
		}
		for range 50 {
			e := g.entry(g.key(), g.version())
			ops = append(ops, BatchOp{Entry: e})
			model.insert(e)
		}
		g.rng.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
		// Shuffling may put an insert before a remove of the same position: redo the
		// model in the shuffled order.
		model = newNaiveIndex(o)
		for _, e := range es {
			model.insert(e)
		}
		for _, op := range ops {
			if op.Remove {
				model.remove(op.Entry)
			} else {
				model.insert(op.Entry)
			}
		}
		if err := newStoredBits(kv, prefix, o, nbits).Batch(ops); err != nil {
			t.Fatal(err)
		}
		if d := diffDumps(kv.dump(), canonicalStored(prefix, o, nbits, model)); d != "" {
			t.Fatalf("replace all: stored layout differs from canonical:\n%s", d)
		}
	}
	_, es := model.sorted()
	var ops []BatchOp
	for _, e := range es {
		ops = append(ops, BatchOp{Entry: e, Remove: true})
	}
	if err := newStoredBits(kv, prefix, o, nbits).Batch(ops); err != nil {
		t.Fatal(err)
	}
	if kv.n != 0 {
		t.Fatalf("after removing everything: %d keys left", kv.n)
	}
}
