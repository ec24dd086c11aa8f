package tests

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"

	"github.com/ipp-project/ipp/e2e/framework"
	"github.com/ipp-project/ipp/pkg/jointoken"
)

// checkJoinTokenPolicy attacks the installed RBAC and ValidatingAdmissionPolicy ipp-join-tokens
// with the ServiceAccount's own identity: it may create and delete IPP join tokens in
// kube-system, and nothing else there.
func checkJoinTokenPolicy(t *testing.T, sa kubernetes.Interface, cluster string) {
	ctx := t.Context()
	secrets := sa.CoreV1().Secrets(metav1.NamespaceSystem)
	valid := func(id string) *corev1.Secret {
		s, err := jointoken.Secret(jointoken.Token{ID: id, Secret: "0123456789abcdef"}, cluster, "ipp-attack", metav1.Now().Add(600e9))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	with := func(s *corev1.Secret, f func(*corev1.Secret)) *corev1.Secret { f(s); return s }
	for _, tc := range []struct {
		name   string
		secret *corev1.Secret
		want   string
	}{
		{"a token of kubeadm's auto-approved group", with(valid("atk001"), func(s *corev1.Secret) {
			s.StringData[bootstrapapi.BootstrapTokenExtraGroupsKey] = "system:bootstrappers:kubeadm:default-node-token"
		}), "auth-extra-groups must be system:bootstrappers:ipp"},
		{"an IPP token with system:masters added", with(valid("atk002"), func(s *corev1.Secret) {
			s.StringData[bootstrapapi.BootstrapTokenExtraGroupsKey] += ",system:masters"
		}), "auth-extra-groups must be"},
		{"a token that never expires", with(valid("atk003"), func(s *corev1.Secret) {
			delete(s.StringData, bootstrapapi.BootstrapTokenExpirationKey)
		}), "must have an expiration"},
		{"a token not for authentication", with(valid("atk007"), func(s *corev1.Secret) {
			s.StringData[bootstrapapi.BootstrapTokenUsageAuthentication] = "false"
		}), "must have usage-bootstrap-authentication"},
		{"a token with a made-up signing usage", with(valid("atk008"), func(s *corev1.Secret) {
			s.StringData[bootstrapapi.BootstrapTokenUsageSigningKey] = "yes"
		}), "usage-bootstrap-signing must be"},
		{"a token without IPP's label", with(valid("atk004"), func(s *corev1.Secret) { s.Labels = nil }), "ipp.io/join-token=true"},
		{"an Opaque Secret", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cloud-credentials", Namespace: metav1.NamespaceSystem}, Type: corev1.SecretTypeOpaque},
			"only Secrets named bootstrap-token-"},
		{"a service account token", &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-atk005", Namespace: metav1.NamespaceSystem, Annotations: map[string]string{corev1.ServiceAccountNameKey: "default"}},
			Type:       corev1.SecretTypeServiceAccountToken,
		}, "only Secrets of type bootstrap.kubernetes.io/token"},
	} {
		t.Run("create "+tc.name, func(t *testing.T) {
			_, err := secrets.Create(ctx, tc.secret, metav1.CreateOptions{})
			if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Create %s as the ServiceAccount: %v, want denied with %q", tc.name, err, tc.want)
				_ = deleteKubeSystemSecret(t, tc.secret.Name)
			}
		})
	}
	t.Run("delete a bootstrap token that is not IPP's", func(t *testing.T) {
		name := bootstrapapi.BootstrapTokenSecretPrefix + framework.SharedJoinToken[:6]
		if err := secrets.Delete(ctx, name, metav1.DeleteOptions{}); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "only its join tokens") {
			t.Errorf("Delete %s as the ServiceAccount: %v, want denied by the policy", name, err)
		}
	})
	t.Run("read Secrets in kube-system", func(t *testing.T) {
		if _, err := secrets.List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("List kube-system Secrets as the ServiceAccount: %v, want Forbidden", err)
		}
		if _, err := secrets.Get(ctx, "bootstrap-token-"+framework.SharedJoinToken[:6], metav1.GetOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("Get a kube-system Secret as the ServiceAccount: %v, want Forbidden", err)
		}
	})
	t.Run("an IPP token: created, never updated, deleted", func(t *testing.T) {
		s, err := secrets.Create(ctx, valid("atk006"), metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("Create an IPP token as the ServiceAccount: %v", err)
		}
		s.Labels["tampered"] = "true"
		if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err == nil {
			t.Errorf("Update of an IPP token as the ServiceAccount was allowed")
		}
		if err := secrets.Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("Delete an IPP token as the ServiceAccount: %v", err)
		}
	})
}

// deleteKubeSystemSecret deletes a kube-system Secret an attack made after all, as the admin.
func deleteKubeSystemSecret(t *testing.T, name string) error {
	return ignoreNotFound(cluster.Client.CoreV1().Secrets(metav1.NamespaceSystem).Delete(t.Context(), name, metav1.DeleteOptions{}))
}
