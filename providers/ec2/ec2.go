// Package ec2 implements cloudprovider.Provider on Amazon EC2 with aws-sdk-go-v2.
//
// Each dedicated node is one instance started by RunInstances, tagged at launch (instance and
// volumes) with the ownership tags and Name=<dedicated node name>, with the rendered bootstrap as
// its user data. The instance types, subnets, AMI, security groups and instance profile come from
// the spec's NodeClass, or the Config where it leaves them empty; each type is tried in every
// subnet, in order, while EC2 reports no capacity. A ClientToken derived from the creation's
// idempotency key, the type and the subnet makes a retry after a lost reply return the instance
// already started. Bare-metal types (i3.metal, the default) are
// supported; they boot for minutes, which RegistrationTimeout accounts for.
package ec2

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	ec2sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"k8s.io/klog/v2"

	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	"github.com/ipp-project/ipp/pkg/bootstrap"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
)

// ProviderName is the provider's --provider value.
const ProviderName = "ec2"

// DefaultInstanceType is the instance type when Config.InstanceType is empty: bare metal, so that
// a CPU side channel cannot cross from another tenant's virtual machine either.
const DefaultInstanceType = "i3.metal"

// Defaults of the SDK retryer, which retries throttling, 5xx replies and connection failures of
// each call with exponential back-off and jitter, before the provider returns an error.
const (
	DefaultMaxAttempts = 5
	DefaultMaxBackoff  = 20 * time.Second
)

// maxUserData is EC2's limit on user data before base64 encoding.
const maxUserData = 16 * 1024

// Config configures the EC2 provider.
type Config struct {
	// ClusterName goes into the ownership tag ipp-cluster; List finds instances by it. Required.
	ClusterName string
	// Region is the AWS region, such as us-east-1. Required.
	Region string
	// InstanceType is the EC2 instance type of instances whose NodeClass names none; empty means
	// DefaultInstanceType. It overrides the launch template's type.
	InstanceType string
	// LaunchTemplate is "<id or name>[:<version>]": lt-0123456789abcdef0:3, my-nodes:$Latest,
	// my-nodes. Ids start with "lt-". Without a version EC2 uses the template's default version.
	LaunchTemplate string
	// SubnetIDs are tried in turn while EC2 reports no capacity (or no support for the instance
	// type) in a subnet's availability zone, for instances whose NodeClass names no subnets.
	// Empty uses the launch template's subnet, or the default VPC's default subnet.
	SubnetIDs []string
	// SecurityGroupIDs are the instance's security groups; empty uses the launch template's, or
	// the VPC's default group.
	SecurityGroupIDs []string
	// ImageID is the AMI. Required unless LaunchTemplate names one.
	ImageID string
	// Endpoint, when set, is the base URL of the EC2 API (a local emulator, a VPC endpoint).
	Endpoint string
	// Credentials, when set, replaces the SDK's default credential chain (environment, shared
	// files, web identity, ECS/EC2 roles). Emulators take static credentials.
	Credentials aws.CredentialsProvider
	// HTTPClient, when set, replaces the SDK's HTTP client.
	HTTPClient *http.Client
	// Renderer renders the user data; nil uses the default kubeadm-style script.
	Renderer *bootstrap.Renderer
	// Join is how the new node joins the cluster.
	Join bootstrap.Join
	// RegistrationTimeout is what RegistrationTimeout returns; zero picks a default by
	// instance type: DefaultMetalRegistrationTimeout for *.metal, DefaultRegistrationTimeout
	// otherwise.
	RegistrationTimeout time.Duration
	// MaxAttempts is how many times the SDK tries each call (throttling, 5xx, lost connections);
	// zero means DefaultMaxAttempts.
	MaxAttempts int
	// MaxBackoff caps the SDK's back-off between two tries of a call; zero means
	// DefaultMaxBackoff.
	MaxBackoff time.Duration

	// registrationTimeoutDefaulted says that complete chose RegistrationTimeout by instance type.
	registrationTimeoutDefaulted bool
}

