package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/ipp-project/ipp/cmd/ipp/app"
)

// Rendered is the objects of one kustomization, decoded strictly.
type rendered struct {
	objects []runtime.Object
	// other are objects of kinds client-go does not know (cert-manager's), by kind.
	other map[string]int
	// caCertificateSecrets are the Secrets of cert-manager Certificates with isCA: they hold a
	// CA's private key.
	caCertificateSecrets []string
}

// Render builds the kustomization in dir with the kustomize library, as `kubectl kustomize` does.
func render(t testing.TB, dir string) []byte {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	return out
}

// manifestScheme knows every kind the manifests hold but cert-manager's: client-go's and the
// CustomResourceDefinition.
var manifestScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(scheme.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	return s
}()

// decode decodes every document with manifestScheme, strictly, so that a misspelt field fails
// the test instead of being dropped by the apiserver.
func decode(t testing.TB, y []byte) rendered {
	t.Helper()
	strict := serializer.NewCodecFactory(manifestScheme, serializer.EnableStrict).UniversalDeserializer()
	r := rendered{other: map[string]int{}}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(y)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("splitting YAML: %v", err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("reading the kind of a document: %v\n%s", err, doc)
		}
		if tm.GroupVersionKind().Group == "cert-manager.io" {
			r.other[tm.Kind]++
			if tm.Kind == "Certificate" {
				var c struct {
					Spec struct {
						IsCA       bool   `json:"isCA"`
						SecretName string `json:"secretName"`
					} `json:"spec"`
				}
				if err := yaml.Unmarshal(doc, &c); err != nil {
					t.Fatalf("decoding a Certificate: %v\n%s", err, doc)
				}
				if c.Spec.IsCA {
					r.caCertificateSecrets = append(r.caCertificateSecrets, c.Spec.SecretName)
				}
			}
			continue
		}
		obj, _, err := strict.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("decoding %s: %v\n%s", tm.GroupVersionKind(), err, doc)
		}
		r.objects = append(r.objects, obj)
	}
	return r
}

