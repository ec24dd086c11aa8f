package framework

import (
	"context"
	"fmt"
	"net/url"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"

	"github.com/ipp-project/ipp/e2e/kubelet"
	"github.com/ipp-project/ipp/pkg/bootstrap"
	"github.com/ipp-project/ipp/pkg/jointoken"
)

// How nodes join the test cluster. The apiserver authenticates bootstrap tokens, and
// kube-controller-manager signs kubelet client CSRs with the test CA, approves those of groups
// bound to node-client auto-approval, and deletes expired tokens.
//
// Two kinds of token are in use, as in a real cluster:
//   - the shared token SharedJoinToken, in group SharedJoinGroup, which is bound both to CSR
//     creation and to node-client auto-approval, as kubeadm's default token is. Tests that boot
//     nodes without IPP's controller (the providers' own tests) join with it.
//   - the tokens IPP mints per instance, in group jointoken.Group, which are bound to CSR creation
//     only (as deploy/ binds them): only IPP's approver approves their CSRs.
const (
	// SharedJoinToken is the shared bootstrap token.
	SharedJoinToken = "e2e000.0123456789abcdef"
	// SharedJoinGroup is its extra group.
	SharedJoinGroup = "system:bootstrappers:e2e-shared"
)

// setUpJoining does for token joins what kubeadm init does: the kube-public/cluster-info
// ConfigMap (the cluster's server and CA, which kube-controller-manager's bootstrapsigner signs
// with every signing token) readable by anyone, and the RBAC bindings of both kinds of token. It
// also creates the shared token's Secret.
func (cp *ControlPlane) setUpJoining(ctx context.Context) error {
	info, err := clientcmd.Write(clientcmdapi.Config{
		Clusters: map[string]*clientcmdapi.Cluster{"": {Server: cp.Host, CertificateAuthorityData: cp.CA.CertPEM}},
	})
	if err != nil {
		return fmt.Errorf("encoding cluster-info: %w", err)
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: bootstrapapi.ConfigMapClusterInfo, Namespace: metav1.NamespacePublic},
		Data:       map[string]string{bootstrapapi.KubeConfigKey: string(info)},
	}
	// kube-public is made by the apiserver's bootstrap controller, maybe a moment after start.
	err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := cp.Client.CoreV1().ConfigMaps(metav1.NamespacePublic).Create(ctx, cm, metav1.CreateOptions{})
		return !apierrors.IsNotFound(err), err
	})
	if err != nil {
		return fmt.Errorf("creating cluster-info: %w", err)
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "kubeadm:bootstrap-signer-clusterinfo", Namespace: metav1.NamespacePublic},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"},
			ResourceNames: []string{bootstrapapi.ConfigMapClusterInfo}, Verbs: []string{"get"}}},
	}
	if _, err := cp.Client.RbacV1().Roles(metav1.NamespacePublic).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating Role %s: %w", role.Name, err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name, Namespace: metav1.NamespacePublic},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "system:anonymous"}},
	}
	if _, err := cp.Client.RbacV1().RoleBindings(metav1.NamespacePublic).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating RoleBinding %s: %w", rb.Name, err)
	}

	group := func(name string) []rbacv1.Subject {
		return []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: name}}
	}
	bindings := []*rbacv1.ClusterRoleBinding{
		// deploy/ grants IPP's tokens this and nothing else.
		{
			ObjectMeta: metav1.ObjectMeta{Name: "e2e-ipp-node-bootstrappers"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:node-bootstrapper"},
			Subjects:   group(jointoken.Group),
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "e2e-shared-node-bootstrappers"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:node-bootstrapper"},
			Subjects:   group(SharedJoinGroup),
		},
		// A kubelet renews its own client certificate as system:node:<name>: auto-approved, as
		// kubeadm binds it (kubeadm:node-autoapprove-certificate-rotation).
		{
			ObjectMeta: metav1.ObjectMeta{Name: "e2e-node-autoapprove-certificate-rotation"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient"},
			Subjects:   group("system:nodes"),
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "e2e-shared-node-autoapprove"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:certificates.k8s.io:certificatesigningrequests:nodeclient"},
			Subjects:   group(SharedJoinGroup),
		},
	}
	for _, b := range bindings {
		if _, err := cp.Client.RbacV1().ClusterRoleBindings().Create(ctx, b, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating ClusterRoleBinding %s: %w", b.Name, err)
		}
	}
	id, secret := SharedJoinToken[:6], SharedJoinToken[7:]
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: bootstrapapi.BootstrapTokenSecretPrefix + id, Namespace: metav1.NamespaceSystem},
		Type:       corev1.SecretTypeBootstrapToken,
		StringData: map[string]string{
			bootstrapapi.BootstrapTokenIDKey:               id,
			bootstrapapi.BootstrapTokenSecretKey:           secret,
			bootstrapapi.BootstrapTokenUsageAuthentication: "true",
			bootstrapapi.BootstrapTokenUsageSigningKey:     "true",
			bootstrapapi.BootstrapTokenExtraGroupsKey:      SharedJoinGroup,
			bootstrapapi.BootstrapTokenDescriptionKey:      "the e2e tests' shared token, bound to node-client auto-approval like kubeadm's default token",
		},
	}
	if _, err := cp.Client.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating the shared join token: %w", err)
	}
	return nil
}

// CAPin is the --join-ca-cert-hash of the test CA.
func (cp *ControlPlane) CAPin() string { return kubelet.CAPin(cp.CA.Cert) }

// JoinEndpoint is host:port of the apiserver, as a bootstrap's kubeadm join names it.
func (cp *ControlPlane) JoinEndpoint() string {
	u, err := url.Parse(cp.Host)
	if err != nil {
		return cp.Host
	}
	return u.Host
}

// MintedJoin is the join of nodes whose tokens IPP mints: the endpoint and the CA pin, no token.
func (cp *ControlPlane) MintedJoin() bootstrap.Join {
	return bootstrap.Join{APIServerEndpoint: cp.JoinEndpoint(), CACertHash: cp.CAPin()}
}

// SharedJoin is the join of nodes that use the shared token.
func (cp *ControlPlane) SharedJoin() bootstrap.Join {
	j := cp.MintedJoin()
	j.Token = SharedJoinToken
	return j
}
