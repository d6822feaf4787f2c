package merkle

// Range bounds: lo is inclusive, hi exclusive; a nil lo means "from the first position" and
// a nil hi means "past the last position". An empty non-nil slice is the smallest position.

// Index is an aggregate ordered index over entry positions. Both implementations (Mem, in
// memory, and Stored, persisted in an ordered key-value store) answer each query in
// O(log n) reads plus output and update in O(log n).
type Index interface {
	// Insert adds e at its position; an entry already at that position is replaced.
	Insert(e Entry) error
	// Remove deletes the entry at e's position; removing an absent position is a no-op.
	Remove(e Entry) error
	// Digest returns the digest of the entries in [lo, hi).
	Digest(lo, hi []byte) (Digest, error)
	// Digests returns the digests of the consecutive parts [lo,b0), [b0,b1), ..., [bn,hi)
	// for sorted bounds strictly inside (lo, hi): len(bounds)+1 digests.
	Digests(lo, hi []byte, bounds [][]byte) ([]Digest, error)
	// Split returns up to k-1 sorted positions of entries strictly inside (lo, hi) that cut
	// [lo, hi) into parts of near-equal count. Fewer are returned when the range holds
	// fewer entries; none when it holds at most one.
	Split(lo, hi []byte, k int) ([][]byte, error)
	// Entries calls fn for each entry in [lo, hi) in position order until fn returns false.
	Entries(lo, hi []byte, fn func(Entry) bool) error
}
