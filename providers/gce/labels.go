package gce

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// GCE label values may hold only lowercase letters, digits, '_' and '-', at most 63 of them.
// Cluster names, node names and namespaces are DNS-1123 labels and fit as they are; classes are
// Kubernetes label values and may hold upper case, '.' and '_'. encodeLabelValue maps any string
// to a valid label value, deterministically, so that List can filter on it:
//
//   - a value of only [a-z0-9-] that fits is kept as it is;
//   - otherwise '_' escapes: an upper-case letter X becomes "_x", '_' becomes "__" and '.' becomes
//     "_-", which decodes back exactly;
//   - a value that still does not fit, or has other characters, becomes a readable prefix, the
//     marker "_0" (which no escape produces) and a hash. It cannot be decoded; the exact class and
//     namespace are kept in instance metadata as well, and List prefers those.
const maxLabelValueLen = 63

// hashedMarker separates the readable prefix from the hash in a value that cannot be escaped.
const hashedMarker = "_0"

// hashLen is the number of hex digits of the hash in a hashed value.
const hashLen = 16

func isPlainLabelChar(c byte) bool {
	return ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') || c == '-'
}

// encodeLabelValue returns v as a valid GCE label value.
func encodeLabelValue(v string) string {
	plain := true
	for i := 0; i < len(v); i++ {
		if !isPlainLabelChar(v[i]) {
			plain = false
			break
		}
	}
	if plain && len(v) <= maxLabelValueLen {
		return v
	}
	if esc, ok := escapeLabelValue(v); ok && len(esc) <= maxLabelValueLen {
		return esc
	}
	return hashLabelValue(v)
}

// escapeLabelValue escapes v, or reports false if v has a character that has no escape.
func escapeLabelValue(v string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case isPlainLabelChar(c):
			b.WriteByte(c)
		case 'A' <= c && c <= 'Z':
			b.WriteByte('_')
			b.WriteByte(c - 'A' + 'a')
		case c == '_':
			b.WriteString("__")
		case c == '.':
			b.WriteString("_-")
		default:
			return "", false
		}
	}
	return b.String(), true
}

// hashLabelValue returns a readable prefix of v, the hashed marker and a hash of v.
func hashLabelValue(v string) string {
	sum := sha256.Sum256([]byte(v))
	prefixLen := maxLabelValueLen - len(hashedMarker) - hashLen
	var b strings.Builder
	for i := 0; i < len(v) && b.Len() < prefixLen; i++ {
		c := v[i]
		switch {
		case isPlainLabelChar(c):
			b.WriteByte(c)
		case 'A' <= c && c <= 'Z':
			b.WriteByte(c - 'A' + 'a')
		default:
			b.WriteByte('-')
		}
	}
	return b.String() + hashedMarker + hex.EncodeToString(sum[:])[:hashLen]
}

// decodeLabelValue reverses encodeLabelValue. It reports false for a hashed value, whose original
// is kept only in metadata, and for a value that encodeLabelValue cannot have produced.
func decodeLabelValue(s string) (string, bool) {
	if !strings.Contains(s, "_") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '_' {
			b.WriteByte(c)
			continue
		}
		if i+1 == len(s) {
			return "", false
		}
		i++
		switch n := s[i]; {
		case 'a' <= n && n <= 'z':
			b.WriteByte(n - 'a' + 'A')
		case n == '_':
			b.WriteByte('_')
		case n == '-':
			b.WriteByte('.')
		default: // the hashed marker, or not ours
			return "", false
		}
	}
	return b.String(), true
}

// isValidLabelValue reports whether s is a valid GCE label value of the kind encodeLabelValue
// produces: at most 63 of [a-z0-9_-].
func isValidLabelValue(s string) bool {
	if len(s) > maxLabelValueLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isPlainLabelChar(s[i]) && s[i] != '_' {
			return false
		}
	}
	return true
}
