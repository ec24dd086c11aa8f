package tests

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/certificate/csr"
	"k8s.io/client-go/util/keyutil"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"

	"github.com/ipp-project/ipp/e2e/framework"
	"github.com/ipp-project/ipp/e2e/kubelet"
	"github.com/ipp-project/ipp/pkg/approver"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/jointoken"
)

// TestJoinCredentials attacks IPP's node credentials on each provider (I4, I7) with what root on
// an IPP instance can read from its metadata server: the bootstrap token in its rendered
// bootstrap. Instance a never boots, so its token is still unused when the attacker takes it;
// class b runs a Pod that mounts a Secret. Through the real apiserver, kube-controller-manager's
// signer and IPP's approver:
//   - a's token gets no certificate for b's node name, nor for a's with extra names, extra
//     organizations or server usages: each CSR is denied with the mismatch named, and a Warning
//     Event;
//   - a's token gets a's own kubelet client certificate once, and then no longer authenticates;
//   - a's kubelet renews its certificate as system:node:<a> through Kubernetes' own approver;
//   - a's certificate cannot create another node's Node nor read b's Secret;
//   - an expired token does not authenticate; a's used token cannot read b's Secret;
//   - the token of an instance deleted behind IPP's back is never approved;
//   - every token IPP mints expires after the registration timeout.
func TestJoinCredentials(t *testing.T) {
	forEachProvider(t, func(t *testing.T, provider string) {
		ctx := t.Context()
		cfg := isolation.DefaultConfig()
		cfg.ClusterName = "join-" + provider
		// --placement=admission: the test knows each class's node name before it exists
		// (cfg.NodeName), to hold one back (NeverBoot) and to attack with another's credentials.
		cfg.Placement = isolation.PlacementAdmission
		const regTimeout = 10 * time.Minute
		ipp, err := framework.StartIPP(ctx, cluster, framework.IPPOptions{
			Provider:            provider,
			Config:              &cfg,
			IdleTTL:             idleTTL,
			RegistrationTimeout: regTimeout,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ipp.Stop(context.Background()) })

		ns := namespace(t, "join")
		nodeA, nodeB, nodeC := cfg.NodeName(ns, "a"), cfg.NodeName(ns, "b"), cfg.NodeName(ns, "c")
		ipp.NeverBoot(nodeA)
		secret, err := cluster.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "b-secret"},
			StringData: map[string]string{"password": "b's only"},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		createPod(t, ns, pod("a", classOf(cfg, "a")))
		createPod(t, ns, pod("b", classOf(cfg, "b"), mountingSecret(secret.Name)))
		tokA := stealToken(t, ipp, nodeA)
		waitRunningOn(t, ns, "b", nodeB)

		// The token Secret expires after the registration timeout, as minted.
		s, err := cluster.Client.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, jointoken.SecretName(tokenID(tokA)), metav1.GetOptions{})
		if err != nil {
			t.Fatalf("Get a's token Secret: %v", err)
		}
		exp, err := time.Parse(time.RFC3339, string(s.Data[bootstrapapi.BootstrapTokenExpirationKey]))
		if err != nil || exp.After(time.Now().Add(regTimeout)) || exp.Before(time.Now().Add(regTimeout-time.Minute)) {
			t.Errorf("a's token expires %v (%v), want about %v from its minting", exp, err, regTimeout)
		}

		boot := tokenClient(t, tokA)
		for _, tc := range []struct {
			name    string
			subject pkix.Name
			dns     []string
			usages  []certificatesv1.KeyUsage
			reason  string
		}{
			{name: "another class's node name", subject: nodeSubject(nodeB), reason: "common name"},
			{name: "extra subject alternative names", subject: nodeSubject(nodeA), dns: []string{"kubernetes.default.svc"}, reason: "subject alternative names"},
			{name: "extra organization", subject: pkix.Name{CommonName: "system:node:" + nodeA, Organization: []string{"system:nodes", "system:masters"}}, reason: "organizations"},
			{name: "server usages", subject: nodeSubject(nodeA), usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}, reason: "usages"},
		} {
			t.Run("token of a: "+tc.name, func(t *testing.T) {
				name, _ := requestCert(t, boot, tc.subject, tc.dns, tc.usages)
				c := waitDecided(t, name)
				cond := condition(c)
				if cond.Type != certificatesv1.CertificateDenied || cond.Reason != approver.ReasonDenied || !strings.Contains(cond.Message, tc.reason) {
					t.Errorf("CSR %s: condition %s %s %q, want Denied %s naming %q", name, cond.Type, cond.Reason, cond.Message, approver.ReasonDenied, tc.reason)
				}
				if len(c.Status.Certificate) > 0 {
					t.Errorf("CSR %s was denied but has a certificate", name)
				}
				waitEvent(t, c, approver.ReasonDenied)
			})
		}

		var certA *rest.Config
		t.Run("token of a: its own kubelet certificate, once", func(t *testing.T) {
			name, key := requestCert(t, boot, nodeSubject(nodeA), nil, nil)
			c := waitDecided(t, name)
			if cond := condition(c); cond.Type != certificatesv1.CertificateApproved || cond.Reason != approver.ReasonApproved {
				t.Fatalf("CSR %s: condition %s %s %q, want Approved by IPP", name, cond.Type, cond.Reason, cond.Message)
			}
			certPEM, err := csr.WaitForCertificate(ctx, cluster.Client, name, c.UID)
			if err != nil {
				t.Fatalf("Waiting for a's certificate: %v", err)
			}
			keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
			if err != nil {
				t.Fatal(err)
			}
			certA = &rest.Config{Host: cluster.Host, TLSClientConfig: rest.TLSClientConfig{CAData: cluster.CA.CertPEM, CertData: certPEM, KeyData: keyPEM}}
			// Used once, the token is gone: it no longer authenticates.
			err = waitFor(ctx, ippTimeout, func(ctx context.Context) (bool, error) {
				_, err := boot.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
				return apierrors.IsUnauthorized(err), nil
			})
			if err != nil {
				t.Errorf("a's used token still authenticates: %v", err)
			}
			if _, _, err := requestCertErr(boot, nodeSubject(nodeA), nil, nil); !apierrors.IsUnauthorized(err) {
				t.Errorf("A second CSR with a's used token: %v, want Unauthorized", err)
			}
		})
		if certA == nil {
			t.Fatal("No certificate for a: the remaining attacks need it")
		}
		asA, err := kubernetes.NewForConfig(certA)
		if err != nil {
			t.Fatal(err)
		}
		t.Run("a's kubelet renews its certificate as itself, with Kubernetes' approver", func(t *testing.T) {
			name, _ := requestCert(t, asA, nodeSubject(nodeA), nil, nil)
			c := waitDecided(t, name)
			if cond := condition(c); cond.Type != certificatesv1.CertificateApproved || cond.Reason == approver.ReasonApproved {
				t.Errorf("Renewal CSR %s: condition %s %s %q, want Approved by kube-controller-manager, not IPP", name, cond.Type, cond.Reason, cond.Message)
			}
			if c.Spec.Username != "system:node:"+nodeA {
				t.Errorf("Renewal CSR %s made by %q, want system:node:%s", name, c.Spec.Username, nodeA)
			}
		})
		t.Run("a's certificate cannot create another class's Node", func(t *testing.T) {
			n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeC, Labels: cfg.NodeLabels()}}
			if _, err := asA.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
				t.Errorf("Create Node %s with a's certificate: %v, want Forbidden", nodeC, err)
				deleteNode(nodeC)
			}
		})
		t.Run("a's certificate cannot read b's Secret", func(t *testing.T) {
			if _, err := asA.CoreV1().Secrets(ns).Get(ctx, secret.Name, metav1.GetOptions{}); !apierrors.IsForbidden(err) {
				t.Errorf("Get b's Secret with a's certificate: %v, want Forbidden", err)
			}
			review, err := asA.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
				Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
					Namespace: ns, Verb: "get", Resource: "secrets", Name: secret.Name,
				}},
			}, metav1.CreateOptions{})
			if err != nil || review.Status.Allowed {
				t.Errorf("SelfSubjectAccessReview of b's Secret as a: %+v, %v; want denied", review, err)
			}
		})

		t.Run("an expired IPP token", func(t *testing.T) {
			tok, err := jointoken.New()
			if err != nil {
				t.Fatal(err)
			}
			expired, err := jointoken.Secret(tok, cfg.ClusterName, nodeC, time.Now().Add(-time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cluster.Client.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, expired, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = deleteKubeSystemSecret(t, expired.Name) })
			if _, _, err := requestCertErr(tokenClient(t, tok.String()), nodeSubject(nodeC), nil, nil); !apierrors.IsUnauthorized(err) {
				t.Errorf("CSR with an expired token: %v, want Unauthorized", err)
			}
		})
		t.Run("a's used token cannot read b's Secret", func(t *testing.T) {
			if _, err := boot.CoreV1().Secrets(ns).Get(ctx, secret.Name, metav1.GetOptions{}); !apierrors.IsUnauthorized(err) && !apierrors.IsForbidden(err) {
				t.Errorf("Get b's Secret with a's used token: %v, want Unauthorized", err)
			}
		})
		t.Run("token of an instance deleted behind IPP's back", func(t *testing.T) {
			nodeD := cfg.NodeName(ns, "d")
			ipp.NeverBoot(nodeD)
			createPod(t, ns, pod("d", classOf(cfg, "d")))
			tokD := stealToken(t, ipp, nodeD)
			inst, ok := ipp.Cloud.Instance(nodeD)
			if !ok {
				t.Fatalf("No instance of %s", nodeD)
			}
			if err := deleteInstance(ctx, ipp, nodeD, inst.ID); err != nil {
				t.Fatal(err)
			}
			bootD := tokenClient(t, tokD)
			name, _, err := requestCertErr(bootD, nodeSubject(nodeD), nil, nil)
			switch {
			case apierrors.IsUnauthorized(err):
				// IPP already deleted the token with its instance.
			case err != nil:
				t.Fatalf("CSR with d's token: %v", err)
			default:
				c := waitDecided(t, name)
				if cond := condition(c); cond.Type != certificatesv1.CertificateDenied || !strings.Contains(cond.Message, "no live instance") {
					t.Errorf("CSR %s of a deleted instance's token: condition %s %q, want Denied for no live instance", name, cond.Type, cond.Message)
				}
			}
		})
		checkIsolation(t, cfg)
	})
}

