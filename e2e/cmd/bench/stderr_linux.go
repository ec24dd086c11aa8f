//go:build linux

package main

import (
	"fmt"
	"os"
	"syscall"
)

// redirectStderr points file descriptor 2 at path, so that what the in-process components print
// there directly (etcd's client logs through its own zap logger) lands in the part's log, and
// returns a file for the original stderr, for the benchmark's own progress.
func redirectStderr(path string) (*os.File, error) {
	orig, err := syscall.Dup(2)
	if err != nil {
		return nil, fmt.Errorf("duplicating stderr: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	if err := syscall.Dup3(int(f.Fd()), 2, 0); err != nil {
		return nil, fmt.Errorf("redirecting stderr to %s: %w", path, err)
	}
	return os.NewFile(uintptr(orig), "stderr"), nil
}
