package app

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/providers/ec2"
)

func init() {
	o := &ec2Options{}
	providerFactories[ec2.ProviderName] = providerFactory{addFlags: o.addFlags, build: o.build}
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
	if o.region == "" {
		return nil, fmt.Errorf("--ec2-region is required with --provider=ec2")
	}
	if o.imageID == "" && o.launchTemplate == "" {
		return nil, fmt.Errorf("--ec2-image-id or --ec2-launch-template is required with --provider=ec2")
	}
	if o.instanceType == "" {
		return nil, fmt.Errorf("--ec2-instance-type must not be empty")
	}
	if err := ec2.CheckLaunchTemplate(o.launchTemplate); err != nil {
		return nil, fmt.Errorf("invalid --ec2-launch-template: %w", err)
	}
	subnets, err := nonEmpty("--ec2-subnet-ids", o.subnetIDs)
	if err != nil {
		return nil, err
	}
	groups, err := nonEmpty("--ec2-security-group-ids", o.securityGroupIDs)
	if err != nil {
		return nil, err
	}
	return ec2.New(ctx, ec2.Config{
		ClusterName:      common.ClusterName,
		Region:           o.region,
		InstanceType:     o.instanceType,
		LaunchTemplate:   o.launchTemplate,
		SubnetIDs:        subnets,
		SecurityGroupIDs: groups,
		ImageID:          o.imageID,
		Endpoint:         o.endpoint,
		Renderer:         common.Renderer,
		Join:             common.Join,
	})
}

// nonEmpty trims the ids of a list flag and refuses empty ones ("a,,b").
func nonEmpty(flag string, ids []string) ([]string, error) {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		id = strings.TrimSpace(id)
		if id == "" {
			return nil, fmt.Errorf("invalid %s %q: empty id", flag, strings.Join(ids, ","))
		}
		out = append(out, id)
	}
	return out, nil
}