// stealToken waits for the instance of nodeName and returns the bootstrap token its rendered
// bootstrap holds, as root on it would read it from the metadata server.
func stealToken(t *testing.T, ipp *framework.IPP, nodeName string) string {
	t.Helper()
	var tok string
	err := waitFor(t.Context(), ippTimeout, func(context.Context) (bool, error) {
		inst, ok := ipp.Cloud.Instance(nodeName)
		if !ok || inst.Bootstrap == "" {
			return false, nil
		}
		p, err := kubelet.ParseJoin(inst.Bootstrap)
		if err != nil {
			return false, err
		}
		tok = p.Token
		return true, nil
	})
	if err != nil {
		t.Fatalf("Reading the token of %s's instance: %v", nodeName, err)
	}
	return tok
}

func tokenID(token string) string { id, _, _ := strings.Cut(token, "."); return id }

// deleteInstance deletes the instance of nodeName through the cloud's API, not through IPP, and
// waits until the cloud no longer shows the instance of cloud id id live.
func deleteInstance(ctx context.Context, ipp *framework.IPP, nodeName, id string) error {
	insts, err := ipp.Cloud.Provider().List(ctx)
	if err != nil {
		return err
	}
	for _, inst := range insts {
		if inst.NodeName == nodeName {
			if err := ipp.Cloud.Provider().Delete(ctx, inst); err != nil {
				return fmt.Errorf("deleting %s's instance behind IPP's back: %w", nodeName, err)
			}
		}
	}
	return waitFor(ctx, ippTimeout, func(context.Context) (bool, error) {
		inst, ok := ipp.Cloud.Instance(nodeName)
		return !ok || inst.ID != id, nil
	})
}

