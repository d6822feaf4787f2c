//go:build !unix

package bench

// lockCache does nothing where flock(2) is missing: do not share a fixture cache between
// processes there.
func lockCache(dir string) (unlock func(), err error) { return func() {}, nil }
