package merkle

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/zeebo/blake3"
)

// TestKeyed checks the session's keyed fingerprints and entry prefixes against BLAKE3
// computed here from their definitions (docs/protocol.md): the key is
// BLAKE3("reconcile/session-key/v1" || nonce), a fingerprint is keyed-BLAKE3(Sum ||
// le64(Count)) cut to n bytes, an entry prefix keyed-BLAKE3(EntryHash) cut to n bytes.
// Both sides of a session, possibly different builds, must agree on them byte for byte.
func TestKeyed(t *testing.T) {
	nonce := []byte("a session nonce of sixteen+ bytes")
	h := blake3.New()
	h.Write([]byte("reconcile/session-key/v1"))
	h.Write(nonce)
	key := h.Sum(nil)
	keyed := func(msg []byte) []byte {
		kh, err := blake3.NewKeyed(key)
		if err != nil {
			t.Fatal(err)
		}
		kh.Write(msg)
		return kh.Sum(nil)
	}
	k := NewKeyed(nonce)
	for i := 0; i < 50; i++ {
		d := Digest{Count: uint64(i) * 7919}
		for j := range d.Sum {
			d.Sum[j] = byte(i*31 + j)
		}
		msg := binary.LittleEndian.AppendUint64(append([]byte{}, d.Sum[:]...), d.Count)
		want := keyed(msg)
		for _, n := range []int{1, 4, 16, 32} {
			if got := k.Fingerprint(d, n); !bytes.Equal(got, want[:n]) {
				t.Fatalf("Fingerprint(%d, %d) = %x, want %x", i, n, got, want[:n])
			}
			if got := k.AppendFingerprint([]byte("x"), d, n); !bytes.Equal(got, append([]byte("x"), want[:n]...)) {
				t.Fatalf("AppendFingerprint(%d, %d) = %x", i, n, got)
			}
		}
		eh := Hash(d.Sum)
		wantP := keyed(eh[:])
		if got := k.EntryPrefix(eh, 6); !bytes.Equal(got, wantP[:6]) {
			t.Fatalf("EntryPrefix(%d) = %x, want %x", i, got, wantP[:6])
		}
		if got := k.AppendEntryPrefix([]byte("y"), eh, 6); !bytes.Equal(got, append([]byte("y"), wantP[:6]...)) {
			t.Fatalf("AppendEntryPrefix(%d) = %x", i, got)
		}
	}
}
