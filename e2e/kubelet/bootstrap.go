package kubelet

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	cliflag "k8s.io/component-base/cli/flag"
	utilflag "k8s.io/kubernetes/pkg/util/flag"
)

// Registration is what a kubelet registers its Node with.
type Registration struct {
	// NodeName is the Node's name (--hostname-override).
	NodeName string
	// Labels are the labels the kubelet sets (--node-labels), without the ones every kubelet
	// adds (kubernetes.io/hostname, os, arch).
	Labels map[string]string
	// Taints are registered with the Node (--register-with-taints).
	Taints []corev1.Taint
	// ProviderID is spec.providerID (--provider-id, or what the cloud reports).
	ProviderID string
}

// extraArgsVar is the variable of the rendered bootstrap that carries the kubelet's flags.
const extraArgsVar = "KUBELET_EXTRA_ARGS"

// ParseBootstrap reads a rendered bootstrap script the way the kubelet on the instance would see
// it: it takes the first line that assigns KUBELET_EXTRA_ARGS (optionally after "export"),
// unquotes the value as a POSIX shell would, and parses the kubelet flags in it with the kubelet's
// own flag types. --hostname-override is required; --node-labels, --register-with-taints and
// --provider-id are optional; other flags are ignored. The labels are not vetted here: the
// apiserver's NodeRestriction plugin judges them when the node registers.
func ParseBootstrap(script string) (Registration, error) {
	value, err := extraArgs(script)
	if err != nil {
		return Registration{}, err
	}
	args, err := shellWords(value)
	if err != nil {
		return Registration{}, fmt.Errorf("parsing %s: %w", extraArgsVar, err)
	}
	// A value that is itself one quoted word holding the flags (KUBELET_EXTRA_ARGS="'--a --b'")
	// is not something a kubelet accepts; flags are split on blanks, as systemd does.
	var fields []string
	for _, a := range args {
		fields = append(fields, strings.Fields(a)...)
	}

	var reg Registration
	labels := map[string]string{}
	fs := pflag.NewFlagSet("kubelet", pflag.ContinueOnError)
	fs.ParseErrorsAllowlist.UnknownFlags = true
	fs.SetOutput(discard{})
	fs.StringVar(&reg.NodeName, "hostname-override", "", "")
	nodeLabels := cliflag.ConfigurationMap(labels)
	fs.Var(&nodeLabels, "node-labels", "")
	fs.Var(utilflag.RegisterWithTaintsVar{Value: &reg.Taints}, "register-with-taints", "")
	fs.StringVar(&reg.ProviderID, "provider-id", "", "")
	if err := fs.Parse(fields); err != nil {
		return Registration{}, fmt.Errorf("parsing kubelet flags in %s: %w", extraArgsVar, err)
	}
	// A providerID computed on the instance ($(curl ...metadata...)) is known only there; the
	// caller then uses the one the cloud reports.
	if strings.ContainsAny(reg.ProviderID, "$`") {
		reg.ProviderID = ""
	}
	if reg.NodeName == "" {
		return Registration{}, fmt.Errorf("bootstrap sets no --hostname-override in %s", extraArgsVar)
	}
	if len(labels) > 0 {
		reg.Labels = labels
	}
	return reg, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// extraArgs returns the still-quoted value assigned to KUBELET_EXTRA_ARGS.
func extraArgs(script string) (string, error) {
	sc := bufio.NewScanner(strings.NewReader(script))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		line = strings.TrimPrefix(line, "export ")
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), extraArgsVar+"="); ok {
			return v, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("reading bootstrap: %w", err)
	}
	return "", fmt.Errorf("bootstrap assigns no %s", extraArgsVar)
}

// shellWords splits s into words as a POSIX shell does for quoting: '...' is literal, "..."
// honours backslash before " \ $ ` and newline, a bare backslash escapes the next character, and
// unquoted blanks separate words, and '#' starting a word or ';' ends the list. Expansions
// ($VAR, $(...)) are left as they are: only literal flags count (see ParseBootstrap).
func shellWords(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		inW   bool
	)
	flush := func() {
		if inW {
			words = append(words, cur.String())
			cur.Reset()
			inW = false
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			flush()
		case c == '#' && !inW:
			return words, nil
		case c == '\'':
			inW = true
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
		case c == '"':
			inW = true
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`\n", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("unterminated double quote")
			}
		case c == '\\':
			inW = true
			if i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
			}
		case c == ';':
			flush()
			return words, nil
		default:
			inW = true
			cur.WriteByte(c)
		}
	}
	flush()
	return words, nil
}
