//go:build unix

package bench

import (
	"strings"
	"testing"
)

// TestLockCache: while one builder holds a fixture cache, another is refused with a
// message that says what to do, and takes it once the first lets go.
func TestLockCache(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockCache(dir); err == nil || !strings.Contains(err.Error(), "another --dir") {
		t.Fatalf("a second builder of a cache in use: %v", err)
	}
	unlock()
	unlock2, err := lockCache(dir)
	if err != nil {
		t.Fatalf("after the first let go: %v", err)
	}
	unlock2()
}
