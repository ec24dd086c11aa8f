package approver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"

	"github.com/ipp-project/ipp/pkg/jointoken"
)

func csrFor(t *testing.T, name, tokenID, cn string) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: cn, Organization: []string{"system:nodes"}},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: certificatesv1.KubeAPIServerClientKubeletSignerName,
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
			Username:   "system:bootstrap:" + tokenID,
			Groups:     []string{"system:bootstrappers", jointoken.Group, jointoken.ClusterGroup(testCluster), "system:authenticated"},
		},
	}
}

// testCluster is the cluster name of the approver under test.
const testCluster = "test"

// withGroups returns c with the requester's groups set to groups.
func withGroups(c *certificatesv1.CertificateSigningRequest, groups ...string) *certificatesv1.CertificateSigningRequest {
	c.Spec.Groups = groups
	return c
}

func approved(c *certificatesv1.CertificateSigningRequest) *certificatesv1.CertificateSigningRequest {
	c = c.DeepCopy()
	c.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue}}
	return c
}

// fakeInstances is the controller's view of the instances as of a List that started at
// listStart (zero: none yet), with the node names of the live instances by token id.
type fakeInstances struct {
	listStart time.Time
	nodes     map[string]string
	requested int
}

func (f *fakeInstances) NodeOfJoinToken(id string, notBefore time.Time) (string, bool, bool) {
	if f.listStart.IsZero() || f.listStart.Before(notBefore) {
		return "", false, false
	}
	name, ok := f.nodes[id]
	return name, ok, true
}

func (f *fakeInstances) RequestList() { f.requested++ }

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// firstLook is when the test approvers look at a CSR for the first time: a second after it was
// created (t0), as if the approver saw it late.
var firstLook = t0.Add(1500 * time.Millisecond)

// newApprover returns an approver over a fake clientset holding csr, others and the Secret of
// csr's token, with the CSR informer's cache filled.
func newApprover(t *testing.T, instances Instances, csr *certificatesv1.CertificateSigningRequest, others ...*certificatesv1.CertificateSigningRequest) (*Approver, *fake.Clientset) {
	t.Helper()
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: jointoken.SecretName("aaaaaa"), Namespace: "kube-system"}}
	if id, ok := jointoken.Requester(csr); ok {
		secret.Name = jointoken.SecretName(id)
	}
	kube := fake.NewClientset(csr, secret)
	factory := informers.NewSharedInformerFactory(kube, 0)
	inf := factory.Certificates().V1().CertificateSigningRequests()
	recorder := record.NewFakeRecorder(10)
	a, err := New(kube, inf, instances, recorder, testCluster)
	if err != nil {
		t.Fatal(err)
	}
	a.now = func() time.Time { return firstLook }
	for _, c := range append(others, csr) {
		if err := inf.Informer().GetIndexer().Add(c); err != nil {
			t.Fatal(err)
		}
	}
	return a, kube
}

// verdict returns the type of the CSR's condition in the clientset ("" for none) and its message.
func verdict(t *testing.T, kube *fake.Clientset, name string) (certificatesv1.RequestConditionType, string) {
	t.Helper()
	got, err := kube.CertificatesV1().CertificateSigningRequests().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Status.Conditions) == 0 {
		return "", ""
	}
	return got.Status.Conditions[0].Type, got.Status.Conditions[0].Message
}

