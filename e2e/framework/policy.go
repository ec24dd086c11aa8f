package framework

import (
	"bytes"
	"context"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// InstallPolicy creates the ValidatingAdmissionPolicy and its binding that manifest holds, as two
// YAML documents in that order (deploy.PodPolicy), and returns the function that deletes both.
func (cp *ControlPlane) InstallPolicy(ctx context.Context, manifest []byte) (remove func(context.Context) error, err error) {
	docs := bytes.Split(manifest, []byte("\n---\n"))
	if len(docs) != 2 {
		return nil, fmt.Errorf("a policy manifest has %d YAML documents, want the policy and its binding", len(docs))
	}
	var pol admissionregistrationv1.ValidatingAdmissionPolicy
	var bind admissionregistrationv1.ValidatingAdmissionPolicyBinding
	if err := yaml.UnmarshalStrict(docs[0], &pol); err != nil {
		return nil, fmt.Errorf("decoding the ValidatingAdmissionPolicy: %w", err)
	}
	if err := yaml.UnmarshalStrict(docs[1], &bind); err != nil {
		return nil, fmt.Errorf("decoding the ValidatingAdmissionPolicyBinding: %w", err)
	}
	ar := cp.Client.AdmissionregistrationV1()
	if _, err := ar.ValidatingAdmissionPolicies().Create(ctx, &pol, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating ValidatingAdmissionPolicy %s: %w", pol.Name, err)
	}
	remove = func(ctx context.Context) error {
		errB := ar.ValidatingAdmissionPolicyBindings().Delete(ctx, bind.Name, metav1.DeleteOptions{})
		errP := ar.ValidatingAdmissionPolicies().Delete(ctx, pol.Name, metav1.DeleteOptions{})
		if errB != nil {
			return errB
		}
		return errP
	}
	if _, err := ar.ValidatingAdmissionPolicyBindings().Create(ctx, &bind, metav1.CreateOptions{}); err != nil {
		_ = ar.ValidatingAdmissionPolicies().Delete(context.WithoutCancel(ctx), pol.Name, metav1.DeleteOptions{})
		return nil, fmt.Errorf("creating ValidatingAdmissionPolicyBinding %s: %w", bind.Name, err)
	}
	return remove, nil
}
