package hack

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// codegenInputs are what update-codegen.sh reads, relative to the module root: the module's
// requirements (which pin the generators), the script and its header, and the API types.
var codegenInputs = []string{"go.mod", "go.sum", "hack/update-codegen.sh", "hack/boilerplate.go.txt", "pkg/apis"}

// isCodegenOutput says whether a path, relative to the module root, is written by
// update-codegen.sh.
func isCodegenOutput(path string) bool {
	path = filepath.ToSlash(path)
	return strings.HasPrefix(path, "pkg/generated/") ||
		strings.HasPrefix(path, "deploy/base/crds/") ||
		(strings.HasPrefix(path, "pkg/apis/") && strings.HasPrefix(filepath.Base(path), "zz_generated."))
}

// TestGeneratedFilesAreCurrent runs hack/update-codegen.sh in a copy of the module's codegen
// inputs and fails, naming the files, when the outputs there differ from the repository's: a
// generated file edited by hand, an API type changed without `make generate`, a generated file
// missing, or one left over from a type that is gone. It builds the generators pinned in go.mod
// (once per build cache) and takes about ten seconds after that.
func TestGeneratedFilesAreCurrent(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skipf("No go command to run the generators with: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	for _, in := range codegenInputs {
		if err := copyTree(filepath.Join(root, in), filepath.Join(work, in)); err != nil {
			t.Fatalf("copying %s: %v", in, err)
		}
	}

	start := time.Now()
	cmd := exec.CommandContext(t.Context(), "bash", filepath.Join("hack", "update-codegen.sh"))
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/update-codegen.sh in a copy of the module: %v\n%s", err, out)
	}
	t.Logf("Generated in %v", time.Since(start).Round(100*time.Millisecond))

	want, err := outputs(work)
	if err != nil {
		t.Fatal(err)
	}
	got, err := outputs(root)
	if err != nil {
		t.Fatal(err)
	}
	var stale, missing, extra []string
	for path, b := range want {
		have, ok := got[path]
		switch {
		case !ok:
			missing = append(missing, path)
		case !bytes.Equal(have, b):
			stale = append(stale, path)
		}
	}
	for path := range got {
		if _, ok := want[path]; !ok {
			extra = append(extra, path)
		}
	}
	for _, l := range []struct {
		what  string
		paths []string
	}{
		{"differ from what the generators write (edited by hand, or pkg/apis changed since)", stale},
		{"are generated but not in the repository", missing},
		{"are in the repository but no longer generated", extra},
	} {
		if len(l.paths) > 0 {
			slices.Sort(l.paths)
			t.Errorf("These files %s:\n  %s", l.what, strings.Join(l.paths, "\n  "))
		}
	}
	if t.Failed() {
		t.Errorf("Run `make generate` (hack/update-codegen.sh) and commit the result")
	}
}

// outputs reads every codegen output under the module root dir, by path relative to it.
func outputs(dir string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, top := range []string{"pkg/apis", "pkg/generated", "deploy/base/crds"} {
		err := filepath.WalkDir(filepath.Join(dir, top), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) && path == filepath.Join(dir, top) {
					return filepath.SkipDir
				}
				return err
			}
			rel, err := filepath.Rel(dir, path)
			if err != nil || d.IsDir() || !isCodegenOutput(rel) {
				return err
			}
			b, err := os.ReadFile(path)
			out[filepath.ToSlash(rel)] = b
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// copyTree copies the file or directory src to dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode().Perm())
	})
}
