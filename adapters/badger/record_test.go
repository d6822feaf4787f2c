package badger

import (
	"bytes"
	"testing"
)

// FuzzDecodeRecord feeds the decoders of stored bytes (a row record, an expiry-index key
// and value) what a damaged store could hold: they return an error or a value that
// encodes back to the same bytes, and never panic.
func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte("k"), encodeRecord(7, 99, 0, []byte("value")))
	f.Add([]byte(""), []byte{1, 2, 3})
	f.Add(expiryKey(-5, []byte("k")), make([]byte, expiryValueSize))
	f.Fuzz(func(t *testing.T, key, b []byte) {
		if r, err := decodeRecord(key, b); err == nil {
			if again := encodeRecord(r.version, r.expiresAt, r.flags, r.value); !bytes.Equal(again, b) {
				t.Fatalf("row record %x decoded to %+v, which encodes to %x", b, r, again)
			}
			if !bytes.Equal(r.key, key) {
				t.Fatalf("row record of key %q decoded with key %q", key, r.key)
			}
		} else if len(b) >= headerSize {
			t.Fatalf("row record of %d bytes refused: %v", len(b), err)
		}
		if at, k, err := decodeExpiryKey(key); err == nil {
			if again := expiryKey(at, k); !bytes.Equal(again, key) {
				t.Fatalf("expiry key %x decoded to (%d, %q), which encodes to %x", key, at, k, again)
			}
			if e, ok, err := expiredEntry(at, k, b); err == nil && ok {
				if again := expiryValue(e); !bytes.Equal(again, b) {
					t.Fatalf("expiry value %x decoded to %+v, which encodes to %x", b, e, again)
				}
			} else if err == nil && len(b) != 0 {
				t.Fatalf("expiry value of %d bytes read as empty", len(b))
			}
		}
	})
}
