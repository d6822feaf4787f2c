// Package merkle defines the bytes every endpoint must agree on (entry hashes, additive
// digests, fingerprints, positions) and the aggregate index that answers range digests
// over them. It knows nothing of storage engines or of the network.
package merkle

import (
	"encoding/binary"
	"math/bits"
	"sync"

	"github.com/zeebo/blake3"
)

// Hash is a BLAKE3-256 output.
type Hash = [32]byte

// FlagTombstone marks an entry that records a delete (merge mode only).
const FlagTombstone byte = 1

const entryDomain = "reconcile/entry/v1"

// Entry is what the index holds for one row: everything that identifies its state except
// the value bytes, which are represented by ValueHash.
type Entry struct {
	Key       []byte
	Version   uint64
	ExpiresAt int64 // unix nanoseconds, 0 = never
	Flags     byte
	ValueHash Hash
}

// ValueHash is BLAKE3-256 of a row's canonical value bytes.
func ValueHash(value []byte) Hash { return blake3.Sum256(value) }

// EntryHash is BLAKE3-256("reconcile/entry/v1" || uvarint(len(key)) || key ||
// be64(version) || be64(expiresAt) || flags || valueHash), exactly as DESIGN §2 fixes it.
func EntryHash(key []byte, version uint64, expiresAt int64, flags byte, valueHash Hash) Hash {
	// The message is assembled in one buffer and hashed in one call: a streaming hasher
	// costs a third more for the short messages of most rows (BenchmarkEntryHash).
	var stack [160]byte
	n := len(entryDomain) + binary.MaxVarintLen64 + len(key) + 17 + len(valueHash)
	msg := stack[:0]
	if n > len(stack) {
		msg = make([]byte, 0, n)
	}
	msg = append(msg, entryDomain...)
	msg = binary.AppendUvarint(msg, uint64(len(key)))
	msg = append(msg, key...)
	msg = binary.BigEndian.AppendUint64(msg, version)
	msg = binary.BigEndian.AppendUint64(msg, uint64(expiresAt))
	msg = append(msg, flags)
	msg = append(msg, valueHash[:]...)
	return blake3.Sum256(msg)
}

// Hash returns the entry's EntryHash.
func (e Entry) Hash() Hash { return EntryHash(e.Key, e.Version, e.ExpiresAt, e.Flags, e.ValueHash) }

// Digest returns the digest of the set holding only this entry.
func (e Entry) Digest() Digest { return Digest{Count: 1, Sum: e.Hash()} }

// Expired reports whether the entry is expired at now (unix ns): ExpiresAt at or before now.
func (e Entry) Expired(now int64) bool { return e.ExpiresAt != 0 && e.ExpiresAt <= now }

// SameEntry reports whether a and b are the same entry (nil: no entry), field by field.
func SameEntry(a, b *Entry) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return string(a.Key) == string(b.Key) && a.Version == b.Version && a.ExpiresAt == b.ExpiresAt &&
		a.Flags == b.Flags && a.ValueHash == b.ValueHash
}

// Digest summarises a multiset of entries: how many, and the sum of their EntryHashes as
// little-endian 256-bit integers mod 2^256. Digests add and subtract like the sets they
// stand for, so a range's digest is a difference of two prefix digests.
type Digest struct {
	Count uint64
	Sum   Hash
}

// Add returns d + o.
func (d Digest) Add(o Digest) Digest {
	var out Digest
	out.Count = d.Count + o.Count
	var carry uint64
	for i := 0; i < 32; i += 8 {
		a := binary.LittleEndian.Uint64(d.Sum[i:])
		b := binary.LittleEndian.Uint64(o.Sum[i:])
		s, c := bits.Add64(a, b, carry)
		binary.LittleEndian.PutUint64(out.Sum[i:], s)
		carry = c
	}
	return out
}

