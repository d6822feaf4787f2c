package reconcile

// SetParallelMin sets how many queries a side needs before it reads them on several
// goroutines (parallelMin) and returns a func that restores it: tests force the parallel
// path on small stores.
func SetParallelMin(n int) (restore func()) {
	old := parallelMin
	parallelMin = n
	return func() { parallelMin = old }
}

// SetPrefixBits sets the longest entry prefix of a first pass (maxPrefixBits) and
// returns a func that restores it: tests make prefixes collide with 8 bits.
func SetPrefixBits(n int) (restore func()) {
	old := maxPrefixBits
	maxPrefixBits = n
	return func() { maxPrefixBits = old }
}
