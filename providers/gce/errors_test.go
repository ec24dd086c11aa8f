package gce

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"testing"

	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/google/go-cmp/cmp"
	"github.com/googleapis/gax-go/v2/apierror"
	"google.golang.org/api/googleapi"
	"google.golang.org/protobuf/proto"

	"github.com/ipp-project/ipp/pkg/cloudprovider"
)

func googleErr(code int, reasons ...string) *googleapi.Error {
	e := &googleapi.Error{Code: code, Message: "boom"}
	for _, r := range reasons {
		e.Errors = append(e.Errors, googleapi.ErrorItem{Reason: r, Message: "boom"})
	}
	return e
}

func failedOp(status int32, codes ...string) *computepb.Operation {
	op := &computepb.Operation{Name: proto.String("operation-1"), Status: computepb.Operation_DONE.Enum(), Error: &computepb.Error{}}
	if status != 0 {
		op.HttpErrorStatusCode = proto.Int32(status)
	}
	for _, c := range codes {
		op.Error.Errors = append(op.Error.Errors, &computepb.Errors{Code: proto.String(c), Message: proto.String("boom")})
	}
	return op
}

func TestClassify(t *testing.T) {
	wrappedAPIErr, ok := apierror.FromError(googleErr(503))
	if !ok {
		t.Fatal("apierror.FromError failed")
	}
	tests := []struct {
		name     string
		err      error
		wantKind cloudprovider.ErrorKind
		wantCode string
	}{
		{name: "429 rateLimitExceeded", err: googleErr(429, "rateLimitExceeded"), wantKind: cloudprovider.KindRateLimited, wantCode: "rateLimitExceeded"},
		{name: "403 rateLimitExceeded", err: googleErr(403, "rateLimitExceeded"), wantKind: cloudprovider.KindRateLimited, wantCode: "rateLimitExceeded"},
		{name: "403 userRateLimitExceeded", err: googleErr(403, "userRateLimitExceeded"), wantKind: cloudprovider.KindRateLimited, wantCode: "userRateLimitExceeded"},
		{name: "429 without reason", err: googleErr(429), wantKind: cloudprovider.KindRateLimited, wantCode: "429"},
		{name: "403 quotaExceeded", err: googleErr(403, "quotaExceeded"), wantKind: cloudprovider.KindQuota, wantCode: "quotaExceeded"},
		{name: "capacity as a reply reason", err: googleErr(503, "ZONE_RESOURCE_POOL_EXHAUSTED"), wantKind: cloudprovider.KindCapacity, wantCode: "ZONE_RESOURCE_POOL_EXHAUSTED"},
		{name: "404 notFound", err: googleErr(404, "notFound"), wantKind: cloudprovider.KindNotFound, wantCode: "notFound"},
		{name: "404 bare", err: googleErr(404), wantKind: cloudprovider.KindNotFound, wantCode: "404"},
		{name: "400 resourceNotReady", err: googleErr(400, "resourceNotReady"), wantKind: cloudprovider.KindTransient, wantCode: "resourceNotReady"},
		{name: "500 backendError", err: googleErr(500, "backendError"), wantKind: cloudprovider.KindTransient, wantCode: "backendError"},
		{name: "503", err: googleErr(503), wantKind: cloudprovider.KindTransient, wantCode: "503"},
		{name: "400 invalid", err: googleErr(400, "invalid"), wantKind: cloudprovider.KindInvalid, wantCode: "invalid"},
		{name: "403 forbidden", err: googleErr(403, "forbidden"), wantKind: cloudprovider.KindInvalid, wantCode: "forbidden"},
		{name: "wrapped googleapi error", err: fmt.Errorf("x: %w", googleErr(429, "rateLimitExceeded")), wantKind: cloudprovider.KindRateLimited, wantCode: "rateLimitExceeded"},
		{name: "apierror wrapping a 503", err: wrappedAPIErr, wantKind: cloudprovider.KindTransient, wantCode: "503"},
		{name: "operation ZONE_RESOURCE_POOL_EXHAUSTED", err: operationErrorOf(failedOp(503, "ZONE_RESOURCE_POOL_EXHAUSTED")), wantKind: cloudprovider.KindCapacity, wantCode: "ZONE_RESOURCE_POOL_EXHAUSTED"},
		{name: "operation ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", err: operationErrorOf(failedOp(503, "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS")), wantKind: cloudprovider.KindCapacity, wantCode: "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"},
		{name: "operation QUOTA_EXCEEDED", err: operationErrorOf(failedOp(403, "QUOTA_EXCEEDED")), wantKind: cloudprovider.KindQuota, wantCode: "QUOTA_EXCEEDED"},
		{name: "operation RESOURCE_NOT_FOUND", err: operationErrorOf(failedOp(404, "RESOURCE_NOT_FOUND")), wantKind: cloudprovider.KindNotFound, wantCode: "RESOURCE_NOT_FOUND"},
		{name: "operation code decided later in the list", err: operationErrorOf(failedOp(0, "SOMETHING", "QUOTA_EXCEEDED")), wantKind: cloudprovider.KindQuota, wantCode: "QUOTA_EXCEEDED"},
		{name: "operation unknown code with 400", err: operationErrorOf(failedOp(400, "INVALID_FIELD_VALUE")), wantKind: cloudprovider.KindInvalid, wantCode: "INVALID_FIELD_VALUE"},
		{name: "operation unknown code without status", err: operationErrorOf(failedOp(0, "INTERNAL_ERROR")), wantKind: cloudprovider.KindTransient, wantCode: "INTERNAL_ERROR"},
		{name: "connection dropped", err: &url.Error{Op: "Post", URL: "http://x", Err: io.EOF}, wantKind: cloudprovider.KindTransient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind, code := classify(tt.err)
			if diff := cmp.Diff([]string{string(tt.wantKind), tt.wantCode}, []string{string(kind), code}); diff != "" {
				t.Errorf("classify(%v) (-want +got):\n%s", tt.err, diff)
			}
			perr := providerError("create", "creating instance n", tt.err)
			if got := cloudprovider.KindOf(perr); got != tt.wantKind {
				t.Errorf("providerError kind = %q, want %q", got, tt.wantKind)
			}
			if !errors.Is(perr, tt.err) {
				t.Errorf("providerError(%v) does not wrap the cause", tt.err)
			}
		})
	}
}

func TestProviderErrorKeepsContextErrors(t *testing.T) {
	for _, cause := range []error{context.Canceled, context.DeadlineExceeded} {
		err := providerError("list", "listing instances", cause)
		if !errors.Is(err, cause) {
			t.Errorf("providerError(%v) = %v, does not wrap it", cause, err)
		}
		if kind := cloudprovider.KindOf(err); kind != "" {
			t.Errorf("providerError(%v) kind = %q, want a plain context error", cause, kind)
		}
	}
}

func TestIsAlreadyExists(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "409 alreadyExists", err: googleErr(409, "alreadyExists"), want: true},
		{name: "409 bare", err: googleErr(409), want: true},
		{name: "409 other reason", err: googleErr(409, "resourceInUseByAnotherResource"), want: false},
		{name: "operation RESOURCE_ALREADY_EXISTS", err: operationErrorOf(failedOp(409, "RESOURCE_ALREADY_EXISTS")), want: true},
		{name: "operation capacity", err: operationErrorOf(failedOp(503, "ZONE_RESOURCE_POOL_EXHAUSTED")), want: false},
		{name: "404", err: googleErr(404, "notFound"), want: false},
		{name: "other", err: io.EOF, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isAlreadyExists(tt.err); got != tt.want {
				t.Errorf("isAlreadyExists(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
