package gce

import (
	"strings"
	"testing"
)

func TestLabelValueEncoding(t *testing.T) {
	long := strings.Repeat("a", 63)
	tests := []struct {
		name      string
		value     string
		want      string // "" means: do not check the exact encoding
		decodable bool
	}{
		{name: "empty", value: "", want: "", decodable: true},
		{name: "plain", value: "class0", want: "class0", decodable: true},
		{name: "dns label", value: "ipp-team-a-1f2e3d", want: "ipp-team-a-1f2e3d", decodable: true},
		{name: "63 plain", value: long, want: long, decodable: true},
		{name: "upper case", value: "ClassA", want: "_class_a", decodable: true},
		{name: "dots and underscores", value: "web.v1_b", want: "web_-v1__b", decodable: true},
		{name: "leading underscore digit", value: "_0", want: "__0", decodable: true},
		{name: "64 plain", value: long + "a"},
		{name: "upper case too long when escaped", value: strings.Repeat("A", 40)},
		{name: "not a label value", value: "a b/c"},
		{name: "unicode", value: "klasse-ä"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := encodeLabelValue(tt.value)
			if !isValidLabelValue(got) {
				t.Fatalf("encodeLabelValue(%q) = %q, not a valid GCE label value", tt.value, got)
			}
			if tt.want != "" || tt.value == "" {
				if got != tt.want {
					t.Errorf("encodeLabelValue(%q) = %q, want %q", tt.value, got, tt.want)
				}
			}
			if again := encodeLabelValue(tt.value); again != got {
				t.Errorf("encodeLabelValue(%q) is not deterministic: %q then %q", tt.value, got, again)
			}
			dec, ok := decodeLabelValue(got)
			if ok != tt.decodable {
				t.Fatalf("decodeLabelValue(%q) ok = %v, want %v", got, ok, tt.decodable)
			}
			if ok && dec != tt.value {
				t.Errorf("decodeLabelValue(encodeLabelValue(%q)) = %q", tt.value, dec)
			}
		})
	}
}

// TestLabelValueEncodingIsInjective checks that distinct Kubernetes label values never share an
// encoding, over values built from every character class the escaping treats differently.
func TestLabelValueEncodingIsInjective(t *testing.T) {
	alphabet := []string{"a", "A", "_", ".", "-", "0", "z", "Z"}
	seen := map[string]string{}
	var walk func(prefix string, depth int)
	walk = func(prefix string, depth int) {
		enc := encodeLabelValue(prefix)
		if other, ok := seen[enc]; ok && other != prefix {
			t.Fatalf("%q and %q both encode to %q", other, prefix, enc)
		}
		seen[enc] = prefix
		if depth == 0 {
			return
		}
		for _, c := range alphabet {
			walk(prefix+c, depth-1)
		}
	}
	walk("", 4)
}

func TestDecodeLabelValueRejectsForeignValues(t *testing.T) {
	for _, s := range []string{"abc_", "a_0123", "a_9"} {
		if got, ok := decodeLabelValue(s); ok {
			t.Errorf("decodeLabelValue(%q) = %q, true; want false", s, got)
		}
	}
}
