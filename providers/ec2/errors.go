package ec2

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go"

	"github.com/ipp-project/ipp/pkg/cloudprovider"
)

// EC2 error codes the provider branches on. See
// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html.
const (
	codeInsufficientInstanceCapacity = "InsufficientInstanceCapacity"
	codeInstanceIDNotFound           = "InvalidInstanceID.NotFound"
	codeUnsupported                  = "Unsupported"
)

// nextSubnetCodes are RunInstances errors that say "not here": the subnet's availability zone
// has no capacity for the type, or does not offer it, or the subnet has no free address. Another
// subnet, usually in another zone, may succeed.
var nextSubnetCodes = map[string]bool{
	codeInsufficientInstanceCapacity:       true,
	"InsufficientHostCapacity":             true,
	"InsufficientReservedInstanceCapacity": true,
	"InsufficientCapacity":                 true,
	"InsufficientFreeAddressesInSubnet":    true,
	codeUnsupported:                        true,
}

// codeKinds maps the EC2 error codes that have a kind of their own. Codes not listed are Invalid
// for client errors and Transient for server errors (HTTP 5xx).
var codeKinds = map[string]cloudprovider.ErrorKind{
	// Throttling. The SDK's retryer has already backed off and retried these.
	"RequestLimitExceeded":  cloudprovider.KindRateLimited,
	"Throttling":            cloudprovider.KindRateLimited,
	"ThrottlingException":   cloudprovider.KindRateLimited,
	"RequestThrottled":      cloudprovider.KindRateLimited,
	"EC2ThrottledException": cloudprovider.KindRateLimited,

	// Capacity in a zone.
	codeInsufficientInstanceCapacity:       cloudprovider.KindCapacity,
	"InsufficientHostCapacity":             cloudprovider.KindCapacity,
	"InsufficientReservedInstanceCapacity": cloudprovider.KindCapacity,
	"InsufficientCapacity":                 cloudprovider.KindCapacity,
	"InsufficientFreeAddressesInSubnet":    cloudprovider.KindCapacity,

	// Account limits: retrying helps only once instances are freed or the limit is raised.
	"InstanceLimitExceeded":         cloudprovider.KindQuota,
	"VcpuLimitExceeded":             cloudprovider.KindQuota,
	"VolumeLimitExceeded":           cloudprovider.KindQuota,
	"MaxSpotInstanceCountExceeded":  cloudprovider.KindQuota,
	"ResourceLimitExceeded":         cloudprovider.KindQuota,
	"NetworkInterfaceLimitExceeded": cloudprovider.KindQuota,

	codeInstanceIDNotFound: cloudprovider.KindNotFound,

	// Server-side failures.
	"InternalError":      cloudprovider.KindTransient,
	"InternalFailure":    cloudprovider.KindTransient,
	"ServiceUnavailable": cloudprovider.KindTransient,
	"Unavailable":        cloudprovider.KindTransient,
}

// isNextSubnet reports whether a RunInstances error says to try the next subnet.
func isNextSubnet(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && nextSubnetCodes[apiErr.ErrorCode()]
}

// errorCode returns the EC2 error code in err, or "".
func errorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

// classify turns an error from the SDK into a *cloudprovider.Error for op, by the EC2 error code
// (never the message) and, for errors without a known code, the HTTP status. Context errors are
// returned wrapped but unclassified, as the Provider contract says.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", op, err)
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code := apiErr.ErrorCode()
		if kind, ok := codeKinds[code]; ok {
			return cloudprovider.NewError(kind, op, code, err)
		}
		if status := httpStatus(err); status >= 500 || apiErr.ErrorFault() == smithy.FaultServer {
			return cloudprovider.NewError(cloudprovider.KindTransient, op, code, err)
		} else if status == 429 {
			return cloudprovider.NewError(cloudprovider.KindRateLimited, op, code, err)
		}
		// Authentication, authorization, malformed or invalid parameters, an idempotency token
		// reused with other parameters: the same request will fail the same way.
		return cloudprovider.NewError(cloudprovider.KindInvalid, op, code, err)
	}
	var canceled *aws.RequestCanceledError
	if errors.As(err, &canceled) {
		return fmt.Errorf("%s: %w", op, err)
	}
	// No reply from EC2 after the SDK's retries (connection refused or reset, a reply that did
	// not parse), or no credentials yet: another try later may work.
	return cloudprovider.NewError(cloudprovider.KindTransient, op, "", err)
}

// httpStatus returns the HTTP status code of the reply that err came from, or 0.
func httpStatus(err error) int {
	var withStatus interface{ HTTPStatusCode() int }
	if errors.As(err, &withStatus) {
		return withStatus.HTTPStatusCode()
	}
	return 0
}
