package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NodeClass is a kind of dedicated node, owned by the cluster admin: the instance shape on each
// provider, how many instances its classes may have, how long they live, and which namespaces
// may use it. A Pod chooses one with the label ipp.io/node-class; without the label it gets the
// NodeClass named "default", and without that object the provider flags describe it. Every field
// left empty falls back to the provider flag of the same meaning.
//
// +genclient
// +genclient:nonNamespaced
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,categories=ipp
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Nodes",type=integer,JSONPath=`.status.nodes`,description="Nodes of this NodeClass: bound, booting or warm"
// +kubebuilder:printcolumn:name="Classes",type=integer,JSONPath=`.status.classes`,description="Isolation classes served"
// +kubebuilder:printcolumn:name="Pods",type=integer,JSONPath=`.status.pods`,description="Pods placed on its nodes"
// +kubebuilder:printcolumn:name="Warm",type=integer,JSONPath=`.status.warmReady`,description="Warm nodes ready to be claimed"
// +kubebuilder:printcolumn:name="Warm-Size",type=integer,JSONPath=`.spec.warm.size`,description="Warm nodes the pool keeps (spec.warm.size)"
// +kubebuilder:printcolumn:name="Isolation",type=string,JSONPath=`.spec.isolation`,description="Class: a class shares its nodes; Pod: every Pod its own instance"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 63",message="name must be at most 63 characters: Pods name their NodeClass in the label ipp.io/node-class, whose values are at most 63"
type NodeClass struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata. The name is what Pods put in the label ipp.io/node-class.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is what the admin asks for.
	// +optional
	Spec NodeClassSpec `json:"spec,omitempty"`
	// Status is what the controller observes. Only the status subresource writes it.
	// +optional
	Status NodeClassStatus `json:"status,omitempty"`
}

// NodeClassSpec is the desired shape, size and reach of a NodeClass.
//
// +kubebuilder:validation:XValidation:rule="!has(self.warm) || !has(self.limits) || !has(self.limits.instances) || self.warm.size <= self.limits.instances",message="warm.size must not exceed limits.instances: warm instances count against the limit",fieldPath=".warm.size"
type NodeClassSpec struct {
	// GCE is the instance shape on Google Compute Engine (--provider=gce). Unset fields fall back
	// to the --gce-* flags.
	// +optional
	GCE *GCENodeClass `json:"gce,omitempty"`
	// EC2 is the instance shape on Amazon EC2 (--provider=ec2). Unset fields fall back to the
	// --ec2-* flags.
	// +optional
	EC2 *EC2NodeClass `json:"ec2,omitempty"`

	// MaxNodesPerClass bounds the nodes one isolation class of this NodeClass may have at once.
	// Unset: no bound per class beyond Limits and the global --max-instances.
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxNodesPerClass *int32 `json:"maxNodesPerClass,omitempty"`
	// IdleTTL is how long a node of this NodeClass may have no Pod placed on it before its Node
	// and instance are deleted, such as 10m. Unset: --idle-ttl.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self) > duration('0s')",message="idleTTL must be positive"
	// +optional
	IdleTTL *metav1.Duration `json:"idleTTL,omitempty"`
	// RegistrationTimeout is how long an instance of this NodeClass may take to register its
	// Node before it is deleted, such as 40m for bare metal. Unset: --registration-timeout.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self) > duration('0s')",message="registrationTimeout must be positive"
	// +optional
	RegistrationTimeout *metav1.Duration `json:"registrationTimeout,omitempty"`
	// Limits bound the instances of this NodeClass, counting those being created and the warm
	// ones. Unset: no bound beyond the global --max-instances.
	// +optional
	Limits *NodeClassLimits `json:"limits,omitempty"`
	// NamespaceSelector chooses the namespaces whose Pods may use this NodeClass, by the
	// namespaces' labels. Unset: every namespace; an empty selector ({}) also selects every
	// namespace.
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])",message="namespaceSelector: a matchExpressions operator must be In, NotIn, Exists or DoesNotExist"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, (e.operator in ['In', 'NotIn']) == (has(e.values) && size(e.values) > 0))",message="namespaceSelector: In and NotIn need values, Exists and DoesNotExist take none"
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	// Isolation says what may share a node. Class (the default): the Pods of one isolation
	// class. Pod: nothing; every Pod gets an instance of its own, so a Deployment of 4 gets 4.
	// +kubebuilder:default=Class
	// +optional
	Isolation Isolation `json:"isolation,omitempty"`
	// Warm asks for instances booted ahead of demand, bound to a class only when claimed (with
	// --placement=controller): a class that needs a node takes a Ready warm one at once, and a
	// replacement boots.
	// +optional
	Warm *WarmPool `json:"warm,omitempty"`
}

// Isolation is what may share a node of a NodeClass.
//
// +kubebuilder:validation:Enum=Class;Pod
type Isolation string

const (
	// IsolationClass lets the Pods of one isolation class share nodes.
	IsolationClass Isolation = "Class"
	// IsolationPod gives every Pod an instance of its own.
	IsolationPod Isolation = "Pod"
)