func TestFreshList(t *testing.T) {
	created := func(c *certificatesv1.CertificateSigningRequest, at time.Time) *certificatesv1.CertificateSigningRequest {
		c.CreationTimestamp = metav1.NewTime(at)
		return c
	}
	type result struct {
		Verdict   certificatesv1.RequestConditionType
		After     time.Duration
		Requested int
	}
	for _, tc := range []struct {
		name      string
		listStart time.Time
		nodes     map[string]string
		want      result
	}{
		{name: "no List yet", nodes: map[string]string{"aaaaaa": "ipp-a"}, want: result{After: freshListWait, Requested: 1}},
		{name: "List older than the CSR", listStart: t0.Add(-time.Minute), nodes: map[string]string{"aaaaaa": "ipp-a"}, want: result{After: freshListWait, Requested: 1}},
		{name: "List older than the CSR, without the instance", listStart: t0.Add(-time.Minute), want: result{After: freshListWait, Requested: 1}},
		{name: "List started just before the first look", listStart: firstLook.Add(-time.Millisecond), nodes: map[string]string{"aaaaaa": "ipp-a"}, want: result{After: freshListWait, Requested: 1}},
		{name: "fresh List without the instance", listStart: firstLook, want: result{Verdict: certificatesv1.CertificateDenied}},
		{name: "fresh List with the instance", listStart: firstLook, nodes: map[string]string{"aaaaaa": "ipp-a"}, want: result{Verdict: certificatesv1.CertificateApproved}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			instances := &fakeInstances{listStart: tc.listStart, nodes: tc.nodes}
			csr := created(csrFor(t, "c", "aaaaaa", "system:node:ipp-a"), t0)
			a, kube := newApprover(t, instances, csr)
			after, err := a.sync(context.Background(), csr.Name)
			if err != nil {
				t.Fatalf("sync() = %v", err)
			}
			v, _ := verdict(t, kube, csr.Name)
			got := result{Verdict: v, After: after, Requested: instances.requested}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("sync() mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestSync(t *testing.T) {
	instances := &fakeInstances{listStart: firstLook, nodes: map[string]string{"aaaaaa": "ipp-a", "bbbbbb": "ipp-b"}}
	renewal := csrFor(t, "renewal", "aaaaaa", "system:node:ipp-a")
	renewal.Spec.Username, renewal.Spec.Groups = "system:node:ipp-a", []string{"system:nodes"}
	for _, tc := range []struct {
		name       string
		csr        *certificatesv1.CertificateSigningRequest
		others     []*certificatesv1.CertificateSigningRequest
		want       certificatesv1.RequestConditionType // "" leaves it alone
		wantReason string
		wantSecret bool // the token's Secret is still there afterwards
	}{
		{name: "own node", csr: csrFor(t, "c", "aaaaaa", "system:node:ipp-a"), want: certificatesv1.CertificateApproved},
		{name: "another class's node", csr: csrFor(t, "c", "aaaaaa", "system:node:ipp-b"), want: certificatesv1.CertificateDenied, wantReason: `common name "system:node:ipp-b" is not "system:node:ipp-a"`, wantSecret: true},
		{name: "token of no instance", csr: csrFor(t, "c", "cccccc", "system:node:ipp-c"), want: certificatesv1.CertificateDenied, wantReason: "belongs to no live instance", wantSecret: true},
		{name: "second use", csr: csrFor(t, "c", "aaaaaa", "system:node:ipp-a"), others: []*certificatesv1.CertificateSigningRequest{approved(csrFor(t, "first", "aaaaaa", "system:node:ipp-a"))}, want: certificatesv1.CertificateDenied, wantReason: "works once", wantSecret: true},
		{name: "kubelet renewal", csr: renewal, wantSecret: true},
		{name: "shared group only", csr: withGroups(csrFor(t, "c", "cccccc", "system:node:ipp-c"), "system:bootstrappers", jointoken.Group, "system:authenticated"), wantSecret: true},
		{name: "another cluster's token", csr: withGroups(csrFor(t, "c", "cccccc", "system:node:ipp-c"), "system:bootstrappers", jointoken.Group, jointoken.ClusterGroup("other"), "system:authenticated"), wantSecret: true},
		{name: "another cluster's token of a known id", csr: withGroups(csrFor(t, "c", "aaaaaa", "system:node:ipp-b"), "system:bootstrappers", jointoken.Group, jointoken.ClusterGroup("other"), "system:authenticated"), wantSecret: true},
		{name: "a cluster whose name extends ours", csr: withGroups(csrFor(t, "c", "cccccc", "system:node:ipp-c"), "system:bootstrappers", jointoken.Group, jointoken.ClusterGroup(testCluster+"-2"), "system:authenticated"), wantSecret: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: jointoken.SecretName("aaaaaa"), Namespace: "kube-system"}}
			if id, ok := jointoken.Requester(tc.csr); ok {
				secret.Name = jointoken.SecretName(id)
			}
			kube := fake.NewClientset(tc.csr, secret)
			factory := informers.NewSharedInformerFactory(kube, 0)
			inf := factory.Certificates().V1().CertificateSigningRequests()
			recorder := record.NewFakeRecorder(10)
			a, err := New(kube, inf, instances, recorder, testCluster)
			if err != nil {
				t.Fatal(err)
			}
			a.now = func() time.Time { return firstLook }
			for _, c := range append(tc.others, tc.csr) {
				if err := inf.Informer().GetIndexer().Add(c); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := a.sync(ctx, tc.csr.Name); err != nil {
				t.Fatalf("sync() = %v", err)
			}
			got, err := kube.CertificatesV1().CertificateSigningRequests().Get(ctx, tc.csr.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var cond *certificatesv1.CertificateSigningRequestCondition
			if len(got.Status.Conditions) > 0 {
				cond = &got.Status.Conditions[0]
			}
			switch {
			case tc.want == "" && cond != nil:
				t.Fatalf("CSR got condition %+v, want it left alone", cond)
			case tc.want != "" && (cond == nil || cond.Type != tc.want || !strings.Contains(cond.Message, tc.wantReason)):
				t.Fatalf("CSR condition %+v, want %s with a message containing %q", cond, tc.want, tc.wantReason)
			}
			if tc.want == certificatesv1.CertificateDenied {
				select {
				case e := <-recorder.Events:
					if !strings.HasPrefix(e, "Warning "+ReasonDenied) {
						t.Errorf("Event %q, want a Warning %s", e, ReasonDenied)
					}
				default:
					t.Error("no Event for the denial")
				}
			}
			_, err = kube.CoreV1().Secrets("kube-system").Get(ctx, secret.Name, metav1.GetOptions{})
			if exists := err == nil; exists != tc.wantSecret {
				t.Errorf("token Secret exists = %v (%v), want %v", exists, err, tc.wantSecret)
			} else if !exists && !apierrors.IsNotFound(err) {
				t.Error(err)
			}
			if tc.want == certificatesv1.CertificateApproved {
				if !a.IssuedFor("aaaaaa", "ipp-a") {
					// The indexer still holds the unapproved CSR: feed it the approved one.
					if err := inf.Informer().GetIndexer().Update(got); err != nil {
						t.Fatal(err)
					}
					if !a.IssuedFor("aaaaaa", "ipp-a") {
						t.Error("IssuedFor(aaaaaa, ipp-a) = false after the approval")
					}
				}
				if a.IssuedFor("aaaaaa", "ipp-b") {
					t.Error("IssuedFor(aaaaaa, ipp-b) = true")
				}
			}
		})
	}
}
