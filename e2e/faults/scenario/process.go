package scenario

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BuildIPP builds the ipp command of the module whose root is repoRoot into dir, and returns
// the binary's path.
func BuildIPP(repoRoot, dir string) (string, error) {
	bin := filepath.Join(dir, "ipp")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/ipp")
	cmd.Dir = repoRoot
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building ipp in %s: %w\n%s", repoRoot, err, out)
	}
	return bin, nil
}

// RepoRoot returns the root of the ipp module, from a test's working directory in e2e/<pkg>.
func RepoRoot() (string, error) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "ipp")); err != nil {
		return "", fmt.Errorf("finding the ipp module from %s: %w", root, err)
	}
	return root, nil
}

// Process is an ipp process started by a test. Its output goes to a log file.
type Process struct {
	// Name names the process in the test's log.
	Name string
	// Log is the path of its combined output.
	Log string

	cmd     *exec.Cmd
	logFile *os.File
	done    chan struct{}
	waitErr error

	mu       sync.Mutex
	identity string
}

// StartProcess starts bin with args and the test's environment plus env, logging to a file in
// the test's temp dir. When the test ends it is stopped (SIGTERM, then SIGKILL after 10 s); if the
// test failed, the end of its log is logged.
func StartProcess(t testing.TB, name, bin string, args, env []string) *Process {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		t.Fatalf("Starting %s: %v", name, err)
	}
	p := &Process{Name: name, Log: logPath, cmd: cmd, logFile: f, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("Log of %s (pid %d, last 150 lines):\n%s", p.Name, p.Pid(), p.Tail(150))
		}
	})
	return p
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has exited, and its error.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Kill sends SIGKILL, as an OOM kill or a node failure would end it, and waits for it to exit.
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits up to 10 s for the process to exit, then kills it.
func (p *Process) Stop() {
	if exited, _ := p.Exited(); exited {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.Kill()
	}
}

// Tail returns the last n lines of the process's log.
func (p *Process) Tail(n int) string {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return err.Error()
	}
	return tail(string(b), n)
}

// identityRE finds the leader-election identity that pkg/leader logs with every line, starting
// with "Waiting for leadership".
var identityRE = regexp.MustCompile(`identity="([^"]+)"`)

// Identity returns the process's leader-election identity, once it has logged it.
func (p *Process) Identity() (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.identity != "" {
		return p.identity, true
	}
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return "", false
	}
	if m := identityRE.FindSubmatch(b); m != nil {
		p.identity = string(m[1])
		return p.identity, true
	}
	return "", false
}

// WaitIdentity waits up to timeout for the process to log its leader-election identity.
func (p *Process) WaitIdentity(ctx context.Context, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if id, ok := p.Identity(); ok {
			return id, nil
		}
		if exited, err := p.Exited(); exited {
			return "", fmt.Errorf("%s exited before electing (%v)", p.Name, err)
		}
		select {
		case <-ctx.Done():
			return "", errors.Join(fmt.Errorf("%s logged no leader-election identity", p.Name), ctx.Err())
		case <-tick.C:
		}
	}
}