// complete fills the defaults into c and checks what is required.
func (c *Config) complete() (*types.LaunchTemplateSpecification, error) {
	if c.ClusterName == "" {
		return nil, &cloudprovider.ConfigError{Fields: []string{"ClusterName"}, Missing: true, Err: errors.New("no cluster name")}
	}
	if c.Region == "" {
		return nil, &cloudprovider.ConfigError{Fields: []string{"Region"}, Missing: true, Err: errors.New("no region")}
	}
	if c.InstanceType == "" {
		c.InstanceType = DefaultInstanceType
	}
	lt, err := parseLaunchTemplate(c.LaunchTemplate)
	if err != nil {
		return nil, &cloudprovider.ConfigError{Fields: []string{"LaunchTemplate"}, Err: err}
	}
	if lt == nil && c.ImageID == "" {
		return nil, &cloudprovider.ConfigError{Fields: []string{"ImageID", "LaunchTemplate"}, Missing: true, Err: errors.New("neither an image id nor a launch template: the instance needs an AMI")}
	}
	if slices.Contains(c.SubnetIDs, "") {
		return nil, &cloudprovider.ConfigError{Fields: []string{"SubnetIDs"}, Err: fmt.Errorf("empty subnet id in %q", c.SubnetIDs)}
	}
	if slices.Contains(c.SecurityGroupIDs, "") {
		return nil, &cloudprovider.ConfigError{Fields: []string{"SecurityGroupIDs"}, Err: fmt.Errorf("empty security group id in %q", c.SecurityGroupIDs)}
	}
	if c.RegistrationTimeout < 0 || c.MaxAttempts < 0 || c.MaxBackoff < 0 {
		return nil, fmt.Errorf("negative registration timeout, attempts or back-off")
	}
	if c.RegistrationTimeout == 0 {
		c.RegistrationTimeout = registrationTimeout(c.InstanceType)
		c.registrationTimeoutDefaulted = true
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.Renderer == nil {
		if c.Renderer, err = bootstrap.NewRenderer(""); err != nil {
			return nil, err
		}
	}
	return lt, nil
}

// Provider is the EC2 cloudprovider.Provider.
type Provider struct {
	cfg            Config
	launchTemplate *types.LaunchTemplateSpecification
	api            api
}

var _ cloudprovider.Provider = &Provider{}

// New returns an EC2 provider for cfg. It makes no call to EC2; credentials are resolved at the
// first call.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	lt, err := cfg.complete()
	if err != nil {
		return nil, fmt.Errorf("configuring the ec2 provider: %w", err)
	}
	opts := []func(*config.LoadOptions) error{
		config.WithRegion(cfg.Region),
		config.WithRetryer(func() aws.Retryer { return newRetryer(cfg.MaxAttempts, cfg.MaxBackoff) }),
	}
	if cfg.Credentials != nil {
		opts = append(opts, config.WithCredentialsProvider(cfg.Credentials))
	}
	if cfg.HTTPClient != nil {
		opts = append(opts, config.WithHTTPClient(cfg.HTTPClient))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("loading the AWS configuration: %w", err)
	}
	client := ec2sdk.NewFromConfig(awsCfg, func(o *ec2sdk.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})
	return &Provider{cfg: cfg, launchTemplate: lt, api: client}, nil
}

// newRetryer returns the SDK's standard retryer (exponential back-off with jitter, a retry quota
// shared by all calls) with the given attempts and back-off cap. Capacity errors come back from
// EC2 as HTTP 500, which the standard retryer would retry in the same zone; Create moves to the
// next subnet or instance type instead, so they are not retried here.
func newRetryer(maxAttempts int, maxBackoff time.Duration) aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = maxAttempts
		o.MaxBackoff = maxBackoff
		notCapacity := retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
			if isNextSubnet(err) {
				return aws.FalseTernary
			}
			return aws.UnknownTernary
		})
		o.Retryables = append([]retry.IsErrorRetryable{notCapacity}, o.Retryables...)
	})
}

// Name returns "ec2".
func (p *Provider) Name() string { return ProviderName }

// RegistrationTimeout returns the configured timeout, or the instance type's default: long for
// bare metal.
func (p *Provider) RegistrationTimeout() time.Duration { return p.cfg.RegistrationTimeout }

// liveStates are the instance states that List returns and that make Create return an existing
// instance. A shutting-down instance counts: its kubelet may still be up under the node's name,
// so a second instance waits until the first is terminated.
var liveStates = []string{
	string(types.InstanceStateNamePending),
	string(types.InstanceStateNameRunning),
	string(types.InstanceStateNameStopping),
	string(types.InstanceStateNameStopped),
	string(types.InstanceStateNameShuttingDown),
}

// shape is what one creation asks for: the spec's NodeClass fields, and the Config's where the
// NodeClass leaves one empty.
type shape struct {
	// instanceTypes are tried in order, each in every subnet in order.
	instanceTypes []string
	// subnets are subnet ids; "" is the launch template's or the default VPC's default subnet.
	subnets        []string
	imageID        string
	securityGroups []string
	// instanceProfile is an IAM instance profile name or ARN; empty means the launch template's,
	// or none.
	instanceProfile string
}

