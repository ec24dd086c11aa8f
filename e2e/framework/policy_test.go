package framework

import (
	"bytes"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/cel/openapi/resolver"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/kubernetes/pkg/generated/openapi"
	"sigs.k8s.io/yaml"

	"github.com/ipp-project/ipp/deploy"
)

// TestPodPolicyTypeChecks type-checks the policy ipp-pods (deploy.PodPolicy) against the Pod's
// OpenAPI schema as the API server does after creating it, with the apiserver's TypeChecker and
// Kubernetes' generated OpenAPI definitions: a warning would be left in the policy's
// status.typeChecking. deploy's tests evaluate the policy; only here is the schema at hand.
func TestPodPolicyTypeChecks(t *testing.T) {
	var p admissionregistrationv1.ValidatingAdmissionPolicy
	if err := yaml.UnmarshalStrict(bytes.Split(deploy.PodPolicy, []byte("\n---\n"))[0], &p); err != nil {
		t.Fatal(err)
	}
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(corev1.SchemeGroupVersion.WithKind("Pod"), meta.RESTScopeNamespace)
	checker := &validating.TypeChecker{
		SchemaResolver: resolver.NewDefinitionsSchemaResolver(openapi.GetOpenAPIDefinitions, scheme.Scheme),
		RestMapper:     mapper,
	}
	for _, w := range checker.Check(&p) {
		t.Errorf("%s: %s", w.FieldRef, w.Warning)
	}
}
