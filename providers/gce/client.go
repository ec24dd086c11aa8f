package gce

import (
	"context"
	"errors"
	"fmt"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/proto"
)

// instanceReader is the read half of the Compute API calls the provider makes.
type instanceReader interface {
	// getInstance returns the named instance of zone.
	getInstance(ctx context.Context, zone, name string) (*computepb.Instance, error)
	// listInstances returns every instance of the project, in any zone, that matches filter,
	// reading every page of instances.aggregatedList.
	listInstances(ctx context.Context, filter string) ([]*computepb.Instance, error)
}

// instanceWriter is the write half. Both calls return the operation, which the provider waits on.
type instanceWriter interface {
	// insertInstance starts creating an instance in req's zone.
	insertInstance(ctx context.Context, req *computepb.InsertInstanceRequest) (operation, error)
	// deleteInstance starts deleting the named instance of zone.
	deleteInstance(ctx context.Context, zone, name string) (operation, error)
}

// computeClient is every Compute API call the provider makes.
type computeClient interface {
	instanceReader
	instanceWriter
	close() error
}

// operation is a zone operation, as *compute.Operation is one.
type operation interface {
	// Wait polls the operation until it is DONE, with the SDK's back-off.
	Wait(ctx context.Context, opts ...gax.CallOption) error
	// Proto is the operation as last read.
	Proto() *computepb.Operation
}

// sdkClient implements computeClient with the compute SDK's REST client.
type sdkClient struct {
	project   string
	instances *compute.InstancesClient
}

var _ computeClient = &sdkClient{}

func newSDKClient(ctx context.Context, project string, opts ...option.ClientOption) (*sdkClient, error) {
	c, err := compute.NewInstancesRESTClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("creating Compute instances client: %w", err)
	}
	return &sdkClient{project: project, instances: c}, nil
}

func (c *sdkClient) getInstance(ctx context.Context, zone, name string) (*computepb.Instance, error) {
	return c.instances.Get(ctx, &computepb.GetInstanceRequest{Project: c.project, Zone: zone, Instance: name})
}

func (c *sdkClient) listInstances(ctx context.Context, filter string) ([]*computepb.Instance, error) {
	it := c.instances.AggregatedList(ctx, &computepb.AggregatedListInstancesRequest{
		Project: c.project,
		Filter:  proto.String(filter),
	})
	var out []*computepb.Instance
	for {
		pair, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, pair.Value.GetInstances()...)
	}
}

func (c *sdkClient) insertInstance(ctx context.Context, req *computepb.InsertInstanceRequest) (operation, error) {
	op, err := c.instances.Insert(ctx, req)
	if err != nil {
		return nil, err
	}
	return op, nil
}

func (c *sdkClient) deleteInstance(ctx context.Context, zone, name string) (operation, error) {
	op, err := c.instances.Delete(ctx, &computepb.DeleteInstanceRequest{Project: c.project, Zone: zone, Instance: name})
	if err != nil {
		return nil, err
	}
	return op, nil
}

func (c *sdkClient) close() error { return c.instances.Close() }
