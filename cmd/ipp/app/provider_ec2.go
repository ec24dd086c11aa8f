package app

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/providers/ec2"
)

// newEC2Factory returns the factory of the ec2 provider, with its own flags.
func newEC2Factory() providerFactory {
	o := &ec2Options{}
	return providerFactory{addFlags: o.addFlags, build: o.build}
}

// ec2Options are the --ec2-* flags.
type ec2Options struct {
	region           string
	instanceType     string
	launchTemplate   string
	subnetIDs        []string
	securityGroupIDs []string
	imageID          string
	endpoint         string
}

func (o *ec2Options) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.region, "ec2-region", "", "AWS region of the EC2 instances, such as us-east-1. Required with --provider=ec2.")
	fs.StringVar(&o.instanceType, "ec2-instance-type", ec2.DefaultInstanceType, "EC2 instance type of the dedicated nodes. Bare-metal types (*.metal) get a longer registration timeout. Overrides the launch template's type.")
	fs.StringVar(&o.launchTemplate, "ec2-launch-template", "", "EC2 launch template for the instances: its id (lt-...) or name, optionally with :<version>, :$Latest or :$Default. The flags below override its settings.")
	fs.StringSliceVar(&o.subnetIDs, "ec2-subnet-ids", nil, "Comma-separated subnet ids, tried in turn while a subnet's zone has no capacity for the instance type. Empty uses the launch template's subnet or the default VPC.")
	fs.StringSliceVar(&o.securityGroupIDs, "ec2-security-group-ids", nil, "Comma-separated security group ids of the instances. Empty uses the launch template's groups or the VPC's default group.")
	fs.StringVar(&o.imageID, "ec2-image-id", "", "AMI of the instances. Required unless --ec2-launch-template names one.")
	fs.StringVar(&o.endpoint, "ec2-endpoint", "", "Base URL of the EC2 API, for local emulators (e.g. http://127.0.0.1:8080). Empty uses the region's AWS endpoint. Credentials always come from the AWS SDK's default chain (AWS_ACCESS_KEY_ID and friends, shared config, instance or Pod roles).")
}

func (o *ec2Options) build(ctx context.Context, common providerCommon) (cloudprovider.Provider, error) {
	// ec2.Config takes an empty type for the default; the flag has the default already, so an
	// explicit empty one is a mistake. ec2.New checks the rest.
	if o.instanceType == "" {
		return nil, fmt.Errorf("--ec2-instance-type must not be empty")
	}
	p, err := ec2.New(ctx, ec2.Config{
		ClusterName:      common.ClusterName,
		Region:           o.region,
		InstanceType:     o.instanceType,
		LaunchTemplate:   o.launchTemplate,
		SubnetIDs:        trimIDs(o.subnetIDs),
		SecurityGroupIDs: trimIDs(o.securityGroupIDs),
		ImageID:          o.imageID,
		Endpoint:         o.endpoint,
		Renderer:         common.Renderer,
		Join:             common.Join,
	})
	if err != nil {
		return nil, flagError(ec2.ProviderName, ec2Flags, err)
	}
	return p, nil
}

// ec2Flags names the flag of each ec2.Config field that ec2.New may refuse.
var ec2Flags = map[string]string{
	"Region":           "ec2-region",
	"ImageID":          "ec2-image-id",
	"LaunchTemplate":   "ec2-launch-template",
	"SubnetIDs":        "ec2-subnet-ids",
	"SecurityGroupIDs": "ec2-security-group-ids",
}

// trimIDs trims the ids of a list flag; ec2.New refuses empty ones ("a,,b").
func trimIDs(ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		out = append(out, strings.TrimSpace(id))
	}
	return out
}
