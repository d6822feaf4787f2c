package merkle

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestOrderingCompare: Compare orders entries as their positions' bytes do.
func TestOrderingCompare(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	entry := func() Entry {
		k := make([]byte, rng.IntN(4))
		for i := range k {
			k[i] = byte(rng.IntN(3))
		}
		return Entry{Key: k, Version: uint64(rng.IntN(3)) << (8 * rng.IntN(8))}
	}
	for _, o := range []Ordering{VersionOrder, KeyOrder} {
		for range 2000 {
			a, b := entry(), entry()
			if o == KeyOrder {
				a.Version, b.Version = 0, 0
			}
			if got, want := o.Compare(a, b), bytes.Compare(a.Position(o), b.Position(o)); got != want {
				t.Fatalf("%s: Compare(%x@%d, %x@%d) = %d, positions compare %d", o, a.Key, a.Version, b.Key, b.Version, got, want)
			}
		}
	}
}
