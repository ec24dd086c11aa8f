package ec2emu

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// The EC2 query protocol flattens lists and structures into form keys: Filter.1.Name,
// Filter.1.Value.1, TagSpecification.2.Tag.1.Key. Lists are numbered from 1, without gaps.

// listLen returns how many members the list at prefix has: the largest n such that every index
// 1..n has a key at or below prefix.n.
func listLen(form url.Values, prefix string) int {
	present := map[int]bool{}
	p := prefix + "."
	for k := range form {
		rest, ok := strings.CutPrefix(k, p)
		if !ok {
			continue
		}
		idx, _, _ := strings.Cut(rest, ".")
		if n, err := strconv.Atoi(idx); err == nil && n > 0 {
			present[n] = true
		}
	}
	n := 0
	for present[n+1] {
		n++
	}
	return n
}

// strList returns the string list at prefix: prefix.1, prefix.2, ...
func strList(form url.Values, prefix string) []string {
	n := listLen(form, prefix)
	out := make([]string, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, form.Get(fmt.Sprintf("%s.%d", prefix, i)))
	}
	return out
}

// intParam parses an optional integer parameter.
func intParam(form url.Values, name string) (int, bool, *apiError) {
	v := form.Get(name)
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, false, errf(400, "InvalidParameterValue", fmt.Sprintf("Invalid value '%s' for %s", v, name))
	}
	return n, true, nil
}

// filter is one DescribeInstances filter: any of Values matches.
type filter struct {
	Name   string
	Values []string
}

func filters(form url.Values) []filter {
	n := listLen(form, "Filter")
	out := make([]filter, 0, n)
	for i := 1; i <= n; i++ {
		p := fmt.Sprintf("Filter.%d", i)
		out = append(out, filter{Name: form.Get(p + ".Name"), Values: strList(form, p+".Value")})
	}
	return out
}

// globMatch matches s against an EC2 filter value, where * matches any run of characters and
// ? any one character.
func globMatch(pattern, s string) bool {
	if !strings.ContainsAny(pattern, "*?") {
		return pattern == s
	}
	p, r := []rune(pattern), []rune(s)
	// Iterative wildcard matching with backtracking to the last star.
	pi, si, star, mark := 0, 0, -1, 0
	for si < len(r) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == r[si]):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

func anyMatch(patterns []string, s string) bool {
	for _, p := range patterns {
		if globMatch(p, s) {
			return true
		}
	}
	return false
}
