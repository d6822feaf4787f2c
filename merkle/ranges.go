package merkle

import (
	"bytes"
	"errors"
	"fmt"
)

// errKeyOrderVersion is returned by Mem and Stored when an entry with a non-zero version is
// inserted into a key-ordered index: key order carries no version (DESIGN §2), and Stored
// could not give it back.
var errKeyOrderVersion = errors.New("merkle: key-ordered index needs Version 0 in every entry")

// rangeIsEmpty reports whether [lo, hi) is empty by its bounds alone (lo >= hi, both set).
func rangeIsEmpty(lo, hi []byte) bool {
	return lo != nil && hi != nil && bytes.Compare(lo, hi) >= 0
}

// checkPartBounds checks that lo <= b0 <= b1 <= ... <= hi (nil lo: -inf, nil hi: +inf) and
// that no bound is nil. Equal neighbours are allowed and give empty parts.
func checkPartBounds(lo, hi []byte, bounds [][]byte) error {
	prev := lo
	for i, b := range bounds {
		if b == nil {
			return fmt.Errorf("merkle: bound %d is nil", i)
		}
		if prev != nil && bytes.Compare(prev, b) > 0 {
			return fmt.Errorf("merkle: bound %d is out of order or below lo", i)
		}
		prev = b
	}
	if len(bounds) > 0 && hi != nil && bytes.Compare(prev, hi) > 0 {
		return errors.New("merkle: last bound is above hi")
	}
	return nil
}