func only[T runtime.Object](t testing.TB, r rendered) []T {
	t.Helper()
	var out []T
	for _, o := range r.objects {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func one[T runtime.Object](t *testing.T, r rendered) T {
	t.Helper()
	all := only[T](t, r)
	if len(all) != 1 {
		var zero T
		t.Fatalf("%d objects of type %T, want 1", len(all), zero)
	}
	return all[0]
}

// named returns the one object of type T with that namespace and name.
func named[T interface {
	runtime.Object
	metav1.Object
}](t testing.TB, r rendered, namespace, name string) T {
	t.Helper()
	for _, o := range only[T](t, r) {
		if o.GetNamespace() == namespace && o.GetName() == name {
			return o
		}
	}
	var zero T
	t.Fatalf("no %T %s/%s", zero, namespace, name)
	return zero
}

var overlays = []struct {
	dir          string
	provider     string
	certManager  bool
	wantCMKinds  map[string]int
	wantArgs     []string
	unwantedArgs []string
}{
	{dir: "overlays/gce", provider: "gce", wantArgs: []string{"--tls-secret=ipp-webhook-tls", "--cluster-name=my-cluster", "--gce-project=my-project"}},
	{dir: "overlays/ec2", provider: "ec2", wantArgs: []string{"--tls-secret=ipp-webhook-tls", "--cluster-name=my-cluster", "--ec2-instance-type=i3.metal"}},
	{
		dir: "overlays/cert-manager", provider: "gce", certManager: true,
		wantCMKinds:  map[string]int{"Issuer": 2, "Certificate": 2},
		wantArgs:     []string{"--tls-cert-file=/etc/ipp/tls/tls.crt", "--tls-private-key-file=/etc/ipp/tls/tls.key"},
		unwantedArgs: []string{"--tls-secret=ipp-webhook-tls"},
	},
}

func TestBase(t *testing.T) {
	checkInvariants(t, decode(t, render(t, "base")))
}

func TestOverlays(t *testing.T) {
	for _, ov := range overlays {
		t.Run(ov.dir, func(t *testing.T) {
			r := decode(t, render(t, ov.dir))
			checkInvariants(t, r)
			if diff := cmp.Diff(ov.wantCMKinds, r.other, cmpEmptyMap); diff != "" {
				t.Errorf("cert-manager objects (-want +got):\n%s", diff)
			}

			d := one[*appsv1.Deployment](t, r)
			c := d.Spec.Template.Spec.Containers[0]
			if c.Image != "ipp:dev" {
				t.Errorf("image = %q, want the overlay's ipp:dev", c.Image)
			}
			args := c.Args
			// Every argument is a flag that ipp knows.
			sub, rest, err := app.NewRootCommand().Find(args)
			if err != nil || sub.Name() != "run" {
				t.Fatalf("args %q: not `ipp run`: %v", args, err)
			}
			if err := sub.ParseFlags(rest); err != nil {
				t.Errorf("ipp run does not accept the Deployment's args: %v", err)
			}
			for _, want := range append([]string{"--provider=" + ov.provider}, ov.wantArgs...) {
				if !slices.Contains(args, want) {
					t.Errorf("args %q lack %s", args, want)
				}
			}
			for _, unwanted := range ov.unwantedArgs {
				if slices.Contains(args, unwanted) {
					t.Errorf("args %q have %s", args, unwanted)
				}
			}

			mw := one[*admissionregistrationv1.MutatingWebhookConfiguration](t, r)
			vw := one[*admissionregistrationv1.ValidatingWebhookConfiguration](t, r)
			role := named[*rbacv1.Role](t, r, "ipp-system", "ipp")
			clusterRole := named[*rbacv1.ClusterRole](t, r, "", "ipp")
			secretRules := 0
			for _, rule := range role.Rules {
				if slices.Contains(rule.Resources, "secrets") {
					secretRules++
				}
			}
			if ov.certManager {
				for _, o := range []metav1.Object{mw, vw} {
					if got := o.GetAnnotations()["cert-manager.io/inject-ca-from"]; got != "ipp-system/ipp-serving" {
						t.Errorf("%s inject-ca-from = %q, want ipp-system/ipp-serving", o.GetName(), got)
					}
				}
				if secretRules != 0 {
					t.Errorf("with cert-manager the Role still grants Secrets")
				}
				// The overlay's patch replaces the ClusterRole's rules: they must be the base's
				// without the webhook configurations.
				base := named[*rbacv1.ClusterRole](t, decode(t, render(t, "base")), "", "ipp")
				want := slices.DeleteFunc(slices.Clone(base.Rules), func(rule rbacv1.PolicyRule) bool {
					return slices.Contains(rule.APIGroups, "admissionregistration.k8s.io")
				})
				if diff := cmp.Diff(want, clusterRole.Rules); diff != "" {
					t.Errorf("with cert-manager the ClusterRole's rules are not the base's less the webhook configurations (-want +got):\n%s", diff)
				}
				// Likewise the Role's: the base's without the Secrets.
				baseRole := named[*rbacv1.Role](t, decode(t, render(t, "base")), "ipp-system", "ipp")
				wantRole := slices.DeleteFunc(slices.Clone(baseRole.Rules), func(rule rbacv1.PolicyRule) bool {
					return slices.Contains(rule.Resources, "secrets")
				})
				if diff := cmp.Diff(wantRole, role.Rules); diff != "" {
					t.Errorf("with cert-manager the Role's rules are not the base's less the Secrets (-want +got):\n%s", diff)
				}
				if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/etc/ipp/tls" || !c.VolumeMounts[0].ReadOnly {
					t.Errorf("volume mounts = %+v, want the serving Secret read-only at /etc/ipp/tls", c.VolumeMounts)
				}
			} else if secretRules != 3 {
				t.Errorf("Role has %d Secret rules, want 3 (create; get/list/watch/update of the serving Secret and get/update of the CA Secret, by name)", secretRules)
			}
		})
	}
}

var cmpEmptyMap = cmp.FilterValues(func(a, b map[string]int) bool { return len(a) == 0 && len(b) == 0 }, cmp.Ignore())

// checkInvariants checks what every rendering must hold.
func checkInvariants(t *testing.T, r rendered) {
	t.Helper()
	ns := one[*corev1.Namespace](t, r)
	if ns.Name != "ipp-system" {
		t.Errorf("namespace %s, want ipp-system", ns.Name)
	}
	// The base has no kustomize namespace: every object names its own, and only the join
	// tokens' Role and RoleBinding are outside ipp-system.
	for _, o := range r.objects {
		m, ok := o.(metav1.Object)
		if !ok {
			continue
		}
		want := "ipp-system"
		switch o.(type) {
		case *corev1.Namespace, *rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding, *schedulingv1.PriorityClass,
			*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfiguration,
			*admissionregistrationv1.ValidatingAdmissionPolicy, *admissionregistrationv1.ValidatingAdmissionPolicyBinding,
			*apiextensionsv1.CustomResourceDefinition:
			want = ""
		case *rbacv1.Role, *rbacv1.RoleBinding:
			if m.GetName() == "ipp-join-tokens" {
				want = "kube-system"
			}
		}
		if m.GetNamespace() != want {
			t.Errorf("%T %s is in namespace %q, want %q", o, m.GetName(), m.GetNamespace(), want)
		}
	}

	checkWebhooks(t, r)
	checkDeployment(t, r)
	checkNoCAKeyMounted(t, r)
	checkRBAC(t, r)
	checkNodeCredentials(t, r)
	checkJoinTokenPolicy(t, r)
	checkNodePolicy(t, r)
	checkPodPolicy(t, r)
	checkPlacement(t, r)
	checkCRDs(t, r)
}

func checkWebhooks(t *testing.T, r rendered) {
	t.Helper()
	svc := one[*corev1.Service](t, r)
	mw := one[*admissionregistrationv1.MutatingWebhookConfiguration](t, r)
	vw := one[*admissionregistrationv1.ValidatingWebhookConfiguration](t, r)
	if mw.Name != "ipp" || vw.Name != "ipp" {
		t.Errorf("webhook configurations %s/%s, want ipp/ipp (the names RBAC and --*-webhook-configuration use)", mw.Name, vw.Name)
	}
	type common struct {
		name      string
		path      string
		cc        admissionregistrationv1.WebhookClientConfig
		rules     []admissionregistrationv1.RuleWithOperations
		fail      *admissionregistrationv1.FailurePolicyType
		side      *admissionregistrationv1.SideEffectClass
		timeout   *int32
		versions  []string
		nsSel     *metav1.LabelSelector
		objectSel *metav1.LabelSelector
		conds     []admissionregistrationv1.MatchCondition
	}
	var all []common
	for _, w := range mw.Webhooks {
		all = append(all, common{w.Name, "/mutate", w.ClientConfig, w.Rules, w.FailurePolicy, w.SideEffects, w.TimeoutSeconds, w.AdmissionReviewVersions, w.NamespaceSelector, w.ObjectSelector, w.MatchConditions})
	}
	for _, w := range vw.Webhooks {
		all = append(all, common{w.Name, "/validate", w.ClientConfig, w.Rules, w.FailurePolicy, w.SideEffects, w.TimeoutSeconds, w.AdmissionReviewVersions, w.NamespaceSelector, w.ObjectSelector, w.MatchConditions})
	}
	if len(all) != 2 {
		t.Fatalf("%d webhooks, want one mutating and one validating", len(all))
	}
	wantRules := []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
		Rule: admissionregistrationv1.Rule{
			APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"},
			Scope: ptr(admissionregistrationv1.NamespacedScope),
		},
	}}
	wantNS := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"ipp-system", "kube-system"},
	}}}
	// The only requests that skip the webhooks are the ipp ServiceAccount's Pod UPDATEs, which the
	// policy ipp-pods restricts to the placement: the same username, and the policy bound.
	sa := one[*corev1.ServiceAccount](t, r)
	user := "system:serviceaccount:" + sa.Namespace + ":" + sa.Name
	if user != ServiceAccountUser {
		t.Errorf("ServiceAccount %s, want ServiceAccountUser %s", user, ServiceAccountUser)
	}
	wantConds := []admissionregistrationv1.MatchCondition{{
		Name:       "not-ipp-placement",
		Expression: "!(request.operation == 'UPDATE' && request.userInfo.username == '" + user + "')",
	}}
	pol := named[*admissionregistrationv1.ValidatingAdmissionPolicy](t, r, "", "ipp-pods")
	if want := "request.userInfo.username == '" + user + "'"; len(pol.Spec.MatchConditions) != 1 || pol.Spec.MatchConditions[0].Expression != want {
		t.Errorf("policy ipp-pods: matchConditions %v, want the one %q: the webhooks skip that user's UPDATEs because this policy restricts them", pol.Spec.MatchConditions, want)
	}
	named[*admissionregistrationv1.ValidatingAdmissionPolicyBinding](t, r, "", "ipp-pods")
	for _, w := range all {
		if diff := cmp.Diff(wantConds, w.conds); diff != "" {
			t.Errorf("%s: matchConditions (-want +got):\n%s", w.name, diff)
		}
		if w.fail == nil || *w.fail != admissionregistrationv1.Fail {
			t.Errorf("%s: failurePolicy %v, want Fail", w.name, w.fail)
		}
		if w.side == nil || *w.side != admissionregistrationv1.SideEffectClassNone {
			t.Errorf("%s: sideEffects %v, want None", w.name, w.side)
		}
		if w.timeout == nil || *w.timeout != 5 {
			t.Errorf("%s: timeoutSeconds %v, want 5", w.name, w.timeout)
		}
		if diff := cmp.Diff([]string{"v1"}, w.versions); diff != "" {
			t.Errorf("%s: admissionReviewVersions (-want +got):\n%s", w.name, diff)
		}
		if diff := cmp.Diff(wantRules, w.rules); diff != "" {
			t.Errorf("%s: rules (-want +got):\n%s", w.name, diff)
		}
		if diff := cmp.Diff(wantNS, w.nsSel); diff != "" {
			t.Errorf("%s: namespaceSelector (-want +got):\n%s", w.name, diff)
		}
		if w.objectSel != nil && (len(w.objectSel.MatchLabels) > 0 || len(w.objectSel.MatchExpressions) > 0) {
			t.Errorf("%s: has an objectSelector %v; a Pod could skip the webhook by its labels", w.name, w.objectSel)
		}
		s := w.cc.Service
		if w.cc.URL != nil || s == nil || s.Namespace != "ipp-system" || s.Name != svc.Name || s.Path == nil || *s.Path != w.path {
			t.Errorf("%s: clientConfig %+v, want service ipp-system/%s path %s", w.name, w.cc, svc.Name, w.path)
			continue
		}
		port := int32(443)
		if s.Port != nil {
			port = *s.Port
		}
		found := false
		for _, p := range svc.Spec.Ports {
			if p.Port == port && p.TargetPort == intstr.FromString("https") {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: Service %s has no port %d to targetPort https", w.name, svc.Name, port)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func checkDeployment(t *testing.T, r rendered) {
	t.Helper()
	d := one[*appsv1.Deployment](t, r)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", d.Spec.Replicas)
	}
	pod := d.Spec.Template.Spec
	if pod.ServiceAccountName != "ipp" {
		t.Errorf("serviceAccountName %q, want ipp", pod.ServiceAccountName)
	}
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v, want runAsNonRoot and seccomp RuntimeDefault", psc)
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Errorf("pod uses host namespaces")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatalf("container has no securityContext")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Errorf("container: readOnlyRootFilesystem not true")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("container: allowPrivilegeEscalation not false")
	case sc.Privileged != nil && *sc.Privileged:
		t.Errorf("container: privileged")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("container: capabilities %+v, want drop [ALL] and nothing added", sc.Capabilities)
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Errorf("container: runAsNonRoot not true")
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("container: seccompProfile not RuntimeDefault")
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[res]; !ok {
			t.Errorf("container: no %s request", res)
		}
		if _, ok := c.Resources.Limits[res]; !ok {
			t.Errorf("container: no %s limit", res)
		}
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["https"] != 8443 || ports["metrics"] == 0 {
		t.Errorf("container ports %v, want https 8443 and a metrics port", ports)
	}
	for _, probe := range []struct {
		name string
		p    *corev1.Probe
		path string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if probe.p == nil || probe.p.HTTPGet == nil || probe.p.HTTPGet.Path != probe.path || probe.p.HTTPGet.Scheme != corev1.URISchemeHTTPS || probe.p.HTTPGet.Port != intstr.FromString("https") {
			t.Errorf("%s probe %+v, want HTTPS GET %s on port https", probe.name, probe.p, probe.path)
		}
	}
	if len(c.Args) == 0 || c.Args[0] != "run" {
		t.Errorf("args %q, want `ipp run ...`", c.Args)
	}
	if n := len(slices.DeleteFunc(slices.Clone(c.Args), func(a string) bool { return !strings.HasPrefix(a, "--cluster-name=") })); n > 1 {
		t.Errorf("args %q set --cluster-name %d times", c.Args, n)
	}
	if !slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--metrics-address=:") }) {
		t.Errorf("args %q lack --metrics-address", c.Args)
	}
	if !slices.Contains(c.Args, "--metrics-address=:"+strconv.Itoa(int(ports["metrics"]))) {
		t.Errorf("--metrics-address does not match the metrics port %d", ports["metrics"])
	}

	pdb := one[*policyv1.PodDisruptionBudget](t, r)
	if pdb.Spec.MinAvailable == nil || *pdb.Spec.MinAvailable != intstr.FromInt32(1) {
		t.Errorf("PDB minAvailable %v, want 1", pdb.Spec.MinAvailable)
	}
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("PDB selector %v does not select the Deployment's Pods", pdb.Spec.Selector)
	}
	svc := one[*corev1.Service](t, r)
	if !labels.Set(svc.Spec.Selector).AsSelector().Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("Service selector %v does not select the Deployment's Pods", svc.Spec.Selector)
	}
}