// GCENodeClass is the instance shape on Google Compute Engine.
type GCENodeClass struct {
	// MachineType is the machine type of the instances, such as n2-standard-8. Unset:
	// --gce-machine-type.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +optional
	MachineType string `json:"machineType,omitempty"`
	// Zones are the zones to create instances in, in order of preference: a zone out of capacity
	// (ZONE_RESOURCE_POOL_EXHAUSTED) is skipped for the next. Unset: --gce-zone.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.all(z, self.exists_one(y, y == z))",message="zones must be unique"
	// +listType=atomic
	// +optional
	Zones []string `json:"zones,omitempty"`
	// Image is the boot image of the instances, such as
	// projects/<p>/global/images/family/<family>. Unset: --gce-image.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Image string `json:"image,omitempty"`
	// InstanceTemplate is the source instance template, such as
	// projects/<p>/global/instanceTemplates/<t>; the fields above override its settings. Unset:
	// --gce-instance-template.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	InstanceTemplate string `json:"instanceTemplate,omitempty"`
	// ServiceAccount is the email of the service account the instances run as. Unset: the
	// template's, or the project's default.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=254
	// +optional
	ServiceAccount string `json:"serviceAccount,omitempty"`
}

// EC2NodeClass is the instance shape on Amazon EC2.
type EC2NodeClass struct {
	// InstanceTypes are the instance types to create, in order of preference: a type without
	// capacity (InsufficientInstanceCapacity) is skipped for the next. Unset: --ec2-instance-type.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.all(t, self.exists_one(y, y == t))",message="instanceTypes must be unique"
	// +listType=atomic
	// +optional
	InstanceTypes []string `json:"instanceTypes,omitempty"`
	// Subnets are the subnet ids to create instances in, tried in turn while a subnet's zone has
	// no capacity. Unset: --ec2-subnet-ids.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Pattern=`^subnet-[0-9a-f]+$`
	// +kubebuilder:validation:items:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.all(s, self.exists_one(y, y == s))",message="subnets must be unique"
	// +listType=atomic
	// +optional
	Subnets []string `json:"subnets,omitempty"`
	// AMI is the image id of the instances, such as ami-0123456789abcdef0. Unset:
	// --ec2-image-id.
	// +kubebuilder:validation:Pattern=`^ami-[0-9a-f]+$`
	// +kubebuilder:validation:MaxLength=32
	// +optional
	AMI string `json:"ami,omitempty"`
	// SecurityGroups are the security group ids of the instances. Unset:
	// --ec2-security-group-ids.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Pattern=`^sg-[0-9a-f]+$`
	// +kubebuilder:validation:items:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.all(g, self.exists_one(y, y == g))",message="securityGroups must be unique"
	// +listType=atomic
	// +optional
	SecurityGroups []string `json:"securityGroups,omitempty"`
	// InstanceProfile is the name or ARN of the IAM instance profile of the instances. Unset:
	// the launch template's, or none.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +optional
	InstanceProfile string `json:"instanceProfile,omitempty"`
}

// NodeClassLimits bound the instances of a NodeClass. Instances being created and warm instances
// count.
//
// +kubebuilder:validation:XValidation:rule="!has(self.instances) || !has(self.instancesPerNamespace) || self.instancesPerNamespace <= self.instances",message="instancesPerNamespace must not exceed instances",fieldPath=".instancesPerNamespace"
type NodeClassLimits struct {
	// Instances bounds the instances of this NodeClass in the cluster. Unset: no bound but the
	// global --max-instances.
	// +kubebuilder:validation:Minimum=1
	// +optional
	Instances *int32 `json:"instances,omitempty"`
	// InstancesPerNamespace bounds the instances of this NodeClass that serve one namespace.
	// Unset: no bound per namespace.
	// +kubebuilder:validation:Minimum=1
	// +optional
	InstancesPerNamespace *int32 `json:"instancesPerNamespace,omitempty"`
}

// WarmPool asks for instances booted ahead of demand.
type WarmPool struct {
	// Size is how many booted, unbound instances to keep ready. 0 keeps none.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=0
	// +optional
	Size int32 `json:"size,omitempty"`
	// MaxAge is how long a warm instance may wait for a claim before it is replaced, such as
	// 24h. Unset: warm instances are kept until claimed.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self) > duration('0s')",message="warm.maxAge must be positive"
	// +optional
	MaxAge *metav1.Duration `json:"maxAge,omitempty"`
}

// Condition types of a NodeClass.
const (
	// ConditionReady is True when the controller can create instances of the NodeClass on its
	// provider.
	ConditionReady = "Ready"
	// ConditionLimitReached is True while a limit of the NodeClass keeps a Pod waiting.
	ConditionLimitReached = "LimitReached"
)

// NodeClassStatus is what the controller observes of a NodeClass.
type NodeClassStatus struct {
	// Nodes counts the nodes of this NodeClass: bound, booting and warm.
	// +optional
	Nodes int32 `json:"nodes"`
	// Classes counts the isolation classes with at least one node of this NodeClass.
	// +optional
	Classes int32 `json:"classes"`
	// Pods counts the non-terminal Pods placed on nodes of this NodeClass.
	// +optional
	Pods int32 `json:"pods"`
	// WarmReady counts the warm instances ready to be claimed.
	// +optional
	WarmReady int32 `json:"warmReady"`
	// Conditions are the latest observations: Ready and LimitReached.
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// NodeClassList is a list of NodeClasses.
//
// +kubebuilder:object:root=true
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type NodeClassList struct {
	metav1.TypeMeta `json:",inline"`
	// Standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the NodeClasses.
	Items []NodeClass `json:"items"`
}