// shapeOf resolves spec's shape.
func (p *Provider) shapeOf(spec cloudprovider.InstanceSpec) shape {
	e := spec.EC2
	if e == nil {
		e = &ippv1alpha1.EC2NodeClass{}
	}
	sh := shape{
		instanceTypes:   e.InstanceTypes,
		subnets:         e.Subnets,
		imageID:         e.AMI,
		securityGroups:  e.SecurityGroups,
		instanceProfile: e.InstanceProfile,
	}
	if len(sh.instanceTypes) == 0 {
		sh.instanceTypes = []string{p.cfg.InstanceType}
	}
	if len(sh.subnets) == 0 {
		sh.subnets = p.cfg.SubnetIDs
	}
	if len(sh.subnets) == 0 {
		sh.subnets = []string{""}
	}
	if sh.imageID == "" {
		sh.imageID = p.cfg.ImageID
	}
	if len(sh.securityGroups) == 0 {
		sh.securityGroups = p.cfg.SecurityGroupIDs
	}
	return sh
}

// RegistrationTimeoutFor returns the registration timeout of an instance of spec: the configured
// one if it was set, else the longest default of the spec's instance types (long for bare
// metal), since Create may fall back to any of them.
func (p *Provider) RegistrationTimeoutFor(spec cloudprovider.InstanceSpec) time.Duration {
	if !p.cfg.registrationTimeoutDefaulted {
		return p.cfg.RegistrationTimeout
	}
	var d time.Duration
	for _, t := range p.shapeOf(spec).instanceTypes {
		d = max(d, registrationTimeout(t))
	}
	return d
}

// Create implements cloudprovider.Provider. It returns the node's live instance if there is one.
// Otherwise it runs one instance, trying each instance type of the shape in every subnet in turn
// (every subnet of the first type, then of the next type) while EC2 reports no capacity; each
// attempt has a ClientToken of its own, derived from the idempotency key, the type and the
// subnet, so stable across retries.
func (p *Provider) Create(ctx context.Context, spec cloudprovider.InstanceSpec) (*cloudprovider.Instance, error) {
	if spec.NodeName == "" {
		return nil, cloudprovider.NewError(cloudprovider.KindInvalid, "create", "", fmt.Errorf("no node name"))
	}
	if spec.IdempotencyKey == "" {
		return nil, cloudprovider.NewError(cloudprovider.KindInvalid, "create", "", fmt.Errorf("creating instance for %s: no idempotency key", spec.NodeName))
	}
	logger := klog.LoggerWithValues(klog.FromContext(ctx), "node", spec.NodeName)

	existing, err := p.describe(ctx, []types.Filter{
		tagFilter(cloudprovider.TagCluster, p.cfg.ClusterName),
		tagFilter(cloudprovider.TagNode, spec.NodeName),
		{Name: aws.String("instance-state-name"), Values: liveStates},
	})
	if err != nil {
		return nil, classify("create", fmt.Errorf("looking for the instance of %s: %w", spec.NodeName, err))
	}
	if len(existing) > 0 {
		logger.V(4).Info("Instance already exists", "instance", existing[0].ID, "state", existing[0].State)
		return &existing[0], nil
	}

	userData, err := p.userData(spec)
	if err != nil {
		return nil, cloudprovider.NewError(cloudprovider.KindInvalid, "create", "", err)
	}
	sh := p.shapeOf(spec)
	var tried []string
	var lastErr error
	onlyUnsupported := true
	for _, instanceType := range sh.instanceTypes {
		for _, subnet := range sh.subnets {
			token := clientToken(p.cfg.ClusterName, spec.IdempotencyKey, instanceType, subnet)
			out, err := p.api.RunInstances(ctx, p.runInput(spec, sh, userData, instanceType, subnet, token))
			if err == nil {
				if len(out.Instances) == 0 {
					return nil, cloudprovider.NewError(cloudprovider.KindTransient, "create", "", fmt.Errorf("launching instance for %s: reply has no instance", spec.NodeName))
				}
				inst := toInstance(out.Instances[0])
				logger.V(2).Info("Launched instance", "instance", inst.ID, "providerID", inst.ProviderID, "instanceType", instanceType, "subnet", subnet)
				return &inst, nil
			}
			err = fmt.Errorf("launching %s instance for %s in subnet %q: %w", instanceType, spec.NodeName, subnet, err)
			if !isNextSubnet(err) {
				return nil, classify("create", err)
			}
			code := errorCode(err)
			logger.V(2).Info("No capacity for instance type in subnet, trying the next", "instanceType", instanceType, "subnet", subnet, "code", code)
			tried = append(tried, fmt.Sprintf("%s in %s: %s", instanceType, subnetName(subnet), code))
			onlyUnsupported = onlyUnsupported && code == codeUnsupported
			lastErr = err
		}
	}
	kind := cloudprovider.KindCapacity
	if onlyUnsupported {
		// No subnet's zone offers any of the types: waiting will not change that.
		kind = cloudprovider.KindInvalid
	}
	return nil, cloudprovider.NewError(kind, "create", errorCode(lastErr),
		fmt.Errorf("no instance type and subnet could launch an instance for %s (%s): %w", spec.NodeName, strings.Join(tried, "; "), lastErr))
}

