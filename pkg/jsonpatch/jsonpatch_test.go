package jsonpatch

import (
	"encoding/json"
	"testing"

	jsonpatchlib "gopkg.in/evanphx/json-patch.v4"
)

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"ipp":                              "ipp",
		"node-restriction.kubernetes.io/a": "node-restriction.kubernetes.io~1a",
		"a~b/c":                            "a~0b~1c",
		"~1":                               "~01",
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestApply applies documents with the JSON Patch library the API server uses.
func TestApply(t *testing.T) {
	doc := []byte(`{"metadata":{"uid":"u1","labels":{"a/b":"x","c~d":"y"}},"spec":{}}`)
	p := Patch{
		Test("/metadata/uid", "u1"),
		Add(LabelPath("node-restriction.kubernetes.io/ipp-class"), "k"),
		Remove(LabelPath("a/b")),
		Add(LabelPath("c~d"), "z"),
		Add("/spec/unschedulable", false),
	}
	raw, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	decoded, err := jsonpatchlib.DecodePatch(raw)
	if err != nil {
		t.Fatalf("DecodePatch(%s): %v", raw, err)
	}
	out, err := decoded.Apply(doc)
	if err != nil {
		t.Fatalf("Apply(%s): %v", raw, err)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	want := `{"metadata":{"labels":{"c~d":"z","node-restriction.kubernetes.io/ipp-class":"k"},"uid":"u1"},"spec":{"unschedulable":false}}`
	if b, _ := json.Marshal(got); string(b) != want {
		t.Errorf("patched = %s, want %s", b, want)
	}
	failing, _ := Patch{Test("/metadata/uid", "other")}.Marshal()
	if fp, err := jsonpatchlib.DecodePatch(failing); err != nil {
		t.Fatal(err)
	} else if _, err := fp.Apply(doc); err == nil {
		t.Error("a test operation on another UID applied; want it to fail")
	}
	if b, err := (Patch{}).Marshal(); b != nil || err != nil {
		t.Errorf("empty Patch marshals to %q, %v; want nil", b, err)
	}
}

// TestTestAbsent checks the null test against the library the API server uses: it passes on a
// missing member and fails on a present one, whatever its value.
func TestTestAbsent(t *testing.T) {
	raw, err := Patch{TestAbsent("/spec/affinity")}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if want := `[{"op":"test","path":"/spec/affinity","value":null}]`; string(raw) != want {
		t.Errorf("TestAbsent marshals to %s, want %s", raw, want)
	}
	p, err := jsonpatchlib.DecodePatch(raw)
	if err != nil {
		t.Fatal(err)
	}
	for doc, wantOK := range map[string]bool{
		`{"spec":{}}`:                     true,
		`{"spec":{"affinity":{}}}`:        false,
		`{"spec":{"affinity":{"a":"b"}}}`: false,
		`{"spec":{"affinity":"x"}}`:       false,
		`{"spec":{"affinity":[]}}`:        false,
		`{"metadata":{}}`:                 false, // the parent is missing
	} {
		_, err := p.Apply([]byte(doc))
		if (err == nil) != wantOK {
			t.Errorf("TestAbsent on %s: err = %v, want success %v", doc, err, wantOK)
		}
	}
}
