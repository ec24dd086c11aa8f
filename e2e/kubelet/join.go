package kubelet

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/kubernetes/cmd/kubeadm/app/util/pubkeypin"
	"k8s.io/kubernetes/pkg/kubelet/certificate/bootstrap"
)

// JoinParams are what the `kubeadm join` line of a rendered bootstrap gives the node.
type JoinParams struct {
	// APIServerEndpoint is host:port of the API server.
	APIServerEndpoint string
	// Token is the bootstrap token, "<id>.<secret>".
	Token string
	// CACertHash pins the cluster CA's public key, "sha256:<hex>".
	CACertHash string
	// UnsafeSkipCAVerification is --discovery-token-unsafe-skip-ca-verification.
	UnsafeSkipCAVerification bool
}

// Discovery is what kubeadm join's token discovery yields a node: the cluster's CA bundle. The
// emulated node takes it from here instead of the kube-public/cluster-info ConfigMap, and checks
// it against the bootstrap's pin as kubeadm does.
type Discovery struct {
	// CAPEM is the cluster CA, PEM-encoded.
	CAPEM []byte
}

// ParseJoin reads the `kubeadm join` command of a rendered bootstrap script (continuation lines
// joined), with kubeadm's flag names. It is an error if the script does not join the cluster.
func ParseJoin(script string) (JoinParams, error) {
	script = strings.ReplaceAll(script, "\\\n", " ")
	var line string
	for l := range strings.SplitSeq(script, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "kubeadm join ") {
			line = l
			break
		}
	}
	if line == "" {
		return JoinParams{}, errors.New("bootstrap runs no kubeadm join: the node has no way to join the cluster")
	}
	words, err := shellWords(line)
	if err != nil {
		return JoinParams{}, fmt.Errorf("parsing kubeadm join: %w", err)
	}
	var p JoinParams
	fs := pflag.NewFlagSet("kubeadm join", pflag.ContinueOnError)
	fs.ParseErrorsAllowlist.UnknownFlags = true
	fs.SetOutput(io.Discard)
	fs.StringVar(&p.Token, "token", "", "")
	fs.StringVar(&p.CACertHash, "discovery-token-ca-cert-hash", "", "")
	fs.BoolVar(&p.UnsafeSkipCAVerification, "discovery-token-unsafe-skip-ca-verification", false, "")
	fs.String("node-name", "", "")
	if err := fs.Parse(words[2:]); err != nil {
		return JoinParams{}, fmt.Errorf("parsing kubeadm join flags: %w", err)
	}
	if fs.NArg() != 1 {
		return JoinParams{}, fmt.Errorf("kubeadm join takes one API server endpoint, got %q", fs.Args())
	}
	p.APIServerEndpoint = fs.Arg(0)
	if p.Token == "" {
		return JoinParams{}, errors.New("kubeadm join has no --token")
	}
	return p, nil
}

// TLSBootstrap obtains the kubelet client credentials of nodeName as a joining node does: it
// checks the discovered CA against the pin (kubeadm refuses to join without a pin unless told to
// skip the check), writes a bootstrap kubeconfig holding the token, and runs the kubelet's own TLS
// bootstrap (a CSR for system:node:<nodeName>, made as system:bootstrap:<token id>, waited on
// until it is approved and signed, or denied). The credentials are returned in memory; dir is a
// scratch directory.
func TLSBootstrap(ctx context.Context, dir string, p JoinParams, d Discovery, nodeName string) (*rest.Config, error) {
	cas, err := certutil.ParseCertsPEM(d.CAPEM)
	if err != nil {
		return nil, fmt.Errorf("parsing the discovered cluster CA: %w", err)
	}
	if err := checkPin(p, cas); err != nil {
		return nil, err
	}
	bootstrapPath := filepath.Join(dir, "bootstrap-kubelet.conf")
	kubeconfigPath := filepath.Join(dir, "kubelet.conf")
	bootstrapConfig := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"cluster": {Server: "https://" + p.APIServerEndpoint, CertificateAuthorityData: d.CAPEM}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"tls-bootstrap-token-user": {Token: p.Token}},
		Contexts:       map[string]*clientcmdapi.Context{"tls-bootstrap": {Cluster: "cluster", AuthInfo: "tls-bootstrap-token-user"}},
		CurrentContext: "tls-bootstrap",
	}
	if err := clientcmd.WriteToFile(bootstrapConfig, bootstrapPath); err != nil {
		return nil, fmt.Errorf("writing the bootstrap kubeconfig: %w", err)
	}
	if err := bootstrap.LoadClientCert(ctx, kubeconfigPath, bootstrapPath, dir, types.NodeName(nodeName)); err != nil {
		return nil, fmt.Errorf("TLS bootstrap of node %s: %w", nodeName, err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfigPath)
	if err != nil {
		return nil, fmt.Errorf("loading the kubeconfig of node %s: %w", nodeName, err)
	}
	if err := rest.LoadTLSFiles(cfg); err != nil {
		return nil, fmt.Errorf("loading the credentials of node %s: %w", nodeName, err)
	}
	cfg.CAFile, cfg.CertFile, cfg.KeyFile = "", "", ""
	return cfg, nil
}

// checkPin does what kubeadm's token discovery does with the CA it fetched.
func checkPin(p JoinParams, cas []*x509.Certificate) error {
	if p.CACertHash == "" {
		if p.UnsafeSkipCAVerification {
			return nil
		}
		return errors.New("kubeadm join has neither --discovery-token-ca-cert-hash nor --discovery-token-unsafe-skip-ca-verification")
	}
	pins := pubkeypin.NewSet()
	if err := pins.Allow(p.CACertHash); err != nil {
		return fmt.Errorf("invalid --discovery-token-ca-cert-hash: %w", err)
	}
	if err := pins.CheckAny(cas); err != nil {
		return fmt.Errorf("the discovered cluster CA does not match the pinned hash: %w", err)
	}
	return nil
}

// CAPin returns the --discovery-token-ca-cert-hash of a CA certificate, as kubeadm prints it.
func CAPin(ca *x509.Certificate) string { return pubkeypin.Hash(ca) }

// makeScratch makes a scratch directory for one TLS bootstrap.
func makeScratch(instanceID string) (string, error) {
	dir, err := os.MkdirTemp("", "ipp-kubelet-"+instanceID+"-")
	if err != nil {
		return "", fmt.Errorf("making the kubelet's directory: %w", err)
	}
	return dir, nil
}
