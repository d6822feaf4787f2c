//go:build unix

package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockCache takes the fixture cache dir for this process while it builds fixtures, so
// that a second process cannot delete a store the first is still writing. It does not
// wait: a cache in use is an error that says so.
func lockCache(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("fixture cache: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("fixture cache: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("fixture cache %s is in use by another process building fixtures (reconcile bench or go test ./bench): wait for it to finish, or pass another --dir (RECONCILE_BENCH_DIR)", dir)
		}
		return nil, fmt.Errorf("fixture cache: lock %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}
