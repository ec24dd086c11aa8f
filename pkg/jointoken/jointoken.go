// Package jointoken holds IPP's node credentials: the bootstrap token minted for one instance,
// and the review of the kubelet client CSR made with it.
//
// Each instance gets its own bootstrap token (Secret kube-system/bootstrap-token-<id>, expiring
// after the registration timeout). Its kubelet authenticates with it as system:bootstrap:<id> and
// asks for a client certificate; IPP approves that CSR only for the node name of the instance the
// token was minted for, once, and then deletes the token.
//
// # Several installations in one cluster
//
// Several IPP installations, each with its own cluster name (--cluster-name), may share one
// API server. Every token carries two extra groups: Group, the one RBAC binds to
// system:node-bootstrapper so that the kubelet may create its CSR, and ClusterGroup(cluster),
// which says which installation minted it. A CSR's spec.groups are the groups of its requester,
// set by the API server, so an approver decides only the CSRs whose groups contain its own
// cluster group and leaves the others, including those with Group alone, to the IPP they belong
// to. The Secret is labelled LabelCluster=<cluster name> too, so that people can tell whose a
// token is. An installation finds its own tokens in its controller's journal, never by reading
// Secrets: RBAC cannot grant a read of some Secrets in kube-system only.
package jointoken

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"
)

// Group is the extra group of every token IPP mints. Only system:node-bootstrapper (create
// CSRs) may be bound to it; nothing that auto-approves node client certificates.
const Group = "system:bootstrappers:ipp"

// ClusterGroupPrefix starts the per-cluster extra group of a token: ClusterGroup.
const ClusterGroupPrefix = Group + ":"

// LabelManagedBy marks the token Secrets IPP minted; the admission policy ipp-join-tokens lets
// IPP delete only Secrets with it.
const LabelManagedBy = "ipp.io/join-token"

// LabelCluster is the label whose value is the cluster name of the IPP that minted a token.
const LabelCluster = "ipp.io/cluster"

// ClusterGroup returns the extra group of the tokens that the IPP of cluster mints,
// system:bootstrappers:ipp:<cluster>. Only that IPP's approver decides their CSRs.
func ClusterGroup(cluster string) string { return ClusterGroupPrefix + cluster }

// ValidateCluster returns an error unless cluster is a DNS-1123 label whose ClusterGroup is a
// valid bootstrap token extra group (system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]).
func ValidateCluster(cluster string) error {
	if errs := validation.IsDNS1123Label(cluster); len(errs) > 0 {
		return fmt.Errorf("invalid cluster name %q: %s", cluster, strings.Join(errs, "; "))
	}
	if err := bootstraputil.ValidateBootstrapGroupName(ClusterGroup(cluster)); err != nil {
		return fmt.Errorf("invalid cluster name %q: %w", cluster, err)
	}
	return nil
}

// Token is one bootstrap token.
type Token struct {
	ID     string
	Secret string
}

// String returns the token as a kubelet presents it, "<id>.<secret>".
func (t Token) String() string { return bootstraputil.TokenFromIDAndSecret(t.ID, t.Secret) }

// New returns a random token.
func New() (Token, error) {
	s, err := bootstraputil.GenerateBootstrapToken()
	if err != nil {
		return Token{}, fmt.Errorf("generating bootstrap token: %w", err)
	}
	id, secret, _ := strings.Cut(s, ".")
	return Token{ID: id, Secret: secret}, nil
}

// SecretName returns the name of the Secret of the token id.
func SecretName(id string) string { return bootstraputil.BootstrapTokenSecretName(id) }

// Secret returns the bootstrap token Secret for t, minted by the IPP of cluster, valid for
// authentication and for signing cluster-info (kubeadm's token discovery), until expires, for the instance of nodeName (recorded in its description
// for people; IPP trusts the instance's own record of the token id, not this). Its extra groups
// are Group and ClusterGroup(cluster). It returns an error if cluster is invalid (ValidateCluster).
func Secret(t Token, cluster, nodeName string, expires time.Time) (*corev1.Secret, error) {
	if err := ValidateCluster(cluster); err != nil {
		return nil, err
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      SecretName(t.ID),
			Namespace: metav1.NamespaceSystem,
			Labels:    map[string]string{LabelManagedBy: "true", LabelCluster: cluster},
		},
		Type: corev1.SecretTypeBootstrapToken,
		StringData: map[string]string{
			bootstrapapi.BootstrapTokenIDKey:               t.ID,
			bootstrapapi.BootstrapTokenSecretKey:           t.Secret,
			bootstrapapi.BootstrapTokenExpirationKey:       expires.UTC().Format(time.RFC3339),
			bootstrapapi.BootstrapTokenUsageAuthentication: "true",
			// kubeadm join's token discovery checks the cluster CA through the cluster-info
			// ConfigMap signed with the token; a signing token grants no access of its own.
			bootstrapapi.BootstrapTokenUsageSigningKey: "true",
			bootstrapapi.BootstrapTokenExtraGroupsKey:  Group + "," + ClusterGroup(cluster),
			bootstrapapi.BootstrapTokenDescriptionKey:  "IPP join token of instance " + nodeName + " of cluster " + cluster + ", single use",
		},
	}, nil
}

