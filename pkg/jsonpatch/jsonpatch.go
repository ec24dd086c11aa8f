// Package jsonpatch is the one RFC 6902 JSON Patch type that IPP writes: the webhook's mutations
// of Pods and the controller's guarded updates of Nodes. Documents are encoded with encoding/json.
package jsonpatch

import (
	"encoding/json"
	"strings"
)

// Operation is one RFC 6902 operation. Value is left out when nil, as "remove" has none.
type Operation struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Add returns an "add" operation: it sets the member at path, replacing one that exists.
func Add(path string, value any) Operation {
	return Operation{Op: "add", Path: path, Value: value}
}

// Remove returns a "remove" operation; the patch fails if nothing is at path.
func Remove(path string) Operation {
	return Operation{Op: "remove", Path: path}
}

// Test returns a "test" operation: the patch fails unless the value at path equals value.
func Test(path string, value any) Operation {
	return Operation{Op: "test", Path: path, Value: value}
}

// Patch is a JSON Patch document.
type Patch []Operation

// Marshal returns the document's JSON, or nil for an empty document.
func (p Patch) Marshal() ([]byte, error) {
	if len(p) == 0 {
		return nil, nil
	}
	return json.Marshal(p)
}

var escaper = strings.NewReplacer("~", "~0", "/", "~1")

// Escape escapes one reference token of a JSON pointer (RFC 6901), such as a label key with a '/'
// in it.
func Escape(token string) string {
	return escaper.Replace(token)
}

// LabelPath is the JSON pointer of the label key in an object's metadata.
func LabelPath(key string) string {
	return "/metadata/labels/" + Escape(key)
}

// TestAbsent returns a "test" operation that passes only when nothing (or null) is at path, as
// the JSON Patch library of the API server (gopkg.in/evanphx/json-patch.v4) applies a test for the
// value null. The parent of path must exist. Put it before an "add" of a whole object, which would
// otherwise replace one that a concurrent writer set.
func TestAbsent(path string) Operation {
	return Operation{Op: "test", Path: path, Value: json.RawMessage("null")}
}
