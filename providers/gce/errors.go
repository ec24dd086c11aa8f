package gce

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/googleapis/gax-go/v2/apierror"
	"google.golang.org/api/googleapi"

	"github.com/ipp-project/ipp/pkg/cloudprovider"
)

// Operation error codes (Operation.error.errors[].code) that decide what the caller does. GCE
// reports a lack of capacity and exhausted quota this way: the insert call itself succeeds and its
// operation ends DONE with the error.
const (
	codeZoneResourcePoolExhausted            = "ZONE_RESOURCE_POOL_EXHAUSTED"
	codeZoneResourcePoolExhaustedWithDetails = "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"
	codeQuotaExceeded                        = "QUOTA_EXCEEDED"
	codeResourceNotFound                     = "RESOURCE_NOT_FOUND"
	codeResourceAlreadyExists                = "RESOURCE_ALREADY_EXISTS"
)

// Reasons (error.errors[].reason) of googleapi error replies.
const (
	reasonRateLimitExceeded     = "rateLimitExceeded"
	reasonUserRateLimitExceeded = "userRateLimitExceeded"
	reasonQuotaExceeded         = "quotaExceeded"
	reasonNotFound              = "notFound"
	reasonAlreadyExists         = "alreadyExists"
	reasonResourceNotReady      = "resourceNotReady"
)

// operationError is an operation that ended DONE with errors.
type operationError struct {
	// Name is the operation's name.
	Name string
	// Codes are the codes of error.errors[], in order.
	Codes []string
	// HTTPStatus is the operation's httpErrorStatusCode, 0 if it gave none.
	HTTPStatus int
	// Message joins the errors' messages, for people.
	Message string
}

func (e *operationError) Error() string {
	return fmt.Sprintf("operation %s failed: %s", e.Name, e.Message)
}

// operationErrorOf returns the errors that op ended with, or nil if it has none.
func operationErrorOf(op *computepb.Operation) *operationError {
	errs := op.GetError().GetErrors()
	if len(errs) == 0 {
		return nil
	}
	e := &operationError{Name: op.GetName(), HTTPStatus: int(op.GetHttpErrorStatusCode())}
	msgs := make([]string, 0, len(errs))
	for _, oe := range errs {
		e.Codes = append(e.Codes, oe.GetCode())
		msgs = append(msgs, oe.GetCode()+": "+oe.GetMessage())
	}
	e.Message = strings.Join(msgs, "; ")
	return e
}

// errorKindOfCode maps an operation error code or a googleapi reason to a kind. It reports false
// for a code that does not decide the kind by itself.
func errorKindOfCode(code string) (cloudprovider.ErrorKind, bool) {
	switch code {
	case codeZoneResourcePoolExhausted, codeZoneResourcePoolExhaustedWithDetails:
		return cloudprovider.KindCapacity, true
	case codeQuotaExceeded, reasonQuotaExceeded:
		return cloudprovider.KindQuota, true
	case reasonRateLimitExceeded, reasonUserRateLimitExceeded:
		return cloudprovider.KindRateLimited, true
	case codeResourceNotFound, reasonNotFound:
		return cloudprovider.KindNotFound, true
	case reasonResourceNotReady:
		// The instance is busy, being created or deleted; it settles by itself.
		return cloudprovider.KindTransient, true
	}
	return "", false
}

// errorKindOfHTTPStatus maps an HTTP status to a kind.
func errorKindOfHTTPStatus(status int) cloudprovider.ErrorKind {
	switch {
	case status == http.StatusTooManyRequests:
		return cloudprovider.KindRateLimited
	case status == http.StatusNotFound:
		return cloudprovider.KindNotFound
	case status == http.StatusRequestTimeout, status == http.StatusConflict, status >= 500:
		return cloudprovider.KindTransient
	case status >= 400:
		return cloudprovider.KindInvalid
	}
	return cloudprovider.KindTransient
}

// classify returns the kind of err and the cloud's code for it. Errors that carry no code from
// the cloud (a broken connection, a reply lost in transit) are transient.
func classify(err error) (cloudprovider.ErrorKind, string) {
	var oe *operationError
	if errors.As(err, &oe) {
		for _, c := range oe.Codes {
			if k, ok := errorKindOfCode(c); ok {
				return k, c
			}
		}
		code := ""
		if len(oe.Codes) > 0 {
			code = oe.Codes[0]
		}
		if oe.HTTPStatus != 0 {
			return errorKindOfHTTPStatus(oe.HTTPStatus), code
		}
		return cloudprovider.KindTransient, code
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		for _, item := range ge.Errors {
			if k, ok := errorKindOfCode(item.Reason); ok {
				return k, item.Reason
			}
		}
		code := strconv.Itoa(ge.Code)
		if len(ge.Errors) > 0 && ge.Errors[0].Reason != "" {
			code = ge.Errors[0].Reason
		}
		return errorKindOfHTTPStatus(ge.Code), code
	}
	var ae *apierror.APIError
	if errors.As(err, &ae) {
		if k, ok := errorKindOfCode(ae.Reason()); ok {
			return k, ae.Reason()
		}
		if c := ae.HTTPCode(); c > 0 {
			return errorKindOfHTTPStatus(c), strconv.Itoa(c)
		}
	}
	return cloudprovider.KindTransient, ""
}

// isAlreadyExists reports whether err says that an instance of that name exists.
func isAlreadyExists(err error) bool {
	var oe *operationError
	if errors.As(err, &oe) {
		for _, c := range oe.Codes {
			if c == codeResourceAlreadyExists {
				return true
			}
		}
		return false
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		for _, item := range ge.Errors {
			if item.Reason == reasonAlreadyExists {
				return true
			}
		}
		return ge.Code == http.StatusConflict && len(ge.Errors) == 0
	}
	return false
}

// providerError wraps err, which happened doing what action says, as a *cloudprovider.Error of
// op. Context errors are returned as they are (wrapped with the action), as the Provider contract
// allows.
func providerError(op, action string, err error) error {
	wrapped := fmt.Errorf("%s: %w", action, err)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return wrapped
	}
	kind, code := classify(err)
	return cloudprovider.NewError(kind, op, code, wrapped)
}