// checkNoCAKeyMounted checks that no Pod mounts a Secret that holds a CA's private key: ipp's CA
// Secret (--tls-ca-secret of a Deployment with --tls-secret), the Secret of a cert-manager CA
// Certificate, and any Secret in the manifests with a ca.key. A serving Pod that a breakout
// reaches then holds its own serving key at most, never what signs certificates the apiserver
// trusts.
func checkNoCAKeyMounted(t *testing.T, r rendered) {
	t.Helper()
	caSecrets := map[string]string{}
	for _, name := range r.caCertificateSecrets {
		caSecrets[name] = "a cert-manager CA Certificate's Secret"
	}
	for _, s := range only[*corev1.Secret](t, r) {
		if _, ok := s.Data["ca.key"]; ok {
			caSecrets[s.Name] = "a Secret with ca.key"
		}
		if _, ok := s.StringData["ca.key"]; ok {
			caSecrets[s.Name] = "a Secret with ca.key"
		}
	}
	for _, d := range only[*appsv1.Deployment](t, r) {
		for _, c := range d.Spec.Template.Spec.Containers {
			sub, rest, err := app.NewRootCommand().Find(c.Args)
			if err != nil {
				continue
			}
			if err := sub.ParseFlags(rest); err != nil {
				t.Errorf("Deployment %s: ipp %s does not accept its args: %v", d.Name, sub.Name(), err)
				continue
			}
			if f := sub.Flags().Lookup("tls-secret"); f == nil || f.Value.String() == "" {
				continue
			}
			caSecrets[sub.Flags().Lookup("tls-ca-secret").Value.String()] = "ipp's CA Secret (--tls-ca-secret)"
		}
	}
	if len(caSecrets) == 0 {
		t.Errorf("no Secret holding a CA key found: self-managed TLS or cert-manager's CA must be in every rendering")
	}
	for _, d := range only[*appsv1.Deployment](t, r) {
		for _, v := range d.Spec.Template.Spec.Volumes {
			var names []string
			if v.Secret != nil {
				names = append(names, v.Secret.SecretName)
			}
			if v.Projected != nil {
				for _, src := range v.Projected.Sources {
					if src.Secret != nil {
						names = append(names, src.Secret.Name)
					}
				}
			}
			for _, n := range names {
				if why, ok := caSecrets[n]; ok {
					t.Errorf("Deployment %s: volume %s mounts Secret %s, %s: the CA's private key would be on the disk of a serving Pod", d.Name, v.Name, n, why)
				}
			}
		}
	}
}

