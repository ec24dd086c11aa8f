package framework

import (
	"context"
	"fmt"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"
)

// crdTimeout bounds the wait for a CRD to be Established, or gone.
const crdTimeout = time.Minute

// InstallCRD creates the CustomResourceDefinition in manifest (strictly decoded) and waits until
// it is Established. remove deletes it and waits until it is gone, with every object of its kind.
func (cp *ControlPlane) InstallCRD(ctx context.Context, manifest []byte) (remove func(context.Context) error, err error) {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(manifest, crd); err != nil {
		return nil, fmt.Errorf("decoding a CRD: %w", err)
	}
	ext, err := apiextensionsclient.NewForConfig(cp.AdminConfig)
	if err != nil {
		return nil, err
	}
	crds := ext.ApiextensionsV1().CustomResourceDefinitions()
	if _, err := crds.Create(ctx, crd, metav1.CreateOptions{FieldManager: "e2e"}); err != nil {
		return nil, fmt.Errorf("the apiserver refuses CRD %s: %w", crd.Name, err)
	}
	remove = func(ctx context.Context) error {
		if err := crds.Delete(ctx, crd.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting CRD %s: %w", crd.Name, err)
		}
		err := wait.PollUntilContextTimeout(ctx, PollInterval, crdTimeout, true, func(ctx context.Context) (bool, error) {
			_, err := crds.Get(ctx, crd.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return true, nil
			}
			return false, err
		})
		if err != nil {
			return fmt.Errorf("CRD %s is not gone: %w", crd.Name, err)
		}
		return nil
	}
	var last *apiextensionsv1.CustomResourceDefinition
	err = wait.PollUntilContextTimeout(ctx, PollInterval, crdTimeout, true, func(ctx context.Context) (bool, error) {
		if last, err = crds.Get(ctx, crd.Name, metav1.GetOptions{}); err != nil {
			return false, err
		}
		for _, c := range last.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		var conditions []apiextensionsv1.CustomResourceDefinitionCondition
		if last != nil {
			conditions = last.Status.Conditions
		}
		return remove, fmt.Errorf("CRD %s is not Established: %w (conditions %+v)", crd.Name, err, conditions)
	}
	return remove, nil
}
