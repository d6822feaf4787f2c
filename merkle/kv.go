package merkle

// KV is the ordered key-value view the Stored index persists itself through: in the badger
// adapter, one Badger transaction. Keys and values passed in may be retained by the KV
// (callers do not reuse them); keys and values passed to an Iterate callback are valid only
// during that call.
type KV interface {
	// Get returns the value stored at key, and whether there is one.
	Get(key []byte) (value []byte, ok bool, err error)
	// Set stores value at key.
	Set(key, value []byte) error
	// Delete removes key; deleting an absent key is not an error.
	Delete(key []byte) error
	// Iterate calls fn for every key in [start, end) in ascending order, or in descending
	// order when reverse is set, until fn returns false. A nil end means no upper bound.
	Iterate(start, end []byte, reverse bool, fn func(key, value []byte) bool) error
}

// ReadStats counts what an index read to answer queries: entries (level 0) and aggregate
// nodes above them. Sessions report these as "entries read".
type ReadStats struct {
	Entries int64
	Nodes   int64
}