// tokenClient is a client that authenticates with a bootstrap token, as a joining kubelet does.
func tokenClient(t *testing.T, token string) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(&rest.Config{Host: cluster.Host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: cluster.CA.CertPEM}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func nodeSubject(node string) pkix.Name {
	return pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}}
}

// requestCert makes a kubelet client CSR (or what an attacker puts in one) with client and
// returns its name and key.
func requestCert(t *testing.T, client kubernetes.Interface, subject pkix.Name, dns []string, usages []certificatesv1.KeyUsage) (string, crypto.Signer) {
	t.Helper()
	name, key, err := requestCertErr(client, subject, dns, usages)
	if err != nil {
		t.Fatalf("Creating a CSR for %s: %v", subject.CommonName, err)
	}
	return name, key
}

func requestCertErr(client kubernetes.Interface, subject pkix.Name, dns []string, usages []certificatesv1.KeyUsage) (string, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject, DNSNames: dns}, key)
	if err != nil {
		return "", nil, err
	}
	if usages == nil {
		usages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}
	}
	name := uniqueName("attack-csr")
	reqPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	name, _, err = csr.RequestCertificate(client, reqPEM, name, certificatesv1.KubeAPIServerClientKubeletSignerName, nil, usages, key)
	return name, key, err
}

// waitDecided waits until the CSR is approved or denied, and returns it.
func waitDecided(t *testing.T, name string) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	var c *certificatesv1.CertificateSigningRequest
	err := waitFor(t.Context(), ippTimeout, func(ctx context.Context) (bool, error) {
		var err error
		c, err = cluster.Client.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		return err == nil && condition(c).Type != "", err
	})
	if err != nil {
		t.Fatalf("Waiting for CSR %s to be decided: %v", name, err)
	}
	return c
}

