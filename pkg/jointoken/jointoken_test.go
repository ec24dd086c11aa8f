package jointoken

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"
)

// CSR returns a kubelet client CSR as the kubelet makes it, changed by tmpl.
func CSR(t *testing.T, tmpl x509.CertificateRequest, usages ...certificatesv1.KeyUsage) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	if usages == nil {
		usages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}
	}
	return &certificatesv1.CertificateSigningRequest{Spec: certificatesv1.CertificateSigningRequestSpec{
		Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
		SignerName: certificatesv1.KubeAPIServerClientKubeletSignerName,
		Usages:     usages,
		Username:   "system:bootstrap:abcdef",
		Groups:     []string{"system:bootstrappers", Group, "system:authenticated"},
	}}
}

func TestCheck(t *testing.T) {
	good := x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:ipp-a", Organization: []string{"system:nodes"}}}
	with := func(f func(*x509.CertificateRequest)) x509.CertificateRequest {
		r := good
		f(&r)
		return r
	}
	for _, tc := range []struct {
		name    string
		csr     *certificatesv1.CertificateSigningRequest
		wantErr string
	}{
		{"the kubelet's own", CSR(t, good), ""},
		{"RSA-style usages", CSR(t, good, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth), ""},
		{"another node", CSR(t, with(func(r *x509.CertificateRequest) { r.Subject.CommonName = "system:node:ipp-b" })), `common name "system:node:ipp-b"`},
		{"extra organization", CSR(t, with(func(r *x509.CertificateRequest) { r.Subject.Organization = []string{"system:nodes", "system:masters"} })), "organizations"},
		{"no organization", CSR(t, with(func(r *x509.CertificateRequest) { r.Subject.Organization = nil })), "organizations"},
		{"organizational unit", CSR(t, with(func(r *x509.CertificateRequest) { r.Subject.OrganizationalUnit = []string{"x"} })), "more than CN and O"},
		{"DNS SAN", CSR(t, with(func(r *x509.CertificateRequest) { r.DNSNames = []string{"kubernetes.default"} })), "subject alternative names"},
		{"IP SAN", CSR(t, with(func(r *x509.CertificateRequest) { r.IPAddresses = []net.IP{net.ParseIP("10.0.0.1")} })), "subject alternative names"},
		{"server auth", CSR(t, good, certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth), "usages"},
		{"client and server auth", CSR(t, good, certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth, certificatesv1.UsageServerAuth), "usages"},
		{"other signer", func() *certificatesv1.CertificateSigningRequest {
			c := CSR(t, good)
			c.Spec.SignerName = certificatesv1.KubeAPIServerClientSignerName
			return c
		}(), "signer"},
		{"not PEM", func() *certificatesv1.CertificateSigningRequest {
			c := CSR(t, good)
			c.Spec.Request = []byte("junk")
			return c
		}(), "PEM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.csr, "ipp-a")
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Check() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Check() = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestSecret(t *testing.T) {
	tok, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if !bootstraputil.IsValidBootstrapToken(tok.String()) {
		t.Fatalf("New() = %q, not a valid bootstrap token", tok.String())
	}
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s, err := Secret(tok, "prod", "ipp-a", exp)
	if err != nil {
		t.Fatal(err)
	}
	if s.Type != corev1.SecretTypeBootstrapToken || s.Name != "bootstrap-token-"+tok.ID || s.Namespace != "kube-system" {
		t.Fatalf("Secret() = %s/%s of type %s", s.Namespace, s.Name, s.Type)
	}
	for k, want := range map[string]string{
		"token-id": tok.ID, "token-secret": tok.Secret, "expiration": "2030-01-02T03:04:05Z",
		"usage-bootstrap-authentication": "true", "auth-extra-groups": "system:bootstrappers:ipp,system:bootstrappers:ipp:prod",
	} {
		if got := s.StringData[k]; got != want {
			t.Errorf("Secret().StringData[%s] = %q, want %q", k, got, want)
		}
	}
	for _, g := range strings.Split(s.StringData["auth-extra-groups"], ",") {
		if err := bootstraputil.ValidateBootstrapGroupName(g); err != nil {
			t.Errorf("extra group: %v", err)
		}
	}
	if diff := cmp.Diff(map[string]string{"ipp.io/join-token": "true", "ipp.io/cluster": "prod"}, s.Labels); diff != "" {
		t.Errorf("Secret().Labels mismatch (-want +got):\n%s", diff)
	}
	// kubeadm join's token discovery needs cluster-info signed with the token.
	if got := s.StringData["usage-bootstrap-signing"]; got != "true" {
		t.Errorf("usage-bootstrap-signing = %q, want true: kubeadm join could not check the CA", got)
	}
	if id, ok := IDOfSecret(s); !ok || id != tok.ID {
		t.Errorf("IDOfSecret() = %q, %v", id, ok)
	}
	csr := &certificatesv1.CertificateSigningRequest{Spec: certificatesv1.CertificateSigningRequestSpec{Username: "system:bootstrap:" + tok.ID}}
	if id, ok := Requester(csr); !ok || id != tok.ID {
		t.Errorf("Requester() = %q, %v", id, ok)
	}
	csr.Spec.Username = "system:node:ipp-a"
	if _, ok := Requester(csr); ok {
		t.Error("Requester() of a node's own renewal reports a bootstrap token")
	}
}

func TestClusterGroup(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cluster   string
		wantGroup string
		wantErr   bool
	}{
		{name: "default", cluster: "ipp", wantGroup: "system:bootstrappers:ipp:ipp"},
		{name: "with dash and digits", cluster: "prod-2", wantGroup: "system:bootstrappers:ipp:prod-2"},
		{name: "longest label", cluster: strings.Repeat("a", 63), wantGroup: "system:bootstrappers:ipp:" + strings.Repeat("a", 63)},
		{name: "empty", cluster: "", wantGroup: "system:bootstrappers:ipp:", wantErr: true},
		{name: "trailing dash", cluster: "prod-", wantGroup: "system:bootstrappers:ipp:prod-", wantErr: true},
		{name: "upper case", cluster: "Prod", wantGroup: "system:bootstrappers:ipp:Prod", wantErr: true},
		{name: "comma", cluster: "a,system:masters", wantGroup: "system:bootstrappers:ipp:a,system:masters", wantErr: true},
		{name: "too long", cluster: strings.Repeat("a", 64), wantGroup: "system:bootstrappers:ipp:" + strings.Repeat("a", 64), wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.wantGroup, ClusterGroup(tc.cluster)); diff != "" {
				t.Errorf("ClusterGroup() mismatch (-want +got):\n%s", diff)
			}
			err := ValidateCluster(tc.cluster)
			if gotErr := err != nil; gotErr != tc.wantErr {
				t.Errorf("ValidateCluster() = %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr {
				if err := bootstraputil.ValidateBootstrapGroupName(ClusterGroup(tc.cluster)); err != nil {
					t.Errorf("ClusterGroup() is not a valid extra group: %v", err)
				}
			}
			_, err = Secret(Token{ID: "abcdef", Secret: "0123456789abcdef"}, tc.cluster, "n", time.Time{})
			if gotErr := err != nil; gotErr != tc.wantErr {
				t.Errorf("Secret() error = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}
