package reconcile

import "github.com/reconcile-dev/reconcile/merkle"

// Short fingerprints and entry prefixes are a whole number of bits long (RoundRequest's
// FPBits, PrefixBits, FetchBits). In memory each is shortBytes(bits) bytes whose bits past
// the length are zero, so that equal values are equal byte strings; on the wire a run of
// them is packed bit after bit (packShort), most significant bit first, and the last
// byte padded with zero bits.

// shortBytes is how many bytes hold a value of bits bits.
func shortBytes(bits int) int { return (bits + 7) / 8 }

// appendShort appends the first bits bits of full (at least shortBytes(bits) bytes long)
// as shortBytes(bits) bytes, the bits past bits zero.
func appendShort(dst, full []byte, bits int) []byte {
	return clearPast(append(dst, full[:shortBytes(bits)]...), bits)
}

// clearPast zeroes the bits past bits of the value of shortBytes(bits) bytes that b ends
// with, and returns b.
func clearPast(b []byte, bits int) []byte {
	if r := bits % 8; r != 0 {
		b[len(b)-1] &= byte(0xFF << (8 - r))
	}
	return b
}

// packedLen is the wire length of n values of bits bits.
func packedLen(n, bits int) int { return (n*bits + 7) / 8 }

// packShort appends items, values of shortBytes(bits) bytes each, packed bit after bit.
func packShort(dst, items []byte, bits int) []byte {
	if bits%8 == 0 {
		return append(dst, items...)
	}
	w := shortBytes(bits)
	var acc uint64 // the last n bits written, not yet a whole byte
	n := 0
	for i := 0; i+w <= len(items); i += w {
		left := bits
		for _, b := range items[i : i+w] {
			k := min(left, 8)
			left -= k
			acc = acc<<k | uint64(b>>(8-k))
			n += k
			if n >= 8 {
				dst = append(dst, byte(acc>>(n-8)))
				n -= 8
				acc &= 1<<n - 1
			}
		}
	}
	if n > 0 {
		dst = append(dst, byte(acc<<(8-n)))
	}
	return dst
}

// unpackShort reads n values of bits bits from b, packedLen(n, bits) bytes written by
// packShort, into n values of shortBytes(bits) bytes each. ok is false when a padding bit
// is set: every value has one encoding.
func unpackShort(b []byte, n, bits int) (items []byte, ok bool) {
	if bits%8 == 0 {
		return b, true
	}
	w := shortBytes(bits)
	items = make([]byte, 0, n*w)
	var acc uint64 // the next n bits of b
	have, next := 0, 0
	for i := 0; i < n; i++ {
		left := bits
		for j := 0; j < w; j++ {
			k := min(left, 8)
			left -= k
			for have < k {
				acc = acc<<8 | uint64(b[next])
				next++
				have += 8
			}
			items = append(items, byte(acc>>(have-k))<<(8-k))
			have -= k
			acc &= 1<<have - 1
		}
	}
	return items, acc == 0
}

// appendFingerprints appends the short fingerprints of ds, bits long, one after the other.
func appendFingerprints(dst []byte, k *merkle.Keyed, ds []merkle.Digest, bits int) []byte {
	for _, d := range ds {
		dst = clearPast(k.AppendFingerprint(dst, d, shortBytes(bits)), bits)
	}
	return dst
}

// prefixValue is a prefix of at most 64 bits, as appendShort writes it (up to 8 bytes),
// as a number: its bytes big-endian from the top, so that equal prefixes of one length
// have equal values and their order is the bytes' order.
func prefixValue(b []byte) uint64 {
	var v uint64
	for i, c := range b {
		v |= uint64(c) << (56 - 8*i)
	}
	return v
}

// appendPrefixValue appends the w bytes of a prefix whose prefixValue is v.
func appendPrefixValue(dst []byte, v uint64, w int) []byte {
	for i := range w {
		dst = append(dst, byte(v>>(56-8*i)))
	}
	return dst
}
