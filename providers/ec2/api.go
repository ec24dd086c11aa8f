package ec2

import (
	"context"

	ec2sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
)

// instanceReader is the read side of the EC2 API that the provider uses. It is also what the
// SDK's DescribeInstances paginator needs.
type instanceReader interface {
	DescribeInstances(ctx context.Context, in *ec2sdk.DescribeInstancesInput, optFns ...func(*ec2sdk.Options)) (*ec2sdk.DescribeInstancesOutput, error)
}

// instanceWriter is the write side of the EC2 API that the provider uses.
type instanceWriter interface {
	RunInstances(ctx context.Context, in *ec2sdk.RunInstancesInput, optFns ...func(*ec2sdk.Options)) (*ec2sdk.RunInstancesOutput, error)
	TerminateInstances(ctx context.Context, in *ec2sdk.TerminateInstancesInput, optFns ...func(*ec2sdk.Options)) (*ec2sdk.TerminateInstancesOutput, error)
}

// api is every EC2 call the provider makes, and nothing more.
type api interface {
	instanceReader
	instanceWriter
}

var _ api = (*ec2sdk.Client)(nil)