func checkRBAC(t *testing.T, r rendered) {
	t.Helper()
	check := func(kind, namespace, name string, rules []rbacv1.PolicyRule) {
		for _, rule := range rules {
			for _, field := range [][]string{rule.Verbs, rule.Resources, rule.APIGroups, rule.ResourceNames} {
				if slices.Contains(field, "*") {
					t.Errorf("%s %s: wildcard in %+v", kind, name, rule)
				}
			}
			for _, v := range []string{"escalate", "bind", "impersonate", "deletecollection"} {
				if slices.Contains(rule.Verbs, v) {
					t.Errorf("%s %s: verb %s in %+v", kind, name, v, rule)
				}
			}
			if len(rule.NonResourceURLs) > 0 {
				t.Errorf("%s %s: non-resource URLs %v", kind, name, rule.NonResourceURLs)
			}
			if slices.Contains(rule.Resources, "secrets") {
				switch namespace {
				case "":
					t.Errorf("%s %s: grants Secrets cluster-wide: %+v", kind, name, rule)
				case "kube-system":
					// The join tokens: create and delete, which the policy ipp-join-tokens
					// narrows; never a read, which would show every Secret in kube-system.
					if name != "ipp-join-tokens" || !slices.Equal(rule.Verbs, []string{"create", "delete"}) || len(rule.ResourceNames) > 0 {
						t.Errorf("%s %s/%s: Secrets in kube-system beyond create and delete: %+v", kind, namespace, name, rule)
					}
				default:
					// Only create may go without resourceNames (a name is not known when a
					// create is authorized); everything else is limited to the serving Secret
					// and the CA Secret, which is never listed or watched.
					if len(rule.ResourceNames) == 0 && !slices.Equal(rule.Verbs, []string{"create"}) {
						t.Errorf("%s %s: Secrets without resourceNames: %+v", kind, name, rule)
					}
					switch {
					case len(rule.ResourceNames) == 0, slices.Equal(rule.ResourceNames, []string{"ipp-webhook-tls"}):
					case slices.Equal(rule.ResourceNames, []string{"ipp-webhook-ca"}):
						if !slices.Equal(rule.Verbs, []string{"get", "update"}) {
							t.Errorf("%s %s: the CA Secret with verbs %v, want get and update only (an informer on it would keep the CA key in memory)", kind, name, rule.Verbs)
						}
					default:
						t.Errorf("%s %s: Secrets other than ipp-webhook-tls and ipp-webhook-ca: %+v", kind, name, rule)
					}
				}
			}
			// ConfigMaps: only the join token journal, in the controller's namespace
			// (checkNodeCredentials checks the rules).
			if slices.Contains(rule.Resources, "configmaps") && (kind != "Role" || namespace != "ipp-system" || name != "ipp") {
				t.Errorf("%s %s/%s: ConfigMaps outside the Role ipp-system/ipp: %+v", kind, namespace, name, rule)
			}
			if slices.Contains(rule.Resources, "signers") && !slices.Equal(rule.ResourceNames, []string{"kubernetes.io/kube-apiserver-client-kubelet"}) {
				t.Errorf("%s %s: signers other than the kubelet client's: %+v", kind, name, rule)
			}
			if slices.Contains(rule.APIGroups, "admissionregistration.k8s.io") && !slices.Equal(rule.ResourceNames, []string{"ipp"}) {
				t.Errorf("%s %s: webhook configurations without resourceNames [ipp]: %+v", kind, name, rule)
			}
			// Pods: read, and patch (placement, which the policy ipp-pods narrows) by the
			// ClusterRole ipp only; never create, update or delete, nor a subresource.
			if slices.Contains(rule.Resources, "pods") && slices.ContainsFunc(rule.Verbs, func(v string) bool {
				return v != "get" && v != "list" && v != "watch" && (v != "patch" || kind != "ClusterRole" || name != "ipp")
			}) {
				t.Errorf("%s %s: writes Pods beyond patch: %+v", kind, name, rule)
			}
			if slices.ContainsFunc(rule.Resources, func(r string) bool { return strings.HasPrefix(r, "pods/") }) {
				t.Errorf("%s %s: a Pod subresource: %+v", kind, name, rule)
			}
		}
	}
	for _, cr := range only[*rbacv1.ClusterRole](t, r) {
		check("ClusterRole", "", cr.Name, cr.Rules)
	}
	checkWebhookWatches(t, named[*rbacv1.ClusterRole](t, r, "", "ipp").Rules)
	for _, role := range only[*rbacv1.Role](t, r) {
		check("Role", role.Namespace, role.Name, role.Rules)
		if role.Namespace != "ipp-system" {
			continue
		}
		// The controller's Lease is the only one it may read or renew.
		lease := false
		for _, rule := range role.Rules {
			if slices.Contains(rule.Resources, "leases") && slices.Contains(rule.Verbs, "update") {
				lease = slices.Equal(rule.ResourceNames, []string{"ipp-controller"})
			}
		}
		if !lease {
			t.Errorf("Role %s: no get/update on the Lease ipp-controller by name", role.Name)
		}
	}
	// Every binding binds the ipp ServiceAccount, which exists, to a role that exists; but
	// ipp-node-bootstrappers, which checkNodeCredentials checks.
	sa := one[*corev1.ServiceAccount](t, r)
	subjectOK := func(s []rbacv1.Subject) bool {
		return len(s) == 1 && s[0].Kind == "ServiceAccount" && s[0].Name == sa.Name && s[0].Namespace == sa.Namespace
	}
	for _, b := range only[*rbacv1.ClusterRoleBinding](t, r) {
		if b.Name == "ipp-node-bootstrappers" {
			continue
		}
		if !subjectOK(b.Subjects) || b.RoleRef.Kind != "ClusterRole" || !slices.ContainsFunc(only[*rbacv1.ClusterRole](t, r), func(c *rbacv1.ClusterRole) bool { return c.Name == b.RoleRef.Name }) {
			t.Errorf("ClusterRoleBinding %s: subjects %+v roleRef %+v", b.Name, b.Subjects, b.RoleRef)
		}
	}
	for _, b := range only[*rbacv1.RoleBinding](t, r) {
		if !subjectOK(b.Subjects) || b.RoleRef.Kind != "Role" || !slices.ContainsFunc(only[*rbacv1.Role](t, r), func(c *rbacv1.Role) bool { return c.Name == b.RoleRef.Name && c.Namespace == b.Namespace }) {
			t.Errorf("RoleBinding %s: subjects %+v roleRef %+v", b.Name, b.Subjects, b.RoleRef)
		}
	}
}

