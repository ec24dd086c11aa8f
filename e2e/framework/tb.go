package framework

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"

	"k8s.io/klog/v2"
)

// processTB implements the testing.TB-like interface that the Kubernetes test servers take
// (ktesting.TB), for a control plane that lives as long as a process rather than one test: a
// TestMain or the sandbox's main. Logs go to klog, cleanups run at Stop, and a fatal call inside a
// starting component unwinds to Start, which returns it as an error.
type processTB struct {
	name   string
	logger klog.Logger

	mu       sync.Mutex
	failed   bool
	errs     []error
	cleanups []func()
	dirs     []string
}

var _ interface {
	Attr(key, value string)
	Chdir(dir string)
	Cleanup(func())
	Error(args ...any)
	Errorf(format string, args ...any)
	Fail()
	FailNow()
	Failed() bool
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Helper()
	Log(args ...any)
	Logf(format string, args ...any)
	Name() string
	Setenv(key, value string)
	Skip(args ...any)
	Skipf(format string, args ...any)
	SkipNow()
	Skipped() bool
	TempDir() string
} = (*processTB)(nil)

// fatalUnwind is the panic value with which FailNow unwinds to the recover in Start.
type fatalUnwind struct{}

func newProcessTB(name string, logger klog.Logger) *processTB {
	return &processTB{name: name, logger: logger}
}

func (tb *processTB) Attr(key, value string) { tb.logger.V(4).Info("Test attribute", key, value) }
func (tb *processTB) Chdir(dir string) {
	if err := os.Chdir(dir); err != nil {
		tb.Fatalf("chdir %s: %v", dir, err)
	}
}
func (tb *processTB) Cleanup(f func()) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.cleanups = append(tb.cleanups, f)
}
func (tb *processTB) Error(args ...any) { tb.record(fmt.Sprint(args...)) }
func (tb *processTB) Errorf(format string, args ...any) {
	tb.record(fmt.Sprintf(format, args...))
}
func (tb *processTB) Fail() {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.failed = true
}
func (tb *processTB) FailNow() {
	tb.Fail()
	panic(fatalUnwind{})
}
func (tb *processTB) Failed() bool {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.failed
}
func (tb *processTB) Fatal(args ...any) {
	tb.Error(args...)
	tb.FailNow()
}
func (tb *processTB) Fatalf(format string, args ...any) {
	tb.Errorf(format, args...)
	tb.FailNow()
}
func (tb *processTB) Helper()         {}
func (tb *processTB) Log(args ...any) { tb.logger.Info(fmt.Sprint(args...)) }
func (tb *processTB) Logf(f string, a ...any) {
	tb.logger.Info(fmt.Sprintf(f, a...))
}
func (tb *processTB) Name() string { return tb.name }
func (tb *processTB) Setenv(key, value string) {
	if err := os.Setenv(key, value); err != nil {
		tb.Fatalf("setenv %s: %v", key, err)
	}
}
func (tb *processTB) Skip(args ...any)         { tb.Fatal(append([]any{"skip: "}, args...)...) }
func (tb *processTB) Skipf(f string, a ...any) { tb.Fatalf("skip: "+f, a...) }
func (tb *processTB) SkipNow()                 { tb.Fatal("skip") }
func (tb *processTB) Skipped() bool            { return false }
func (tb *processTB) TempDir() string {
	dir, err := os.MkdirTemp("", "ipp-e2e-")
	if err != nil {
		tb.Fatalf("making temp dir: %v", err)
	}
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.dirs = append(tb.dirs, dir)
	return dir
}

func (tb *processTB) record(msg string) {
	tb.logger.Error(nil, msg)
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.failed = true
	tb.errs = append(tb.errs, errors.New(msg))
}

// err returns what was reported through Error and Fatal, joined.
func (tb *processTB) err() error {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return errors.Join(tb.errs...)
}

// runCleanups runs the registered cleanups, last first, then removes the temp dirs.
func (tb *processTB) runCleanups() {
	tb.mu.Lock()
	cleanups := slices.Clone(tb.cleanups)
	dirs := slices.Clone(tb.dirs)
	tb.cleanups, tb.dirs = nil, nil
	tb.mu.Unlock()
	for _, f := range slices.Backward(cleanups) {
		f()
	}
	for _, d := range dirs {
		_ = os.RemoveAll(d)
	}
}
