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

// instanceReader is the read half of the Compute API calls the provider makes, in one zone.
type instanceReader interface {
	// getInstance returns the named instance.
	getInstance(ctx context.Context, name string) (*computepb.Instance, error)
	// listInstances returns every instance that matches filter, reading every page.
	listInstances(ctx context.Context, filter string) ([]*computepb.Instance, error)
}

// instanceWriter is the write half. Both calls return the operation, which the provider waits on.
type instanceWriter interface {
	// insertInstance starts creating an instance.
	insertInstance(ctx context.Context, req *computepb.InsertInstanceRequest) (operation, error)
	// deleteInstance starts deleting the named instance.
	deleteInstance(ctx context.Context, name string) (operation, error)
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
	project, zone string
	instances     *compute.InstancesClient
}

var _ computeClient = &sdkClient{}

func newSDKClient(ctx context.Context, project, zone string, opts ...option.ClientOption) (*sdkClient, error) {
	c, err := compute.NewInstancesRESTClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("creating Compute instances client: %w", err)
	}
	return &sdkClient{project: project, zone: zone, instances: c}, nil
}

func (c *sdkClient) getInstance(ctx context.Context, name string) (*computepb.Instance, error) {
	return c.instances.Get(ctx, &computepb.GetInstanceRequest{Project: c.project, Zone: c.zone, Instance: name})
}

func (c *sdkClient) listInstances(ctx context.Context, filter string) ([]*computepb.Instance, error) {
	it := c.instances.List(ctx, &computepb.ListInstancesRequest{
		Project: c.project,
		Zone:    c.zone,
		Filter:  proto.String(filter),
	})
	var out []*computepb.Instance
	for {
		inst, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, inst)
	}
}

func (c *sdkClient) insertInstance(ctx context.Context, req *computepb.InsertInstanceRequest) (operation, error) {
	op, err := c.instances.Insert(ctx, req)
	if err != nil {
		return nil, err
	}
	return op, nil
}

func (c *sdkClient) deleteInstance(ctx context.Context, name string) (operation, error) {
	op, err := c.instances.Delete(ctx, &computepb.DeleteInstanceRequest{Project: c.project, Zone: c.zone, Instance: name})
	if err != nil {
		return nil, err
	}
	return op, nil
}

func (c *sdkClient) close() error { return c.instances.Close() }
