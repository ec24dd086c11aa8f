package admission

// Nodes tells Validate which nodes are IPP nodes, so that it can deny a Pod without a class that
// names one in spec.nodeName. Such a Pod skips the scheduler, and with it the taint's NoSchedule
// effect; only a NoExecute taint would make the kubelet refuse it.
//
// Both methods are called on the request's path for every such Pod: they must answer from memory,
// in O(1), without an API call, and be safe for concurrent use. pkg/nodeset implements it with a
// Node informer narrowed to the IPP node label.
type Nodes interface {
	// Has reports whether the node named name carries the IPP node label. Its answer is only
	// meaningful once HasSynced has returned true.
	Has(name string) bool
	// HasSynced reports whether Has knows every IPP node that existed when the watch started.
	// Until it does, Validate denies every Pod without a class that presets spec.nodeName, and
	// says to retry.
	HasSynced() bool
}
