package reconcile

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestPackShort: values of every length from 8 to 70 bits survive packing, take
// packedLen bytes, and a set padding bit is refused.
func TestPackShort(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for bits := 8; bits <= 70; bits++ {
		for n := 0; n < 20; n++ {
			var items []byte
			for i := 0; i < n; i++ {
				full := make([]byte, 32)
				for j := range full {
					full[j] = byte(rng.Uint32())
				}
				items = appendShort(items, full, bits)
			}
			packed := packShort(nil, items, bits)
			if len(packed) != packedLen(n, bits) {
				t.Fatalf("%d values of %d bits packed into %d bytes, want %d", n, bits, len(packed), packedLen(n, bits))
			}
			got, ok := unpackShort(packed, n, bits)
			if !ok || !bytes.Equal(got, items) {
				t.Fatalf("%d values of %d bits changed in transit", n, bits)
			}
			if pad := n * bits % 8; pad != 0 {
				bad := bytes.Clone(packed)
				bad[len(bad)-1] |= 1
				if _, ok := unpackShort(bad, n, bits); ok {
					t.Fatalf("%d values of %d bits: a set padding bit went unnoticed", n, bits)
				}
			}
		}
	}
	// 12 bits: two values share a byte.
	got := packShort(nil, []byte{0xAB, 0xC0, 0x12, 0x30}, 12)
	if !bytes.Equal(got, []byte{0xAB, 0xC1, 0x23}) {
		t.Fatalf("two 12-bit values packed as %x, want abc123", got)
	}
}

func TestPrefixValue(t *testing.T) {
	var pe prefixedEntry
	for i := range pe.p {
		pe.p[i] = byte(0x9d * (i + 1))
	}
	for bits := 8; bits <= 64; bits++ {
		short := appendShort(nil, pe.p[:], bits)
		v := prefixValue(short)
		if got := pe.prefixValue(bits); got != v {
			t.Fatalf("%d bits: entry's prefix value %x, its listed prefix's %x", bits, got, v)
		}
		if back := appendPrefixValue(nil, v, len(short)); !bytes.Equal(back, short) {
			t.Fatalf("%d bits: prefix %x came back as %x", bits, short, back)
		}
	}
}