// TestIPPYAMLSH runs ipp.yaml.sh with its build command replaced by one that prints the
// kustomization it wrote, then renders that kustomization: the image must be the one given.
func TestIPPYAMLSH(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	dir := t.TempDir()
	printer := filepath.Join(dir, "print-kustomization")
	if err := os.WriteFile(printer, []byte("#!/bin/sh\ncat \"$1/kustomization.yaml\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		image, overlay, want string
	}{
		{"gcr.io/my-project/ipp:v0.1.0", "", "gcr.io/my-project/ipp:v0.1.0"},
		{"localhost:5000/ipp", "", "localhost:5000/ipp:latest"},
		{"registry.example.com:443/team/ipp:1.2", "ec2", "registry.example.com:443/team/ipp:1.2"},
		{"ipp@sha256:" + strings.Repeat("ab", 32), "cert-manager", "ipp@sha256:" + strings.Repeat("ab", 32)},
	}
	for _, tc := range tests {
		t.Run(tc.image, func(t *testing.T) {
			cmd := exec.Command("bash", "../ipp.yaml.sh", tc.image)
			cmd.Env = append(os.Environ(), "KUSTOMIZE="+printer, "IPP_OVERLAY="+tc.overlay)
			if tc.overlay == "" {
				cmd.Env = append(os.Environ(), "KUSTOMIZE="+printer)
			}
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("ipp.yaml.sh %s: %v", tc.image, err)
			}
			// ipp.yaml.sh renders from a directory in deploy/, next to the overlays.
			kdir, err := os.MkdirTemp(".", ".test-render-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(kdir) })
			if err := os.WriteFile(filepath.Join(kdir, "kustomization.yaml"), out, 0o644); err != nil {
				t.Fatal(err)
			}
			r := decode(t, render(t, kdir))
			checkInvariants(t, r)
			if got := one[*appsv1.Deployment](t, r).Spec.Template.Spec.Containers[0].Image; got != tc.want {
				t.Errorf("image = %q, want %q", got, tc.want)
			}
		})
	}
	for _, bad := range [][]string{{}, {"-h"}, {"a", "b"}, {"UPPER/ipp:1"}} {
		cmd := exec.Command("bash", append([]string{"../ipp.yaml.sh"}, bad...)...)
		cmd.Env = append(os.Environ(), "KUSTOMIZE="+printer)
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("ipp.yaml.sh %q succeeded:\n%s", bad, out)
		}
	}
	cmd := exec.Command("bash", "../ipp.yaml.sh", "ipp:1")
	cmd.Env = append(os.Environ(), "KUSTOMIZE="+printer, "IPP_OVERLAY=nope")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "no overlay nope") {
		t.Errorf("ipp.yaml.sh with IPP_OVERLAY=nope: err=%v\n%s", err, out)
	}
}

