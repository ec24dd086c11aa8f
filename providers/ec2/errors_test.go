package ec2

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/ipp-project/ipp/pkg/cloudprovider"
)

// apiError builds an error shaped as the SDK returns it: the operation error around a response
// error with the HTTP status, around the API error with its code.
func apiError(status int, code string) error {
	return &smithy.OperationError{
		ServiceID:     "EC2",
		OperationName: "RunInstances",
		Err: &awshttp.ResponseError{
			ResponseError: &smithyhttp.ResponseError{
				Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
				Err:      &smithy.GenericAPIError{Code: code, Message: "message text is never matched"},
			},
			RequestID: "req-1",
		},
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantKind cloudprovider.ErrorKind
		wantCode string
	}{
		{"throttled", apiError(503, "RequestLimitExceeded"), cloudprovider.KindRateLimited, "RequestLimitExceeded"},
		{"throttled after the retryer gave up", &retry.MaxAttemptsError{Attempt: 5, Err: apiError(503, "RequestLimitExceeded")}, cloudprovider.KindRateLimited, "RequestLimitExceeded"},
		{"generic throttling", apiError(400, "Throttling"), cloudprovider.KindRateLimited, "Throttling"},
		{"429 without a known code", apiError(429, "SlowDownPlease"), cloudprovider.KindRateLimited, "SlowDownPlease"},
		{"instance capacity", apiError(500, "InsufficientInstanceCapacity"), cloudprovider.KindCapacity, "InsufficientInstanceCapacity"},
		{"host capacity", apiError(500, "InsufficientHostCapacity"), cloudprovider.KindCapacity, "InsufficientHostCapacity"},
		{"instance limit", apiError(400, "InstanceLimitExceeded"), cloudprovider.KindQuota, "InstanceLimitExceeded"},
		{"vcpu limit", apiError(400, "VcpuLimitExceeded"), cloudprovider.KindQuota, "VcpuLimitExceeded"},
		{"not found", apiError(400, "InvalidInstanceID.NotFound"), cloudprovider.KindNotFound, "InvalidInstanceID.NotFound"},
		{"internal", apiError(500, "InternalError"), cloudprovider.KindTransient, "InternalError"},
		{"unavailable", apiError(503, "Unavailable"), cloudprovider.KindTransient, "Unavailable"},
		{"unknown 5xx", apiError(502, "SomethingNew"), cloudprovider.KindTransient, "SomethingNew"},
		{"server fault", &smithy.GenericAPIError{Code: "X", Fault: smithy.FaultServer}, cloudprovider.KindTransient, "X"},
		{"auth", apiError(401, "AuthFailure"), cloudprovider.KindInvalid, "AuthFailure"},
		{"unauthorized", apiError(403, "UnauthorizedOperation"), cloudprovider.KindInvalid, "UnauthorizedOperation"},
		{"bad parameter", apiError(400, "InvalidParameterValue"), cloudprovider.KindInvalid, "InvalidParameterValue"},
		{"bad ami", apiError(400, "InvalidAMIID.NotFound"), cloudprovider.KindInvalid, "InvalidAMIID.NotFound"},
		{"token reused", apiError(400, "IdempotentParameterMismatch"), cloudprovider.KindInvalid, "IdempotentParameterMismatch"},
		{"malformed id", apiError(400, "InvalidInstanceID.Malformed"), cloudprovider.KindInvalid, "InvalidInstanceID.Malformed"},
		{"connection lost", &smithy.OperationError{ServiceID: "EC2", OperationName: "RunInstances", Err: errors.New("connection reset by peer")}, cloudprovider.KindTransient, ""},
		{"wrapped", fmt.Errorf("launching: %w", apiError(503, "RequestLimitExceeded")), cloudprovider.KindRateLimited, "RequestLimitExceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := classify("create", tt.err)
			var perr *cloudprovider.Error
			if !errors.As(err, &perr) {
				t.Fatalf("classify(%v) = %T %v, want a *cloudprovider.Error", tt.err, err, err)
			}
			if perr.Kind != tt.wantKind || perr.Code != tt.wantCode || perr.Op != "create" {
				t.Errorf("classify(%v) = kind %s code %q op %q, want kind %s code %q op create", tt.err, perr.Kind, perr.Code, perr.Op, tt.wantKind, tt.wantCode)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("classify(%v) does not wrap the original error", tt.err)
			}
		})
	}
}

func TestClassifyContext(t *testing.T) {
	for _, cause := range []error{context.Canceled, context.DeadlineExceeded} {
		for _, err := range []error{cause, &aws.RequestCanceledError{Err: cause}} {
			got := classify("list", err)
			if cloudprovider.KindOf(got) != "" || !errors.Is(got, cause) {
				t.Errorf("classify(%v) = %v, want the context error unclassified", err, got)
			}
		}
	}
	if classify("list", nil) != nil {
		t.Error("classify(nil) != nil")
	}
}

func TestIsNextSubnet(t *testing.T) {
	for code, want := range map[string]bool{
		"InsufficientInstanceCapacity":      true,
		"InsufficientHostCapacity":          true,
		"Unsupported":                       true,
		"InsufficientFreeAddressesInSubnet": true,
		"RequestLimitExceeded":              false,
		"InstanceLimitExceeded":             false,
		"InternalError":                     false,
	} {
		if got := isNextSubnet(apiError(500, code)); got != want {
			t.Errorf("isNextSubnet(%s) = %v, want %v", code, got, want)
		}
	}
}

// TestRetryer checks the SDK retryer's configuration: throttling and 5xx are retried, capacity
// errors are not (Create moves to the next subnet), and the back-off is capped.
func TestRetryer(t *testing.T) {
	r := newRetryer(4, 30e6)
	for code, want := range map[string]bool{
		"RequestLimitExceeded":         true,
		"InternalError":                true,
		"InsufficientInstanceCapacity": false,
		"Unsupported":                  false,
		"InvalidParameterValue":        false,
	} {
		status := 400
		switch code {
		case "RequestLimitExceeded", "InternalError", "InsufficientInstanceCapacity":
			status = 503
		}
		if got := r.IsErrorRetryable(apiError(status, code)); got != want {
			t.Errorf("retryable(%s) = %v, want %v", code, got, want)
		}
	}
	if r.MaxAttempts() != 4 {
		t.Errorf("MaxAttempts() = %d, want 4", r.MaxAttempts())
	}
	for attempt := 1; attempt < 10; attempt++ {
		d, err := r.RetryDelay(attempt, apiError(503, "RequestLimitExceeded"))
		if err != nil || d > 30e6 {
			t.Errorf("RetryDelay(%d) = %v, %v; want at most 30ms", attempt, d, err)
		}
	}
}
