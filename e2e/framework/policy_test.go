package framework

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/cel/openapi/resolver"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/kubernetes/pkg/generated/openapi"
	"sigs.k8s.io/yaml"
)

// TestPolicyTypeChecks type-checks every ValidatingAdmissionPolicy of deploy/base (ipp-pods,
// ipp-nodes, ipp-join-tokens) against the OpenAPI schema of the kinds it matches, as the API
// server does after creating it, with the apiserver's TypeChecker and Kubernetes' generated
// OpenAPI definitions: a warning would be left in the policy's status.typeChecking. deploy's
// tests evaluate the policies; only here is the schema at hand.
func TestPolicyTypeChecks(t *testing.T) {
	files, err := filepath.Glob("../../deploy/base/*-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Fatalf("found the policies %v in deploy/base; want ipp-pods, ipp-nodes and ipp-join-tokens", files)
	}
	mapper := meta.NewDefaultRESTMapper(nil)
	for _, kind := range []string{"Pod", "Secret"} {
		mapper.Add(corev1.SchemeGroupVersion.WithKind(kind), meta.RESTScopeNamespace)
	}
	mapper.Add(corev1.SchemeGroupVersion.WithKind("Node"), meta.RESTScopeRoot)
	checker := &validating.TypeChecker{
		SchemaResolver: resolver.NewDefinitionsSchemaResolver(openapi.GetOpenAPIDefinitions, scheme.Scheme),
		RestMapper:     mapper,
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var p admissionregistrationv1.ValidatingAdmissionPolicy
			if err := yaml.UnmarshalStrict(bytes.Split(b, []byte("\n---\n"))[0], &p); err != nil {
				t.Fatal(err)
			}
			if p.Kind != "ValidatingAdmissionPolicy" || len(p.Spec.Validations) == 0 {
				t.Fatalf("the first document of %s is a %s with %d validations; want the policy", f, p.Kind, len(p.Spec.Validations))
			}
			for _, w := range checker.Check(&p) {
				t.Errorf("%s: %s", w.FieldRef, w.Warning)
			}
		})
	}
}
