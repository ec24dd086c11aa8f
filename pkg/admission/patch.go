package admission

import (
	"encoding/json"
	"strings"
)

// patchOp is one RFC 6902 operation. Mutate only ever adds.
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// patchBuilder collects "add" operations and encodes them as a JSONPatch document.
type patchBuilder struct {
	ops []patchOp
}

func (b *patchBuilder) add(path string, value any) {
	b.ops = append(b.ops, patchOp{Op: "add", Path: path, Value: value})
}

// bytes returns the JSONPatch document, or nil when there is nothing to add.
func (b *patchBuilder) bytes() ([]byte, error) {
	if len(b.ops) == 0 {
		return nil, nil
	}
	return json.Marshal(b.ops)
}

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// escapePointer escapes one reference token of a JSON pointer (RFC 6901), such as a label key with
// a '/' in it.
func escapePointer(token string) string {
	return pointerEscaper.Replace(token)
}
