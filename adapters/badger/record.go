package badger

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// Key prefixes of the storage layout (see the package doc).
const (
	prefixRow    = 'r'
	prefixIndex  = 'i'
	prefixExpiry = 'x'
	prefixMeta   = 'm'
)

// indexPrefix is the key prefix the index lives under.
var indexPrefix = []byte{prefixIndex}

// newIndex returns the store's index read and written through kv.
func (s *Store) newIndex(kv merkle.KV) *merkle.Stored {
	return merkle.NewStored(kv, indexPrefix, s.ord)
}

// headerSize is be64(version) || be64(expiresAt) || flags.
const headerSize = 8 + 8 + 1

// record is one decoded row record. Value aliases the buffer it was decoded from.
type record struct {
	key       []byte
	version   uint64
	expiresAt int64
	flags     byte
	value     []byte
}

// entry returns the record's index entry, hashing its value.
func (r *record) entry() merkle.Entry {
	e := r.position()
	e.ValueHash = merkle.ValueHash(r.value)
	return e
}

// position returns the record's entry without its value hash: enough for
// merkle.Index.Remove, which looks only at the key and version.
func (r *record) position() merkle.Entry {
	return merkle.Entry{Key: r.key, Version: r.version, ExpiresAt: r.expiresAt, Flags: r.flags}
}

// same reports whether the record already holds this row.
func (r *record) same(version uint64, expiresAt int64, flags byte, value []byte) bool {
	return r.version == version && r.expiresAt == expiresAt && r.flags == flags && bytes.Equal(r.value, value)
}

func (r *record) expired(now int64) bool { return r.expiresAt != 0 && r.expiresAt <= now }

func (r *record) row() reconcile.Row {
	return reconcile.Row{
		Key:       r.key,
		Version:   r.version,
		Value:     r.value,
		ExpiresAt: r.expiresAt,
		Tombstone: r.flags&merkle.FlagTombstone != 0,
	}
}

// encodeRecord builds the stored bytes of a row record.
func encodeRecord(version uint64, expiresAt int64, flags byte, value []byte) []byte {
	b := make([]byte, headerSize+len(value))
	binary.BigEndian.PutUint64(b[0:], version)
	binary.BigEndian.PutUint64(b[8:], uint64(expiresAt))
	b[16] = flags
	copy(b[headerSize:], value)
	return b
}

func decodeRecord(key, b []byte) (record, error) {
	if len(b) < headerSize {
		return record{}, fmt.Errorf("row record for key %s is %d bytes, shorter than its %d-byte header", printable(key), len(b), headerSize)
	}
	r := record{
		key:       key,
		version:   binary.BigEndian.Uint64(b[0:]),
		expiresAt: int64(binary.BigEndian.Uint64(b[8:])),
		flags:     b[16],
		value:     b[headerSize:],
	}
	return r, nil
}

func rowKey(key []byte) []byte {
	k := make([]byte, 1+len(key))
	k[0] = prefixRow
	copy(k[1:], key)
	return k
}

// expiryKey is "x" || be64(expiresAt with the sign bit flipped) || key: flipping the sign
// bit keeps the byte order equal to the numeric order for negative times too.
func expiryKey(expiresAt int64, key []byte) []byte {
	k := make([]byte, 9+len(key))
	k[0] = prefixExpiry
	binary.BigEndian.PutUint64(k[1:], uint64(expiresAt)^(1<<63))
	copy(k[9:], key)
	return k
}

// expiryBound is the first expiry-index key past every row expiring at or before now.
func expiryBound(now int64) []byte {
	k := make([]byte, 9)
	k[0] = prefixExpiry
	if now == 1<<63-1 {
		k[0]++ // past the whole expiry index
		return k[:1]
	}
	binary.BigEndian.PutUint64(k[1:], uint64(now+1)^(1<<63))
	return k
}

// expiryValueSize is the length of an expiry key's value in a format-2 store: the row's
// entry less what the key holds (its key and expiry), so that a snapshot learns the
// entries of expired rows from the expiry index alone, without reading their rows.
const expiryValueSize = 8 + 1 + 32

// expiryValue is be64(version) || flags || ValueHash of e.
func expiryValue(e merkle.Entry) []byte {
	v := make([]byte, expiryValueSize)
	binary.BigEndian.PutUint64(v, e.Version)
	v[8] = e.Flags
	copy(v[9:], e.ValueHash[:])
	return v
}

// expiredEntry decodes the entry of the row key expiring at at from its expiry value. It
// reports false for an empty value (written by format 1, which kept no entry there) and
// an error for any other length.
func expiredEntry(at int64, key, value []byte) (merkle.Entry, bool, error) {
	switch len(value) {
	case 0:
		return merkle.Entry{}, false, nil
	case expiryValueSize:
		e := merkle.Entry{Key: key, Version: binary.BigEndian.Uint64(value), ExpiresAt: at, Flags: value[8]}
		copy(e.ValueHash[:], value[9:])
		return e, true, nil
	}
	return merkle.Entry{}, false, fmt.Errorf("expiry index value for key %s is %d bytes, want 0 or %d", printable(key), len(value), expiryValueSize)
}

func decodeExpiryKey(k []byte) (expiresAt int64, key []byte, err error) {
	if len(k) < 9 || k[0] != prefixExpiry {
		return 0, nil, fmt.Errorf("malformed expiry index key %s", printable(k))
	}
	return int64(binary.BigEndian.Uint64(k[1:]) ^ (1 << 63)), k[9:], nil
}

// printable renders a key for error messages: quoted when it is text, hex otherwise, and
// cut to a readable length.
func printable(key []byte) string {
	const max = 64
	cut := key
	if len(cut) > max {
		cut = cut[:max]
	}
	s := strconv.Quote(string(cut))
	text := true
	for _, c := range cut {
		if c < 0x20 || c >= 0x7f {
			text = false
			break
		}
	}
	if !text {
		s = fmt.Sprintf("0x%x", cut)
	}
	if len(key) > max {
		s += fmt.Sprintf("... (%d bytes)", len(key))
	}
	return s
}

// clone copies b into a new slice that is never nil: an empty key is a key, and a nil Key
// means "no row" in reconcile.Rows answers.
func clone(b []byte) []byte { return append(make([]byte, 0, len(b)), b...) }
