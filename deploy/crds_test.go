package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
)

// checkCRDs checks that a rendering installs every CRD that `make generate` writes to
// base/crds, unchanged but for kustomize's labels: a CRD generated for a new type but left out
// of base/kustomization.yaml would never be installed, and an overlay that patched a schema
// would drift from the Go types.
func checkCRDs(t *testing.T, r rendered) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("base", "crds", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rendered := map[string]*apiextensionsv1.CustomResourceDefinition{}
	for _, crd := range only[*apiextensionsv1.CustomResourceDefinition](t, r) {
		rendered[crd.Name] = crd
	}
	var generated []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var want apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(b, &want); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		generated = append(generated, want.Name)
		got, ok := rendered[want.Name]
		if !ok {
			t.Errorf("CRD %s of %s is not rendered: add it to base/kustomization.yaml", want.Name, f)
			continue
		}
		if diff := cmp.Diff(want.Spec, got.Spec); diff != "" {
			t.Errorf("CRD %s differs from %s, which `make generate` writes from pkg/apis (-want +got):\n%s", want.Name, f, diff)
		}
	}
	for name := range rendered {
		if !slices.Contains(generated, name) {
			t.Errorf("CRD %s is rendered but not generated in base/crds", name)
		}
	}
	if want := "nodeclasses." + ippv1alpha1.GroupName; !slices.Contains(generated, want) {
		t.Errorf("base/crds has no CRD %s (generated: %v)", want, generated)
	}
}
