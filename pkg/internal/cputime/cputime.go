//go:build unix

// Package cputime measures the CPU time of the process for the benchmarks of pkg/admission and
// pkg/webhook. On a machine shared with other jobs wall time (ns/op) overstates the cost; CPU time
// does not.
package cputime

import (
	"syscall"
	"testing"
	"time"
)

// Used returns the CPU time (user + system) this process has used so far.
func Used() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Report reports the process CPU time per operation since start (from Used), including the
// garbage collector's work, as cpu-ns/op.
func Report(b *testing.B, start time.Duration) {
	if b.N > 0 {
		b.ReportMetric(float64(Used()-start)/float64(b.N), "cpu-ns/op")
	}
}
