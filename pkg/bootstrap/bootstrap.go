// Package bootstrap renders the script an IPP instance runs at first boot so that its kubelet joins
// the cluster as the dedicated node: under the dedicated node name, with the IPP node label and the
// IPP taint (both effects), and never with the binding label, which only the controller writes.
//
// Providers put the rendered script where their cloud runs it: GCE instance metadata
// (startup-script), EC2 user data.
package bootstrap

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"text/template"

	corev1 "k8s.io/api/core/v1"

	"github.com/ipp-project/ipp/pkg/isolation"
)

//go:embed templates/kubeadm.sh.tmpl
var defaultTemplate string

// Join says how a new node joins the cluster, kubeadm-style. With an empty APIServerEndpoint the
// default script only configures the kubelet, for images that join by other means.
type Join struct {
	// APIServerEndpoint is host:port of the API server.
	APIServerEndpoint string
	// Token is a bootstrap token, "<id>.<secret>".
	Token string
	// CACertHash is "sha256:<64 hex>" of the cluster CA's public key (kubeadm's
	// --discovery-token-ca-cert-hash): the node trusts only an API server whose CA it pins.
	// Required with an APIServerEndpoint unless InsecureSkipCAVerification is set.
	CACertHash string
	// InsecureSkipCAVerification makes the node join without checking the API server's CA
	// (kubeadm's --discovery-token-unsafe-skip-ca-verification): whoever answers at
	// APIServerEndpoint gets the node's token and can hand it a CA of its own. Only an explicit
	// opt-out sets it; an empty CACertHash never implies it.
	InsecureSkipCAVerification bool
}

// caCertHashPattern is kubeadm's public key pin format, SHA-256 only.
var caCertHashPattern = regexp.MustCompile(`^sha256:[0-9a-fA-F]{64}$`)

// ValidateCACertHash reports whether h is a CA public key pin as kubeadm prints it:
// "sha256:" and 64 hex digits.
func ValidateCACertHash(h string) error {
	if !caCertHashPattern.MatchString(h) {
		return fmt.Errorf("%q is not sha256:<64 hex digits>, the pin that `kubeadm token create --print-join-command` prints", h)
	}
	return nil
}

// ErrNoCAPin is returned for a join through an API server endpoint with neither a CA pin nor the
// explicit InsecureSkipCAVerification.
var ErrNoCAPin = errors.New("a join through an API server endpoint needs the cluster CA's pin (CACertHash), or InsecureSkipCAVerification set explicitly")

// Validate reports whether j says how the node checks the API server it joins: by a well-formed
// CA pin, or by the explicit InsecureSkipCAVerification, never both. A Join without an
// APIServerEndpoint is valid: the image joins by other means.
func (j Join) Validate() error {
	if j.APIServerEndpoint == "" {
		return nil
	}
	switch {
	case j.CACertHash != "" && j.InsecureSkipCAVerification:
		return errors.New("a join has both a CA pin and InsecureSkipCAVerification: choose one")
	case j.CACertHash != "":
		return ValidateCACertHash(j.CACertHash)
	case !j.InsecureSkipCAVerification:
		return ErrNoCAPin
	}
	return nil
}

// Params are the inputs of a bootstrap template.
type Params struct {
	Join
	// NodeName is the dedicated node name; the kubelet registers under it.
	NodeName string
	// Labels and Taints are what the kubelet registers the Node with.
	Labels map[string]string
	Taints []corev1.Taint
	// ProviderIDCommand, when set, is a shell command whose output is the node's providerID, for
	// clouds where it is known only on the instance (EC2 reads it from instance metadata).
	ProviderIDCommand string
}

// KubeletArgs returns the kubelet flags that make the node register as IPP requires:
// --hostname-override, --node-labels (sorted) and --register-with-taints.
func (p Params) KubeletArgs() string {
	keys := make([]string, 0, len(p.Labels))
	for k := range p.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	labels := make([]string, 0, len(keys))
	for _, k := range keys {
		labels = append(labels, k+"="+p.Labels[k])
	}
	taints := make([]string, 0, len(p.Taints))
	for _, t := range p.Taints {
		taints = append(taints, t.ToString())
	}
	args := []string{"--hostname-override=" + p.NodeName}
	if len(labels) > 0 {
		args = append(args, "--node-labels="+strings.Join(labels, ","))
	}
	if len(taints) > 0 {
		args = append(args, "--register-with-taints="+strings.Join(taints, ","))
	}
	return strings.Join(args, " ")
}

// Renderer renders bootstrap scripts from a template.
type Renderer struct {
	tmpl *template.Template
}

// NewRenderer parses text as a bootstrap template. An empty text selects the default
// kubeadm-style script. Templates see Params and the function shellquote.
func NewRenderer(text string) (*Renderer, error) {
	if text == "" {
		text = defaultTemplate
	}
	tmpl, err := template.New("bootstrap").Option("missingkey=error").
		Funcs(template.FuncMap{"shellquote": ShellQuote}).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("parsing bootstrap template: %w", err)
	}
	return &Renderer{tmpl: tmpl}, nil
}

// NewRendererFromFile reads a template from path; an empty path selects the default script.
func NewRendererFromFile(path string) (*Renderer, error) {
	if path == "" {
		return NewRenderer("")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading bootstrap template: %w", err)
	}
	return NewRenderer(string(b))
}

// Render renders the script for p. It refuses parameters that would make the node register with
// the binding label, or under no name, and a join that neither pins the cluster CA nor opts out
// of checking it explicitly (Join.Validate).
func (r *Renderer) Render(p Params) (string, error) {
	if p.NodeName == "" {
		return "", fmt.Errorf("rendering bootstrap: no node name")
	}
	if err := p.Join.Validate(); err != nil {
		return "", fmt.Errorf("rendering bootstrap for %s: %w", p.NodeName, err)
	}
	if _, ok := p.Labels[isolation.BindingLabel]; ok {
		return "", fmt.Errorf("rendering bootstrap for %s: label %s is written only by the controller", p.NodeName, isolation.BindingLabel)
	}
	var buf bytes.Buffer
	if err := r.tmpl.Execute(&buf, p); err != nil {
		return "", fmt.Errorf("rendering bootstrap for %s: %w", p.NodeName, err)
	}
	return buf.String(), nil
}

// ShellQuote quotes s for a POSIX shell, as one word.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
