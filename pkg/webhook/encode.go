package webhook

import (
	"encoding/json"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The apiVersion and kind of an admission.k8s.io/v1 AdmissionReview.
var (
	reviewAPIVersion = admissionv1.SchemeGroupVersion.String()
	reviewKind       = "AdmissionReview"
)

// encodeReview returns the JSON of the AdmissionReview that answers with resp.
func encodeReview(resp *admissionv1.AdmissionResponse) ([]byte, error) {
	return json.Marshal(&admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: reviewAPIVersion, Kind: reviewKind},
		Response: resp,
	})
}