func subnetName(s string) string {
	if s == "" {
		return "default subnet"
	}
	return s
}

// userData renders the bootstrap for spec, base64-encoded as RunInstances wants it.
func (p *Provider) userData(spec cloudprovider.InstanceSpec) (string, error) {
	script, err := p.cfg.Renderer.Render(bootstrap.Params{
		Join:              spec.Join(p.cfg.Join),
		NodeName:          spec.NodeName,
		Labels:            spec.NodeLabels,
		Taints:            spec.NodeTaints,
		ProviderIDCommand: providerIDCommand,
	})
	if err != nil {
		return "", err
	}
	if len(script) > maxUserData {
		return "", fmt.Errorf("rendering user data for %s: %d bytes, more than EC2's %d", spec.NodeName, len(script), maxUserData)
	}
	return base64.StdEncoding.EncodeToString([]byte(script)), nil
}

// ownershipTags are the tags of the instance and its volumes.
func (p *Provider) ownershipTags(spec cloudprovider.InstanceSpec) []types.Tag {
	tags := []types.Tag{
		{Key: aws.String("Name"), Value: aws.String(spec.NodeName)},
		{Key: aws.String(cloudprovider.TagCluster), Value: aws.String(p.cfg.ClusterName)},
		{Key: aws.String(cloudprovider.TagNode), Value: aws.String(spec.NodeName)},
		{Key: aws.String(cloudprovider.TagClass), Value: aws.String(spec.Class)},
		{Key: aws.String(cloudprovider.TagNamespace), Value: aws.String(spec.Namespace)},
	}
	if spec.NodeClass != "" {
		tags = append(tags, types.Tag{Key: aws.String(cloudprovider.TagNodeClass), Value: aws.String(spec.NodeClass)})
	}
	if spec.JoinTokenID != "" {
		tags = append(tags, types.Tag{Key: aws.String(cloudprovider.TagJoinToken), Value: aws.String(spec.JoinTokenID)})
	}
	return tags
}

// runInput builds the RunInstances request of one attempt: one instance type in one subnet.
func (p *Provider) runInput(spec cloudprovider.InstanceSpec, sh shape, userData, instanceType, subnet, token string) *ec2sdk.RunInstancesInput {
	tags := p.ownershipTags(spec)
	in := &ec2sdk.RunInstancesInput{
		MinCount:       aws.Int32(1),
		MaxCount:       aws.Int32(1),
		ClientToken:    aws.String(token),
		InstanceType:   types.InstanceType(instanceType),
		LaunchTemplate: p.launchTemplate,
		UserData:       aws.String(userData),
		TagSpecifications: []types.TagSpecification{
			{ResourceType: types.ResourceTypeInstance, Tags: tags},
			{ResourceType: types.ResourceTypeVolume, Tags: tags},
		},
	}
	if sh.imageID != "" {
		in.ImageId = aws.String(sh.imageID)
	}
	if subnet != "" {
		in.SubnetId = aws.String(subnet)
	}
	if len(sh.securityGroups) > 0 {
		in.SecurityGroupIds = sh.securityGroups
	}
	if prof := sh.instanceProfile; strings.HasPrefix(prof, "arn:") {
		in.IamInstanceProfile = &types.IamInstanceProfileSpecification{Arn: aws.String(prof)}
	} else if prof != "" {
		in.IamInstanceProfile = &types.IamInstanceProfileSpecification{Name: aws.String(prof)}
	}
	if p.launchTemplate == nil {
		// The bootstrap reads the providerID over IMDSv2; requiring it keeps Pods' containers from
		// using the simpler, SSRF-prone IMDSv1, and a hop limit of 1 keeps IMDSv2's token
		// replies from reaching a Pod's network namespace, where the join token would be readable
		// in user data. A launch template's own settings are left alone.
		in.MetadataOptions = &types.InstanceMetadataOptionsRequest{
			HttpEndpoint:            types.InstanceMetadataEndpointStateEnabled,
			HttpTokens:              types.HttpTokensStateRequired,
			HttpPutResponseHopLimit: aws.Int32(1),
		}
	}
	return in
}

