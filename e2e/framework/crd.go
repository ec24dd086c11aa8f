package framework

import (
	"context"
	"errors"
	"fmt"
	"sync"
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

// crdUse counts the users of a CRD that UseCRD installed.
type crdUse struct {
	users  int
	remove func(context.Context) error
}

// UseCRD makes sure the CustomResourceDefinition in manifest is installed and Established, and
// returns release, which the caller calls when it no longer needs it. The first user installs
// it (if it is not there already: then it is left alone) and the last release removes what
// UseCRD installed, so that tests that run one after the other (one of which may install and
// delete the CRD itself) each find the cluster as they expect. Concurrent users share it.
func (cp *ControlPlane) UseCRD(ctx context.Context, manifest []byte) (release func(context.Context) error, err error) {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(manifest, crd); err != nil {
		return nil, fmt.Errorf("decoding a CRD: %w", err)
	}
	cp.crdMu.Lock()
	defer cp.crdMu.Unlock()
	if cp.crds == nil {
		cp.crds = map[string]*crdUse{}
	}
	use := cp.crds[crd.Name]
	if use == nil {
		use = &crdUse{}
		remove, err := cp.InstallCRD(ctx, manifest)
		switch {
		case apierrors.IsAlreadyExists(errors.Unwrap(err)):
			// Someone else's: theirs to remove.
		case err != nil:
			if remove != nil {
				_ = remove(context.WithoutCancel(ctx))
			}
			return nil, err
		default:
			use.remove = remove
		}
		cp.crds[crd.Name] = use
	}
	use.users++
	var once sync.Once
	return func(ctx context.Context) error {
		var err error
		once.Do(func() {
			cp.crdMu.Lock()
			defer cp.crdMu.Unlock()
			use.users--
			if use.users > 0 {
				return
			}
			delete(cp.crds, crd.Name)
			if use.remove != nil {
				err = use.remove(ctx)
			}
		})
		return err
	}, nil
}
