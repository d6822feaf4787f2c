package bench

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
)

// Class is how one key differs between a source and a target.
type Class uint8

const (
	// OnlySource: the source holds a live row for the key, the target none.
	OnlySource Class = 1 + iota
	// OnlyTarget: the target holds a live row for the key, the source none.
	OnlyTarget
	// Changed: both hold a live row for the key, with different versions, values or
	// expiry.
	Changed
)

func (c Class) String() string {
	switch c {
	case OnlySource:
		return "only_source"
	case OnlyTarget:
		return "only_target"
	case Changed:
		return "changed"
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// Truth is the exact difference between two stores, by key: what a correct diff finds.
// The generator knows it without reading either store (ApplyDriftTruth).
type Truth map[string]Class

// Counts returns how many keys the truth holds in each class.
func (t Truth) Counts() (onlySource, onlyTarget, changed int) {
	for _, c := range t {
		switch c {
		case OnlySource:
			onlySource++
		case OnlyTarget:
			onlyTarget++
		case Changed:
			changed++
		}
	}
	return
}

// Reversed is the truth with source and target swapped: the difference seen from the
// other side.
func (t Truth) Reversed() Truth {
	out := make(Truth, len(t))
	for k, c := range t {
		switch c {
		case OnlySource:
			c = OnlyTarget
		case OnlyTarget:
			c = OnlySource
		}
		out[k] = c
	}
	return out
}

// truthMagic starts a truth file: "rctruth" and a format version.
var truthMagic = []byte("rctruth1")

// WriteTruth stores t at path: the magic, then per key (in key order, so the file is
// deterministic) uvarint(len(key)) key class.
func WriteTruth(path string, t Truth) error {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write truth: %w", err)
	}
	w := bufio.NewWriter(f)
	w.Write(truthMagic)
	var buf [binary.MaxVarintLen64]byte
	for _, k := range keys {
		w.Write(buf[:binary.PutUvarint(buf[:], uint64(len(k)))])
		w.WriteString(k)
		w.WriteByte(byte(t[k]))
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("write truth: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write truth: %w", err)
	}
	return nil
}

// ReadTruth loads a file WriteTruth wrote.
func ReadTruth(path string) (Truth, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read truth: %w", err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	magic := make([]byte, len(truthMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != string(truthMagic) {
		return nil, fmt.Errorf("read truth %s: not a truth file", path)
	}
	t := Truth{}
	for {
		n, err := binary.ReadUvarint(r)
		if errors.Is(err, io.EOF) {
			return t, nil
		}
		if err != nil || n > 1<<20 {
			return nil, fmt.Errorf("read truth %s: corrupt key length", path)
		}
		k := make([]byte, n+1)
		if _, err := io.ReadFull(r, k); err != nil {
			return nil, fmt.Errorf("read truth %s: %w", path, err)
		}
		c := Class(k[n])
		if c < OnlySource || c > Changed {
			return nil, fmt.Errorf("read truth %s: unknown class %d", path, c)
		}
		t[string(k[:n])] = c
	}
}