// Sub returns d - o.
func (d Digest) Sub(o Digest) Digest {
	var out Digest
	out.Count = d.Count - o.Count
	var borrow uint64
	for i := 0; i < 32; i += 8 {
		a := binary.LittleEndian.Uint64(d.Sum[i:])
		b := binary.LittleEndian.Uint64(o.Sum[i:])
		s, c := bits.Sub64(a, b, borrow)
		binary.LittleEndian.PutUint64(out.Sum[i:], s)
		borrow = c
	}
	return out
}

// IsZero reports whether d is the digest of the empty set.
func (d Digest) IsZero() bool { return d == Digest{} }

// FingerprintSize is the length of a full fingerprint, the one `root` prints.
const FingerprintSize = 16

// Fingerprint is BLAKE3(Sum || le64(Count)) cut to 16 bytes.
func (d Digest) Fingerprint() [FingerprintSize]byte {
	var buf [40]byte
	copy(buf[:32], d.Sum[:])
	binary.LittleEndian.PutUint64(buf[32:], d.Count)
	full := blake3.Sum256(buf[:])
	var out [FingerprintSize]byte
	copy(out[:], full[:FingerprintSize])
	return out
}

// MarshalBinary encodes d as le64(Count) || Sum (40 bytes).
func (d Digest) MarshalBinary() []byte {
	out := make([]byte, 40)
	binary.LittleEndian.PutUint64(out, d.Count)
	copy(out[8:], d.Sum[:])
	return out
}

// UnmarshalDigest decodes the 40 bytes MarshalBinary writes.
func UnmarshalDigest(b []byte) (Digest, bool) {
	if len(b) != 40 {
		return Digest{}, false
	}
	var d Digest
	d.Count = binary.LittleEndian.Uint64(b)
	copy(d.Sum[:], b[8:])
	return d, true
}

// Keyed shortens fingerprints and entry-hash prefixes for one session. A per-session
// random nonce keys the hash, so a collision in one session does not repeat in the next.
// A Keyed is safe for concurrent use.
type Keyed struct {
	h    *blake3.Hasher // keyed, never written: the hashers in pool are its clones
	pool sync.Pool      // of *blake3.Hasher, reset before each use: keying a new hasher costs more than hashing
}

// NewKeyed derives the session key from a nonce.
func NewKeyed(nonce []byte) *Keyed {
	h := blake3.New()
	h.Write([]byte("reconcile/session-key/v1"))
	h.Write(nonce)
	var key [32]byte
	h.Sum(key[:0])
	kh, _ := blake3.NewKeyed(key[:]) // a 32-byte key never fails
	return &Keyed{h: kh}
}

// Fingerprint returns the first n bytes of keyed-BLAKE3(Sum || le64(Count)).
func (k *Keyed) Fingerprint(d Digest, n int) []byte { return k.AppendFingerprint(nil, d, n) }

// AppendFingerprint appends Fingerprint(d, n) to dst.
func (k *Keyed) AppendFingerprint(dst []byte, d Digest, n int) []byte {
	var buf [40]byte
	copy(buf[:32], d.Sum[:])
	binary.LittleEndian.PutUint64(buf[32:], d.Count)
	out := k.sum(buf[:])
	return append(dst, out[:n]...)
}

// EntryPrefix returns the first n bytes of keyed-BLAKE3(EntryHash): a short name for an
// entry inside one leaf range of one session.
func (k *Keyed) EntryPrefix(h Hash, n int) []byte { return k.AppendEntryPrefix(nil, h, n) }

// AppendEntryPrefix appends EntryPrefix(h, n) to dst.
func (k *Keyed) AppendEntryPrefix(dst []byte, h Hash, n int) []byte {
	out := k.sum(h[:])
	return append(dst, out[:n]...)
}

// EntryHashSum returns keyed-BLAKE3(h), whose first n bytes are EntryPrefix(h, n).
func (k *Keyed) EntryHashSum(h Hash) [32]byte { return k.sum(h[:]) }

func (k *Keyed) sum(b []byte) (out [32]byte) {
	h, _ := k.pool.Get().(*blake3.Hasher)
	if h == nil {
		h = k.h.Clone()
	}
	h.Reset()
	h.Write(b)
	h.Sum(out[:0])
	k.pool.Put(h)
	return out
}
