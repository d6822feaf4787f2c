package merkle

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

func digestFromBig(count uint64, x *big.Int) Digest {
	var d Digest
	d.Count = count
	copy(d.Sum[:], leBytes32(x))
	return d
}

// TestDigestArithmetic checks Add and Sub against math/big modulo 2^256 (and Count modulo
// 2^64): commutative, associative, Sub the inverse of Add, carries across every limb.
func TestDigestArithmetic(t *testing.T) {
	mod := new(big.Int).Lsh(big.NewInt(1), 256)
	rng := rand.New(rand.NewPCG(1, 2))
	random := func() Digest {
		var d Digest
		d.Count = rng.Uint64()
		for i := range d.Sum {
			d.Sum[i] = byte(rng.Uint32())
		}
		// Limbs near 2^64 and near zero force carries and borrows.
		switch rng.IntN(4) {
		case 0:
			for i := range 24 {
				d.Sum[i] = 0xFF
			}
		case 1:
			for i := range 24 {
				d.Sum[i] = 0
			}
		}
		return d
	}
	for range 2000 {
		a, b, c := random(), random(), random()
		if a.Add(b) != b.Add(a) {
			t.Fatal("Add not commutative")
		}
		if a.Add(b).Add(c) != a.Add(b.Add(c)) {
			t.Fatal("Add not associative")
		}
		if a.Add(b).Sub(b) != a || a.Sub(b).Add(b) != a {
			t.Fatal("Sub is not the inverse of Add")
		}
		if !a.Sub(a).IsZero() {
			t.Fatal("a - a is not zero")
		}
		x, y := leInt(a.Sum[:]), leInt(b.Sum[:])
		sum := new(big.Int).Add(x, y)
		if want := digestFromBig(a.Count+b.Count, sum.Mod(sum, mod)); a.Add(b) != want {
			t.Fatalf("Add(%x, %x) = %x, want %x", a.Sum, b.Sum, a.Add(b).Sum, want.Sum)
		}
		diff := new(big.Int).Sub(x, y)
		if want := digestFromBig(a.Count-b.Count, diff.Mod(diff, mod)); a.Sub(b) != want {
			t.Fatalf("Sub(%x, %x) = %x, want %x", a.Sum, b.Sum, a.Sub(b).Sum, want.Sum)
		}
	}

	one := Digest{Count: 1, Sum: Hash{1}}
	// 2^64-1 + 1 carries into the second limb.
	var low Digest
	for i := range 8 {
		low.Sum[i] = 0xFF
	}
	if got := low.Add(one); got.Sum != (Hash{8: 1}) || got.Count != 1 {
		t.Fatalf("carry into limb 1: %x", got.Sum)
	}
	// 2^192 + ... : a carry that ripples through three limbs.
	var three Digest
	for i := range 24 {
		three.Sum[i] = 0xFF
	}
	if got := three.Add(one); got.Sum != (Hash{24: 1}) {
		t.Fatalf("ripple carry: %x", got.Sum)
	}
	// 2^256-1 + 1 wraps to zero; 0 - 1 wraps to 2^256-1, Count likewise.
	var top Digest
	for i := range top.Sum {
		top.Sum[i] = 0xFF
	}
	top.Count = math.MaxUint64
	if got := top.Add(one); !got.IsZero() {
		t.Fatalf("2^256-1 + 1 = %v", got)
	}
	if got := (Digest{}).Sub(one); got != top {
		t.Fatalf("0 - 1 = %v", got)
	}
	if got := (Digest{Sum: Hash{8: 1}}).Sub(Digest{Sum: Hash{1}}); got.Sum != low.Sum {
		t.Fatalf("borrow from limb 1: %x", got.Sum)
	}
}

func TestDigestBinary(t *testing.T) {
	d := Digest{Count: 0x0102030405060708, Sum: Hash{0: 9, 31: 10}}
	b := d.MarshalBinary()
	if len(b) != 40 || b[0] != 8 || b[7] != 1 || b[8] != 9 || b[39] != 10 {
		t.Fatalf("MarshalBinary = %x", b)
	}
	if got, ok := UnmarshalDigest(b); !ok || got != d {
		t.Fatalf("round trip: %v %v", got, ok)
	}
	if _, ok := UnmarshalDigest(b[:39]); ok {
		t.Fatal("short digest accepted")
	}
	if d.Fingerprint() == (Digest{Count: d.Count + 1, Sum: d.Sum}).Fingerprint() {
		t.Fatal("fingerprint ignores the count")
	}
}
