package admission

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
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

// checkPatchEncoding makes bytes compare what it writes with encoding/json's output, and panic
// when they differ. Tests set it, so that every patch they see is checked.
var checkPatchEncoding bool

// bytes returns the JSONPatch document, or nil when there is nothing to add. It writes the values
// that the pins add directly, byte for byte what encoding/json writes for them, and leaves other
// values, and strings that need escaping beyond '"' and '\', to encoding/json.
func (b *patchBuilder) bytes() ([]byte, error) {
	if len(b.ops) == 0 {
		return nil, nil
	}
	e := patchEncoder{b: make([]byte, 0, 512), ok: true}
	e.b = append(e.b, '[')
	for i, op := range b.ops {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		e.b = append(e.b, `{"op":`...)
		e.str(op.Op)
		e.b = append(e.b, `,"path":`...)
		e.str(op.Path)
		e.b = append(e.b, `,"value":`...)
		e.value(op.Value)
		e.b = append(e.b, '}')
	}
	e.b = append(e.b, ']')
	if !e.ok {
		return json.Marshal(b.ops)
	}
	if checkPatchEncoding {
		want, err := json.Marshal(b.ops)
		if err != nil || string(want) != string(e.b) {
			panic(fmt.Sprintf("patch encoding differs from encoding/json:\n got %s\nwant %s (%v)", e.b, want, err))
		}
	}
	return e.b, nil
}

// patchEncoder appends JSON to b; ok turns false at the first value or string it cannot write as
// encoding/json does.
type patchEncoder struct {
	b  []byte
	ok bool
}

// str appends s as a JSON string, if encoding/json would escape at most '"' and '\' in it.
func (e *patchEncoder) str(s string) {
	e.b = append(e.b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e || c == '<' || c == '>' || c == '&':
			e.ok = false
		case c == '"' || c == '\\':
			e.b = append(e.b, s[start:i]...)
			e.b = append(e.b, '\\')
			start = i
		}
	}
	e.b = append(e.b, s[start:]...)
	e.b = append(e.b, '"')
}

// field appends ,"name": or "name": as the first field, after which the value follows.
func (e *patchEncoder) field(first *bool, name string) {
	if !*first {
		e.b = append(e.b, ',')
	}
	*first = false
	e.b = append(e.b, '"')
	e.b = append(e.b, name...)
	e.b = append(e.b, `":`...)
}

func (e *patchEncoder) value(v any) {
	switch v := v.(type) {
	case string:
		e.str(v)
	case map[string]string:
		e.stringMap(v)
	case corev1.Toleration:
		e.toleration(&v)
	case []corev1.Toleration:
		e.list(len(v), v == nil, func(i int) { e.toleration(&v[i]) })
	case corev1.NodeSelectorRequirement:
		e.requirement(&v)
	case []corev1.NodeSelectorRequirement:
		e.list(len(v), v == nil, func(i int) { e.requirement(&v[i]) })
	case []corev1.NodeSelectorTerm:
		e.terms(v)
	case *corev1.NodeSelector:
		e.nodeSelector(v)
	case *corev1.NodeAffinity:
		e.nodeAffinity(v)
	case *corev1.Affinity:
		if v == nil || v.PodAffinity != nil || v.PodAntiAffinity != nil {
			e.ok = false
			return
		}
		first := true
		e.b = append(e.b, '{')
		if v.NodeAffinity != nil {
			e.field(&first, "nodeAffinity")
			e.nodeAffinity(v.NodeAffinity)
		}
		e.b = append(e.b, '}')
	default:
		// Pod anti-affinity (autoscaler mode) and anything else.
		e.ok = false
	}
}

// list appends a JSON array of n elements written by elem, or null for a nil slice.
func (e *patchEncoder) list(n int, isNil bool, elem func(i int)) {
	if isNil {
		e.b = append(e.b, "null"...)
		return
	}
	e.b = append(e.b, '[')
	for i := range n {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		elem(i)
	}
	e.b = append(e.b, ']')
}

// stringMap appends m with its keys sorted, as encoding/json does.
func (e *patchEncoder) stringMap(m map[string]string) {
	if m == nil {
		e.b = append(e.b, "null"...)
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	e.b = append(e.b, '{')
	for i, k := range keys {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		e.str(k)
		e.b = append(e.b, ':')
		e.str(m[k])
	}
	e.b = append(e.b, '}')
}

func (e *patchEncoder) toleration(t *corev1.Toleration) {
	first := true
	e.b = append(e.b, '{')
	for _, f := range [...]struct{ name, v string }{{"key", t.Key}, {"operator", string(t.Operator)}, {"value", t.Value}, {"effect", string(t.Effect)}} {
		if f.v != "" {
			e.field(&first, f.name)
			e.str(f.v)
		}
	}
	if t.TolerationSeconds != nil {
		e.field(&first, "tolerationSeconds")
		e.b = strconv.AppendInt(e.b, *t.TolerationSeconds, 10)
	}
	e.b = append(e.b, '}')
}

func (e *patchEncoder) requirement(r *corev1.NodeSelectorRequirement) {
	e.b = append(e.b, `{"key":`...)
	e.str(r.Key)
	e.b = append(e.b, `,"operator":`...)
	e.str(string(r.Operator))
	if len(r.Values) > 0 {
		e.b = append(e.b, `,"values":`...)
		e.list(len(r.Values), false, func(i int) { e.str(r.Values[i]) })
	}
	e.b = append(e.b, '}')
}

func (e *patchEncoder) terms(terms []corev1.NodeSelectorTerm) {
	e.list(len(terms), terms == nil, func(i int) {
		t := &terms[i]
		first := true
		e.b = append(e.b, '{')
		if len(t.MatchExpressions) > 0 {
			e.field(&first, "matchExpressions")
			e.list(len(t.MatchExpressions), false, func(j int) { e.requirement(&t.MatchExpressions[j]) })
		}
		if len(t.MatchFields) > 0 {
			e.field(&first, "matchFields")
			e.list(len(t.MatchFields), false, func(j int) { e.requirement(&t.MatchFields[j]) })
		}
		e.b = append(e.b, '}')
	})
}

func (e *patchEncoder) nodeSelector(s *corev1.NodeSelector) {
	if s == nil {
		e.b = append(e.b, "null"...)
		return
	}
	e.b = append(e.b, `{"nodeSelectorTerms":`...)
	e.terms(s.NodeSelectorTerms)
	e.b = append(e.b, '}')
}

func (e *patchEncoder) nodeAffinity(a *corev1.NodeAffinity) {
	if a == nil || len(a.PreferredDuringSchedulingIgnoredDuringExecution) > 0 {
		e.ok = false
		return
	}
	e.b = append(e.b, '{')
	if a.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		e.b = append(e.b, `"requiredDuringSchedulingIgnoredDuringExecution":`...)
		e.nodeSelector(a.RequiredDuringSchedulingIgnoredDuringExecution)
	}
	e.b = append(e.b, '}')
}

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// escapePointer escapes one reference token of a JSON pointer (RFC 6901), such as a label key with
// a '/' in it.
func escapePointer(token string) string {
	return pointerEscaper.Replace(token)
}
