package reconcile

// SetParallelMin sets how many queries a side needs before it reads them on several
// goroutines (parallelMin) and returns a func that restores it: tests force the parallel
// path on small stores.
func SetParallelMin(n int) (restore func()) {
	old := parallelMin
	parallelMin = n
	return func() { parallelMin = old }
}

// FixNonce makes every session use the same nonce until restore is called: two sessions
// over the same stores then send the same bytes.
func FixNonce() (restore func()) {
	old := readNonce
	readNonce = func(b []byte) (int, error) {
		for i := range b {
			b[i] = byte(i)
		}
		return len(b), nil
	}
	return func() { readNonce = old }
}

// SetPrefixBits sets the longest entry prefix of a first pass (maxPrefixBits) and
// returns a func that restores it: tests make prefixes collide with 8 bits.
func SetPrefixBits(n int) (restore func()) {
	old := maxPrefixBits
	maxPrefixBits = n
	return func() { maxPrefixBits = old }
}
