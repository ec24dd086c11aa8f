package controller

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
)

// ProtobufConfig returns a copy of cfg that sends and asks for protobuf, for clients of
// Kubernetes' own APIs, as kube-scheduler and kube-controller-manager use: a watched Pod or Node
// decodes several times faster than from JSON, and the API server encodes each watch event once
// per format for all its watchers, so a controller on JSON next to a scheduler on protobuf makes
// it encode every Pod event twice. Clients of custom resources (NodeClasses) must keep cfg as it
// is: the API server serves them only as JSON.
func ProtobufConfig(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	return cfg
}
