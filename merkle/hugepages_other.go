//go:build !linux

package merkle

import "unsafe"

// adviseHuge is a no-op where transparent huge pages are not advised (see the Linux one).
func adviseHuge(p unsafe.Pointer, n uintptr) {}