// condition returns the CSR's Approved or Denied condition, or a zero one.
func condition(c *certificatesv1.CertificateSigningRequest) certificatesv1.CertificateSigningRequestCondition {
	for _, cond := range c.Status.Conditions {
		if (cond.Type == certificatesv1.CertificateApproved || cond.Type == certificatesv1.CertificateDenied) && cond.Status == corev1.ConditionTrue {
			return cond
		}
	}
	return certificatesv1.CertificateSigningRequestCondition{}
}

// waitEvent waits for an Event of reason about the CSR.
func waitEvent(t *testing.T, c *certificatesv1.CertificateSigningRequest, reason string) {
	t.Helper()
	err := waitFor(t.Context(), ippTimeout, func(ctx context.Context) (bool, error) {
		evs, err := cluster.Client.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + c.Name})
		if err != nil {
			return false, err
		}
		for _, e := range evs.Items {
			if e.Reason == reason && e.InvolvedObject.UID == types.UID(c.UID) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Errorf("No %s Event about CSR %s: %v", reason, c.Name, err)
	}
}

func classOf(cfg isolation.Config, class string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		if p.Labels == nil {
			p.Labels = map[string]string{}
		}
		p.Labels[cfg.PodLabel] = class
	}
}

func mountingSecret(name string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: name}}})
	}
}

// waitRunningOn waits until the Pod runs on node.
func waitRunningOn(t *testing.T, ns, name, node string) {
	t.Helper()
	err := waitFor(t.Context(), ippTimeout, func(ctx context.Context) (bool, error) {
		p, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return p.Spec.NodeName == node && p.Status.Phase == corev1.PodRunning, nil
	})
	if err != nil {
		t.Fatalf("Waiting for Pod %s/%s to run on %s: %v", ns, name, node, err)
	}
}
