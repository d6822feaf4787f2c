package merkle

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
)

// Ordering is the total order an index is built over.
type Ordering uint8

const (
	// VersionOrder positions an entry at be64(Version) || Key. The default wherever the
	// version is replicated with the row.
	VersionOrder Ordering = 1
	// KeyOrder positions an entry at its Key; Version is 0 in every entry.
	KeyOrder Ordering = 2
)

func (o Ordering) String() string {
	switch o {
	case VersionOrder:
		return "version"
	case KeyOrder:
		return "key"
	}
	return fmt.Sprintf("ordering(%d)", uint8(o))
}

// ParseOrdering accepts "version" or "key".
func ParseOrdering(s string) (Ordering, error) {
	switch s {
	case "version", "":
		return VersionOrder, nil
	case "key":
		return KeyOrder, nil
	}
	return 0, fmt.Errorf("unknown ordering %q: want version or key", s)
}

// Position returns the entry's position in ordering o.
func (o Ordering) Position(key []byte, version uint64) []byte {
	return o.AppendPosition(make([]byte, 0, o.PositionLen(key)), key, version)
}

// PositionLen is len(o.Position(key, v)).
func (o Ordering) PositionLen(key []byte) int {
	if o == KeyOrder {
		return len(key)
	}
	return 8 + len(key)
}

// AppendPosition appends the position of (key, version) in ordering o to dst.
func (o Ordering) AppendPosition(dst, key []byte, version uint64) []byte {
	if o != KeyOrder {
		dst = binary.BigEndian.AppendUint64(dst, version)
	}
	return append(dst, key...)
}

// Split undoes Position: the key and version an entry position stands for.
func (o Ordering) Split(pos []byte) (key []byte, version uint64, err error) {
	if o == KeyOrder {
		return pos, 0, nil
	}
	if len(pos) < 8 {
		return nil, 0, fmt.Errorf("position of %d bytes is shorter than its version", len(pos))
	}
	return pos[8:], binary.BigEndian.Uint64(pos), nil
}

// Compare orders a and b by their positions in ordering o, as bytes.Compare of the
// positions would, without building them.
func (o Ordering) Compare(a, b Entry) int {
	if o != KeyOrder {
		if c := cmp.Compare(a.Version, b.Version); c != 0 {
			return c
		}
	}
	return bytes.Compare(a.Key, b.Key)
}

// Position returns e's position in ordering o.
func (e Entry) Position(o Ordering) []byte { return o.Position(e.Key, e.Version) }
