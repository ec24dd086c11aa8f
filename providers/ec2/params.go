package ec2

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// maxClientToken is EC2's limit on a ClientToken: 64 ASCII characters.
const maxClientToken = 64

// clientToken derives the RunInstances ClientToken for one attempt of one creation: one instance
// type in one subnet ("" for the default subnet).
//
// A retry of the same attempt (after a lost reply, by the SDK or by the controller) must send the
// same token, so that EC2 returns the instance it already started instead of starting another.
// Each instance type and subnet gets a token of its own because EC2 rejects a token reused with
// other parameters (IdempotentParameterMismatch); deriving it from the type and subnet
// themselves, not their positions in a list, keeps it so when a NodeClass's lists change between
// two tries. Tokens are scoped to the account and region, which several clusters may share, so
// the cluster name is part of the token. Everything is hashed, so that any key fits EC2's 64
// ASCII characters.
func clientToken(cluster, idempotencyKey, instanceType, subnet string) string {
	sum := sha256.Sum256([]byte(cluster + "\x00" + idempotencyKey + "\x00" + instanceType + "\x00" + subnet))
	// "ipp-" + 56 hex digits: 60 characters.
	return "ipp-" + hex.EncodeToString(sum[:28])
}

// parseLaunchTemplate parses "<id or name>[:<version>]" into a launch template specification.
// Ids start with "lt-"; anything else is a name. The version is a number, "$Latest" or "$Default";
// without one EC2 uses the template's default version.
func parseLaunchTemplate(s string) (*types.LaunchTemplateSpecification, error) {
	if s == "" {
		return nil, nil
	}
	ref, version, hasVersion := strings.Cut(s, ":")
	if ref == "" {
		return nil, fmt.Errorf("launch template %q: no id or name before the version", s)
	}
	spec := &types.LaunchTemplateSpecification{}
	if strings.HasPrefix(ref, "lt-") {
		spec.LaunchTemplateId = aws.String(ref)
	} else {
		spec.LaunchTemplateName = aws.String(ref)
	}
	if hasVersion {
		if version != "$Latest" && version != "$Default" {
			if n, err := strconv.ParseUint(version, 10, 64); err != nil || n == 0 {
				return nil, fmt.Errorf("launch template %q: version %q is not a positive number, $Latest or $Default", s, version)
			}
		}
		spec.Version = aws.String(version)
	}
	return spec, nil
}

// Default registration timeouts, from creation until the Node registers.
const (
	// DefaultRegistrationTimeout is for virtualised types, which reach a running kubelet in one
	// to three minutes; the margin covers slow image pulls and a kubeadm join that retries.
	DefaultRegistrationTimeout = 15 * time.Minute
	// DefaultMetalRegistrationTimeout is for bare-metal types (*.metal). EC2 gives them a whole
	// host, and its firmware, hardware checks and the OS boot take several minutes and sometimes
	// more than fifteen, on top of the join. A virtual machine's timeout would replace healthy
	// instances that are still booting, again and again.
	DefaultMetalRegistrationTimeout = 40 * time.Minute
)

// registrationTimeout returns the default registration timeout for an instance type.
func registrationTimeout(instanceType string) time.Duration {
	if isMetal(instanceType) {
		return DefaultMetalRegistrationTimeout
	}
	return DefaultRegistrationTimeout
}

// isMetal reports whether instanceType is a bare-metal type, such as i3.metal or m7i.metal-24xl.
func isMetal(instanceType string) bool {
	_, size, ok := strings.Cut(instanceType, ".")
	return ok && (size == "metal" || strings.HasPrefix(size, "metal-"))
}

// providerIDCommand prints aws:///<availability-zone>/<instance-id>, the providerID that the
// AWS cloud provider gives a Node, read from the instance metadata service with an IMDSv2 session
// token (the provider launches instances with IMDSv2 required). It is one shell command line, as
// bootstrap.Params.ProviderIDCommand wants.
const providerIDCommand = `imds_token=$(curl -sSf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' http://169.254.169.254/latest/api/token) && ` +
	`printf 'aws:///%s/%s' "$(curl -sSf -H "X-aws-ec2-metadata-token: $imds_token" http://169.254.169.254/latest/meta-data/placement/availability-zone)" ` +
	`"$(curl -sSf -H "X-aws-ec2-metadata-token: $imds_token" http://169.254.169.254/latest/meta-data/instance-id)"`

// ProviderID returns the providerID of an instance: aws:///<availability-zone>/<instance-id>.
func ProviderID(availabilityZone, instanceID string) string {
	return "aws:///" + availabilityZone + "/" + instanceID
}