// IDOfSecret returns the token id of a Secret IPP minted (of any cluster; see LabelCluster), or
// false for any other Secret.
func IDOfSecret(s *corev1.Secret) (string, bool) {
	if s.Namespace != metav1.NamespaceSystem || s.Type != corev1.SecretTypeBootstrapToken || s.Labels[LabelManagedBy] != "true" {
		return "", false
	}
	id, ok := strings.CutPrefix(s.Name, bootstrapapi.BootstrapTokenSecretPrefix)
	if !ok || !bootstraputil.IsValidBootstrapTokenID(id) {
		return "", false
	}
	return id, true
}

// Requester returns the token id of a CSR's requester system:bootstrap:<id>, or false.
func Requester(csr *certificatesv1.CertificateSigningRequest) (string, bool) {
	id, ok := strings.CutPrefix(csr.Spec.Username, bootstrapapi.BootstrapUserPrefix)
	if !ok || !bootstraputil.IsValidBootstrapTokenID(id) {
		return "", false
	}
	return id, true
}

// kubeletClientUsages are the usages a kubelet asks for its client certificate (the kubelet's
// own bootstrap asks for these; older ones add key encipherment for RSA keys).
var kubeletClientUsages = [][]certificatesv1.KeyUsage{
	{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
	{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageClientAuth},
}

// Check returns nil if csr is exactly the kubelet client CSR of nodeName: signer
// kubernetes.io/kube-apiserver-client-kubelet, subject CN=system:node:<nodeName>, O=system:nodes
// and nothing else, no SANs, and the kubelet client's usages. Otherwise the error names the first
// mismatch.
func Check(csr *certificatesv1.CertificateSigningRequest, nodeName string) error {
	if csr.Spec.SignerName != certificatesv1.KubeAPIServerClientKubeletSignerName {
		return fmt.Errorf("signer %q is not %s", csr.Spec.SignerName, certificatesv1.KubeAPIServerClientKubeletSignerName)
	}
	block, _ := pem.Decode(csr.Spec.Request)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return fmt.Errorf("the request is not a PEM CERTIFICATE REQUEST")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return fmt.Errorf("parsing the request: %w", err)
	}
	if err := req.CheckSignature(); err != nil {
		return fmt.Errorf("the request's signature: %w", err)
	}
	want := "system:node:" + nodeName
	s := req.Subject
	switch {
	case s.CommonName != want:
		return fmt.Errorf("common name %q is not %q", s.CommonName, want)
	case !slices.Equal(s.Organization, []string{"system:nodes"}):
		return fmt.Errorf("organizations %q are not exactly [system:nodes]", s.Organization)
	case len(s.OrganizationalUnit)+len(s.Country)+len(s.Province)+len(s.Locality)+len(s.StreetAddress)+len(s.PostalCode)+len(s.ExtraNames) > 0 || s.SerialNumber != "":
		return fmt.Errorf("the subject %q has more than CN and O", s.String())
	case len(req.DNSNames)+len(req.IPAddresses)+len(req.EmailAddresses)+len(req.URIs) > 0:
		return fmt.Errorf("the request has subject alternative names (DNS %q, IP %v, email %q, URI %v)", req.DNSNames, req.IPAddresses, req.EmailAddresses, req.URIs)
	}
	usages := slices.Clone(csr.Spec.Usages)
	slices.Sort(usages)
	for _, u := range kubeletClientUsages {
		w := slices.Clone(u)
		slices.Sort(w)
		if slices.Equal(usages, w) {
			return nil
		}
	}
	return fmt.Errorf("usages %q are not the kubelet client's (digital signature and client auth)", csr.Spec.Usages)
}
