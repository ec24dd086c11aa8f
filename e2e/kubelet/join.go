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
	"time"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	kubeadmapi "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm"
	"k8s.io/kubernetes/cmd/kubeadm/app/discovery/token"
	kubeconfigutil "k8s.io/kubernetes/cmd/kubeadm/app/util/kubeconfig"
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

// discoveryTimeout bounds kubeadm's token discovery (kubeadm's own default is 5 minutes).
const discoveryTimeout = time.Minute

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

// TLSBootstrap obtains the kubelet client credentials of nodeName as a node joining with kubeadm
// does. kubeadm's own token discovery fetches the cluster-info ConfigMap anonymously, checks its
// JWS signature with the token and the CA against the pin (kubeadm refuses to join without a pin
// unless told to skip the check); the kubelet's own TLS bootstrap then authenticates with the
// token as system:bootstrap:<token id>, makes a CSR for system:node:<nodeName> and waits until it
// is approved and signed, or denied. The credentials are returned in memory; dir is a scratch
// directory.
func TLSBootstrap(ctx context.Context, dir string, p JoinParams, nodeName string) (*rest.Config, error) {
	if p.CACertHash == "" && !p.UnsafeSkipCAVerification {
		return nil, errors.New("kubeadm join has neither --discovery-token-ca-cert-hash nor --discovery-token-unsafe-skip-ca-verification")
	}
	disc := &kubeadmapi.Discovery{BootstrapToken: &kubeadmapi.BootstrapTokenDiscovery{
		Token:                    p.Token,
		APIServerEndpoint:        p.APIServerEndpoint,
		UnsafeSkipCAVerification: p.UnsafeSkipCAVerification,
	}}
	if p.CACertHash != "" {
		disc.BootstrapToken.CACertHashes = []string{p.CACertHash}
	}
	// kubeadm polls for the signature every 5 s; wait for it here more finely, so that a node
	// booted a moment after its token was minted does not lose 5 s (the check is kubeadm's).
	if err := waitSigned(ctx, p); err != nil {
		return nil, fmt.Errorf("token discovery of node %s: %w", nodeName, err)
	}
	info, err := token.RetrieveValidatedConfigInfo(nil, disc, discoveryTimeout)
	if err != nil {
		return nil, fmt.Errorf("token discovery of node %s: %w", nodeName, err)
	}
	clusterName, cluster, err := kubeconfigutil.GetClusterFromKubeConfig(info)
	if err != nil {
		return nil, fmt.Errorf("token discovery of node %s: %w", nodeName, err)
	}
	bootstrapPath := filepath.Join(dir, "bootstrap-kubelet.conf")
	kubeconfigPath := filepath.Join(dir, "kubelet.conf")
	bootstrapConfig := kubeconfigutil.CreateWithToken(cluster.Server, clusterName, "tls-bootstrap-token-user", cluster.CertificateAuthorityData, p.Token)
	if err := clientcmd.WriteToFile(*bootstrapConfig, bootstrapPath); err != nil {
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

// waitSigned waits until the cluster-info ConfigMap, read anonymously as kubeadm reads it, has a
// JWS signature for the token's id.
func waitSigned(ctx context.Context, p JoinParams) error {
	client, err := kubeconfigutil.ToClientSet(token.BuildInsecureBootstrapKubeConfig(p.APIServerEndpoint))
	if err != nil {
		return err
	}
	id, _, _ := strings.Cut(p.Token, ".")
	return wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, discoveryTimeout, true, func(ctx context.Context) (bool, error) {
		cm, err := client.CoreV1().ConfigMaps(metav1.NamespacePublic).Get(ctx, bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{})
		if err != nil {
			return false, nil // kubeadm retries too
		}
		_, ok := cm.Data[bootstrapapi.JWSSignatureKeyPrefix+id]
		return ok, nil
	})
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
