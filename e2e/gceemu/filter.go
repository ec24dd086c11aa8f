package gceemu

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"
)

// filter is a parsed list filter: a conjunction of comparisons. GCE's filter language is larger;
// this is the part a client of instances.list uses: `field = "value"`, `field != value`,
// `field:*` (present) and `field:value` (contains), on name, status, id and labels.<key>, joined
// by AND or juxtaposition, each optionally in parentheses. OR and NOT are refused, so that a
// client relying on them notices.
type filter []comparison

type comparison struct {
	field string
	op    string // "=", "!=" or ":"
	value string
}

func (f filter) matches(inst *computepb.Instance) bool {
	for _, c := range f {
		if !c.matches(inst) {
			return false
		}
	}
	return true
}

func (c comparison) matches(inst *computepb.Instance) bool {
	var v string
	var present bool
	switch {
	case c.field == "name":
		v, present = inst.GetName(), true
	case c.field == "status":
		v, present = inst.GetStatus(), true
	case c.field == "id":
		v, present = strconv.FormatUint(inst.GetId(), 10), true
	case strings.HasPrefix(c.field, "labels."):
		v, present = inst.GetLabels()[strings.TrimPrefix(c.field, "labels.")]
	}
	switch c.op {
	case "=":
		return present && v == c.value
	case "!=":
		return !present || v != c.value
	default: // ":"
		if c.value == "*" {
			return present
		}
		return present && strings.Contains(v, c.value)
	}
}

// parseFilter parses a list filter; an empty one matches everything.
func parseFilter(s string) (filter, error) {
	toks, err := tokenize(s)
	if err != nil {
		return nil, err
	}
	var f filter
	depth := 0
	for i := 0; i < len(toks); {
		t := toks[i]
		switch {
		case t.kind == tokOpen:
			depth++
			i++
		case t.kind == tokClose:
			if depth == 0 {
				return nil, errors.New("unbalanced ')'")
			}
			depth--
			i++
		case t.kind == tokWord && t.text == "AND":
			i++
		case t.kind == tokWord && (t.text == "OR" || t.text == "NOT"):
			return nil, fmt.Errorf("%s is not supported by the emulator", t.text)
		case t.kind == tokWord:
			if i+2 >= len(toks) || toks[i+1].kind != tokOp || (toks[i+2].kind != tokWord && toks[i+2].kind != tokString) {
				return nil, fmt.Errorf("expected <field> <operator> <value> at %q", t.text)
			}
			c := comparison{field: t.text, op: toks[i+1].text, value: toks[i+2].text}
			if !knownField(c.field) {
				return nil, fmt.Errorf("unknown field %q", c.field)
			}
			f = append(f, c)
			i += 3
		default:
			return nil, fmt.Errorf("unexpected %q", t.text)
		}
	}
	if depth != 0 {
		return nil, errors.New("unbalanced '('")
	}
	return f, nil
}

func knownField(f string) bool {
	switch f {
	case "name", "status", "id":
		return true
	}
	return strings.HasPrefix(f, "labels.") && len(f) > len("labels.")
}

type tokKind int

const (
	tokWord tokKind = iota
	tokString
	tokOp
	tokOpen
	tokClose
)

type token struct {
	kind tokKind
	text string
}

func tokenize(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			i++
		case c == '(':
			toks = append(toks, token{tokOpen, "("})
			i++
		case c == ')':
			toks = append(toks, token{tokClose, ")"})
			i++
		case c == '=' || c == ':':
			toks = append(toks, token{tokOp, string(c)})
			i++
		case c == '!':
			if i+1 >= len(s) || s[i+1] != '=' {
				return nil, errors.New("'!' must be followed by '='")
			}
			toks = append(toks, token{tokOp, "!="})
			i += 2
		case c == '"' || c == '\'':
			j := i + 1
			var b strings.Builder
			for ; j < len(s) && s[j] != c; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, errors.New("unterminated string")
			}
			toks = append(toks, token{tokString, b.String()})
			i = j + 1
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\n()=:!\"'", rune(s[j])) {
				j++
			}
			toks = append(toks, token{tokWord, s[i:j]})
			i = j
		}
	}
	return toks, nil
}