// checkWebhookWatches checks that the ClusterRole ipp lets the webhook's NodeClass check
// (--watch-node-classes, on by default) list and watch what it reads, NodeClasses and Namespaces,
// and grants nothing else on them: without list and watch the informers never sync and every IPP
// Pod is turned away; a write would let ipp change which namespaces may use a NodeClass.
func checkWebhookWatches(t *testing.T, rules []rbacv1.PolicyRule) {
	t.Helper()
	for _, res := range []struct{ group, resource string }{{"ipp.io", "nodeclasses"}, {"", "namespaces"}} {
		var verbs []string
		for _, rule := range rules {
			if slices.Contains(rule.APIGroups, res.group) && slices.Contains(rule.Resources, res.resource) {
				if len(rule.ResourceNames) > 0 {
					t.Errorf("ClusterRole ipp: %s narrowed to names %v: an informer lists them all", res.resource, rule.ResourceNames)
				}
				verbs = append(verbs, rule.Verbs...)
			}
		}
		slices.Sort(verbs)
		if want := []string{"get", "list", "watch"}; !slices.Equal(verbs, want) {
			t.Errorf("ClusterRole ipp: verbs %v on %s.%s, want %v (the webhook's --watch-node-classes)", verbs, res.resource, res.group, want)
		}
	}
}