// Delete implements cloudprovider.Provider with TerminateInstances. An instance that EC2 no longer
// knows, or that is already terminated, counts as deleted.
func (p *Provider) Delete(ctx context.Context, instance cloudprovider.Instance) error {
	if instance.ID == "" {
		return cloudprovider.NewError(cloudprovider.KindInvalid, "delete", "", fmt.Errorf("deleting instance of %s: no instance id", instance.NodeName))
	}
	_, err := p.api.TerminateInstances(ctx, &ec2sdk.TerminateInstancesInput{InstanceIds: []string{instance.ID}})
	if err != nil {
		if errorCode(err) == codeInstanceIDNotFound {
			return nil
		}
		return classify("delete", fmt.Errorf("terminating instance %s of %s: %w", instance.ID, instance.NodeName, err))
	}
	klog.FromContext(ctx).V(2).Info("Terminating instance", "node", instance.NodeName, "instance", instance.ID)
	return nil
}

// List implements cloudprovider.Provider: every live instance tagged with this cluster's name
// and a dedicated node, read page by page.
func (p *Provider) List(ctx context.Context) ([]cloudprovider.Instance, error) {
	out, err := p.describe(ctx, []types.Filter{
		tagFilter(cloudprovider.TagCluster, p.cfg.ClusterName),
		{Name: aws.String("tag-key"), Values: []string{cloudprovider.TagNode}},
		{Name: aws.String("instance-state-name"), Values: liveStates},
	})
	if err != nil {
		return nil, classify("list", fmt.Errorf("listing instances of cluster %s: %w", p.cfg.ClusterName, err))
	}
	return out, nil
}

// listPageSize is the largest page DescribeInstances returns.
const listPageSize = 1000

// describe returns the instances that match filters, across all pages, oldest first. It skips
// instances in states outside liveStates, in case EC2's filter let one through.
func (p *Provider) describe(ctx context.Context, filters []types.Filter) ([]cloudprovider.Instance, error) {
	pages := ec2sdk.NewDescribeInstancesPaginator(p.api, &ec2sdk.DescribeInstancesInput{Filters: filters},
		func(o *ec2sdk.DescribeInstancesPaginatorOptions) {
			o.Limit = listPageSize
			o.StopOnDuplicateToken = true
		})
	var out []cloudprovider.Instance
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, r := range page.Reservations {
			for _, i := range r.Instances {
				inst := toInstance(i)
				if inst.State == cloudprovider.StateTerminated {
					continue
				}
				out = append(out, inst)
			}
		}
	}
	cloudprovider.SortInstances(out)
	return out, nil
}

func tagFilter(key, value string) types.Filter {
	return types.Filter{Name: aws.String("tag:" + key), Values: []string{value}}
}

// toInstance converts an EC2 instance.
func toInstance(i types.Instance) cloudprovider.Instance {
	tags := map[string]string{}
	for _, t := range i.Tags {
		tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	var az string
	if i.Placement != nil {
		az = aws.ToString(i.Placement.AvailabilityZone)
	}
	var state types.InstanceStateName
	if i.State != nil {
		state = i.State.Name
	}
	id := aws.ToString(i.InstanceId)
	return cloudprovider.Instance{
		NodeName:   tags[cloudprovider.TagNode],
		ID:         id,
		ProviderID: ProviderID(az, id),
		Class:      tags[cloudprovider.TagClass],
		Namespace:  tags[cloudprovider.TagNamespace],
		State:      toState(state),
		CreatedAt:  aws.ToTime(i.LaunchTime),

		JoinTokenID:  tags[cloudprovider.TagJoinToken],
		NodeClass:    tags[cloudprovider.TagNodeClass],
		Zone:         az,
		InstanceType: string(i.InstanceType),
	}
}

// toState maps an EC2 instance state. shutting-down is Stopping: the instance is being deleted
// and will be terminated soon.
func toState(s types.InstanceStateName) cloudprovider.InstanceState {
	switch s {
	case types.InstanceStateNamePending:
		return cloudprovider.StatePending
	case types.InstanceStateNameRunning:
		return cloudprovider.StateRunning
	case types.InstanceStateNameStopping, types.InstanceStateNameShuttingDown:
		return cloudprovider.StateStopping
	case types.InstanceStateNameStopped:
		return cloudprovider.StateStopped
	case types.InstanceStateNameTerminated:
		return cloudprovider.StateTerminated
	default:
		// An unknown new state: treat the instance as still coming up rather than gone, so
		// that it is neither leaked nor duplicated.
		return cloudprovider.StatePending
	}
}
