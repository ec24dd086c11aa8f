package admission

import (
	"github.com/ipp-project/ipp/pkg/jsonpatch"
)

// patchBuilder collects "add" operations and encodes them as a JSONPatch document.
type patchBuilder struct {
	ops jsonpatch.Patch
}

func (b *patchBuilder) add(path string, value any) {
	b.ops = append(b.ops, jsonpatch.Add(path, value))
}

// bytes returns the JSONPatch document, or nil when there is nothing to add.
func (b *patchBuilder) bytes() ([]byte, error) {
	return b.ops.Marshal()
}
