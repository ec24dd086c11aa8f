package tests

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/ipp-project/ipp/deploy"
	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	applyv1alpha1 "github.com/ipp-project/ipp/pkg/generated/applyconfiguration/ipp/v1alpha1"
	ippclient "github.com/ipp-project/ipp/pkg/generated/clientset/versioned"
	ippinformers "github.com/ipp-project/ipp/pkg/generated/informers/externalversions"
)

// TestNodeClassCRD installs the NodeClass CRD of deploy/ in the apiserver and checks the API it
// serves through the generated clientset, informers and listers:
//
//   - the example is accepted and reads back as written, and a NodeClass with an empty
//     spec reads back with the defaults (isolation Class, warm.size 0), by create and by
//     server-side apply;
//   - bad NodeClasses are refused, each with the field at fault named in the error;
//   - status is written only through the status subresource, and `kubectl get nodeclasses`
//     shows its counts and the Ready condition.
//
// It owns the CRD, so it does not run in parallel, and removes the CRD when done (TestOperations
// installs it again from the overlay).
func TestNodeClassCRD(t *testing.T) {
	ctx := t.Context()
	installNodeClassCRD(t)
	ipp, err := ippclient.NewForConfig(cluster.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	nodeClasses := ipp.IppV1alpha1().NodeClasses()

	// The example.
	example := &ippv1alpha1.NodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: "metal"},
		Spec: ippv1alpha1.NodeClassSpec{
			GCE: &ippv1alpha1.GCENodeClass{
				MachineType:      "n2-standard-8",
				Zones:            []string{"us-central1-a", "us-central1-b"},
				Image:            "projects/ipp/global/images/family/ipp-node",
				InstanceTemplate: "projects/ipp/global/instanceTemplates/ipp-metal",
				ServiceAccount:   "ipp-node@ipp.iam.gserviceaccount.com",
			},
			EC2: &ippv1alpha1.EC2NodeClass{
				InstanceTypes:   []string{"i3.metal", "m5.metal"},
				Subnets:         []string{"subnet-0a1b2c3d", "subnet-4e5f6a7b"},
				AMI:             "ami-0123456789abcdef0",
				SecurityGroups:  []string{"sg-0123abcd"},
				InstanceProfile: "ipp-node",
			},
			MaxNodesPerClass:    ptr.To[int32](10),
			IdleTTL:             &metav1.Duration{Duration: 10 * time.Minute},
			RegistrationTimeout: &metav1.Duration{Duration: 40 * time.Minute},
			Limits:              &ippv1alpha1.NodeClassLimits{Instances: ptr.To[int32](50), InstancesPerNamespace: ptr.To[int32](5)},
			NamespaceSelector:   &metav1.LabelSelector{MatchLabels: map[string]string{"tenant-tier": "untrusted"}},
			Isolation:           ippv1alpha1.IsolationClass,
			Warm:                &ippv1alpha1.WarmPool{Size: 2, MaxAge: &metav1.Duration{Duration: 24 * time.Hour}},
		},
	}
	created, err := nodeClasses.Create(ctx, example, metav1.CreateOptions{FieldManager: "e2e"})
	if err != nil {
		t.Fatalf("The issue's example NodeClass is refused: %v", err)
	}
	got, err := nodeClasses.Get(ctx, created.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(example.Spec, got.Spec); diff != "" {
		t.Errorf("The example NodeClass reads back changed (-sent +read):\n%s", diff)
	}

	t.Run("defaults", func(t *testing.T) {
		nc, err := nodeClasses.Create(ctx, &ippv1alpha1.NodeClass{
			ObjectMeta: metav1.ObjectMeta{Name: "defaults"},
			Spec:       ippv1alpha1.NodeClassSpec{Warm: &ippv1alpha1.WarmPool{MaxAge: &metav1.Duration{Duration: time.Hour}}},
		}, metav1.CreateOptions{FieldManager: "e2e"})
		if err != nil {
			t.Fatalf("A NodeClass with only warm.maxAge is refused: %v", err)
		}
		want := ippv1alpha1.NodeClassSpec{
			Isolation: ippv1alpha1.IsolationClass,
			Warm:      &ippv1alpha1.WarmPool{Size: 0, MaxAge: &metav1.Duration{Duration: time.Hour}},
		}
		if diff := cmp.Diff(want, nc.Spec); diff != "" {
			t.Errorf("Spec with defaults (-want +got):\n%s", diff)
		}
		// The default is in the stored object, not only in the Go zero value.
		raw, err := ipp.IppV1alpha1().RESTClient().Get().Resource("nodeclasses").Name(nc.Name).DoRaw(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var stored struct {
			Spec map[string]any `json:"spec"`
		}
		if err := json.Unmarshal(raw, &stored); err != nil {
			t.Fatal(err)
		}
		if stored.Spec["isolation"] != "Class" || stored.Spec["warm"].(map[string]any)["size"] != float64(0) {
			t.Errorf("Stored spec %v, want isolation Class and warm.size 0 set by the apiserver", stored.Spec)
		}

		// Server-side apply through the generated apply configurations defaults alike.
		applied, err := nodeClasses.Apply(ctx, applyv1alpha1.NodeClass("applied").
			WithSpec(applyv1alpha1.NodeClassSpec().
				WithIsolation(ippv1alpha1.IsolationPod).
				WithEC2(applyv1alpha1.EC2NodeClass().WithInstanceTypes("m5.large"))),
			metav1.ApplyOptions{FieldManager: "e2e"})
		if err != nil {
			t.Fatalf("Server-side apply of a NodeClass: %v", err)
		}
		if applied.Spec.Isolation != ippv1alpha1.IsolationPod || applied.Spec.EC2 == nil || !cmp.Equal(applied.Spec.EC2.InstanceTypes, []string{"m5.large"}) {
			t.Errorf("Applied spec %+v, want isolation Pod and instance types [m5.large]", applied.Spec)
		}
	})

	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			// spec is the NodeClass's spec in YAML, as an admin writes it.
			spec string
			// field is the path the error must name, and message a part of what it says.
			field, message string
		}{
			{"isolation not Class or Pod", `isolation: Node`, "spec.isolation", `supported values: "Class", "Pod"`},
			{"negative warm.size", `warm: {size: -1}`, "spec.warm.size", "greater than or equal to 0"},
			{"zero maxNodesPerClass", `maxNodesPerClass: 0`, "spec.maxNodesPerClass", "greater than or equal to 1"},
			{"zero limits.instances", `limits: {instances: 0}`, "spec.limits.instances", "greater than or equal to 1"},
			{"zero limits.instancesPerNamespace", `limits: {instancesPerNamespace: 0}`, "spec.limits.instancesPerNamespace", "greater than or equal to 1"},
			{"instancesPerNamespace above instances", `limits: {instances: 3, instancesPerNamespace: 5}`, "spec.limits.instancesPerNamespace", "must not exceed instances"},
			{"warm.size above limits.instances", `{limits: {instances: 3}, warm: {size: 4}}`, "spec.warm.size", "must not exceed limits.instances"},
			{"empty zone", `gce: {zones: [us-central1-a, ""]}`, "spec.gce.zones[1]", "at least 1 chars long"},
			{"no zones", `gce: {zones: []}`, "spec.gce.zones", "at least 1 items"},
			{"duplicate zones", `gce: {zones: [us-central1-a, us-central1-b, us-central1-a]}`, "spec.gce.zones", "zones must be unique"},
			{"duplicate instance types", `ec2: {instanceTypes: [i3.metal, m5.metal, i3.metal]}`, "spec.ec2.instanceTypes", "instanceTypes must be unique"},
			{"empty instance type", `ec2: {instanceTypes: [""]}`, "spec.ec2.instanceTypes[0]", "at least 1 chars long"},
			{"subnet not an id", `ec2: {subnets: [my-subnet]}`, "spec.ec2.subnets[0]", "should match"},
			{"security group not an id", `ec2: {securityGroups: [default]}`, "spec.ec2.securityGroups[0]", "should match"},
			{"AMI not an id", `ec2: {ami: ubuntu-24.04}`, "spec.ec2.ami", "should match"},
			{"empty machine type", `gce: {machineType: ""}`, "spec.gce.machineType", "at least 1 chars long"},
			{"negative idleTTL", `idleTTL: -5m`, "spec.idleTTL", "should match"},
			{"zero idleTTL", `idleTTL: 0s`, "spec.idleTTL", "idleTTL must be positive"},
			{"idleTTL not a duration", `idleTTL: ten minutes`, "spec.idleTTL", "should match"},
			{"zero registrationTimeout", `registrationTimeout: 0m`, "spec.registrationTimeout", "registrationTimeout must be positive"},
			{"zero warm.maxAge", `warm: {maxAge: 0h}`, "spec.warm.maxAge", "warm.maxAge must be positive"},
			{"selector operator", `namespaceSelector: {matchExpressions: [{key: tier, operator: Equals, values: [a]}]}`, "spec.namespaceSelector", "operator must be In, NotIn, Exists or DoesNotExist"},
			{"selector In without values", `namespaceSelector: {matchExpressions: [{key: tier, operator: In}]}`, "spec.namespaceSelector", "In and NotIn need values"},
			{"unknown field", `gce: {machinetype: n2-standard-8}`, "spec.gce.machinetype", "unknown field"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				err := createRawNodeClass(ctx, ipp, "bad", tc.spec)
				if err == nil {
					_ = nodeClasses.Delete(ctx, "bad", metav1.DeleteOptions{})
					t.Fatalf("spec {%s} is accepted, want it refused naming %s", tc.spec, tc.field)
				}
				if !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) {
					t.Fatalf("spec {%s}: %v, want Invalid", tc.spec, err)
				}
				if !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), tc.message) {
					t.Errorf("spec {%s} refused with %q, want it to name %s and say %q", tc.spec, err, tc.field, tc.message)
				}
				if strings.Contains(err.Error(), "conversion error") {
					t.Errorf("spec {%s} refused with a CEL error meant for no one: %q", tc.spec, err)
				}
			})
		}

		// A name longer than the label ipp.io/node-class can hold.
		long := strings.Repeat("a", 64)
		if err := createRawNodeClass(ctx, ipp, long, `{}`); err == nil || !strings.Contains(err.Error(), "name must be at most 63 characters") {
			t.Errorf("A NodeClass named with 64 characters: %v, want refused for its name", err)
		}
		// Updates are validated too.
		nc, err := nodeClasses.Get(ctx, "metal", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		nc.Spec.Limits.InstancesPerNamespace = ptr.To[int32](51)
		if _, err := nodeClasses.Update(ctx, nc, metav1.UpdateOptions{FieldManager: "e2e"}); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.limits.instancesPerNamespace") {
			t.Errorf("Update to instancesPerNamespace 51 > instances 50: %v, want refused naming spec.limits.instancesPerNamespace", err)
		}
	})

	t.Run("status", func(t *testing.T) {
		nc, err := nodeClasses.Get(ctx, "metal", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		generation := nc.Generation
		nc.Status = ippv1alpha1.NodeClassStatus{Nodes: 3, Classes: 2, Pods: 7, WarmReady: 1}
		meta.SetStatusCondition(&nc.Status.Conditions, metav1.Condition{Type: ippv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "InstancesCreatable", ObservedGeneration: generation})
		meta.SetStatusCondition(&nc.Status.Conditions, metav1.Condition{Type: ippv1alpha1.ConditionLimitReached, Status: metav1.ConditionFalse, Reason: "WithinLimits", ObservedGeneration: generation})
		nc.Spec.MaxNodesPerClass = ptr.To[int32](99) // ignored by the status subresource
		updated, err := nodeClasses.UpdateStatus(ctx, nc, metav1.UpdateOptions{FieldManager: "e2e"})
		if err != nil {
			t.Fatalf("Updating the status: %v", err)
		}
		if updated.Status.Nodes != 3 || updated.Status.Pods != 7 || !meta.IsStatusConditionTrue(updated.Status.Conditions, ippv1alpha1.ConditionReady) {
			t.Errorf("Status after UpdateStatus: %+v", updated.Status)
		}
		if *updated.Spec.MaxNodesPerClass != 10 || updated.Generation != generation {
			t.Errorf("UpdateStatus changed the spec: maxNodesPerClass %d, generation %d -> %d", *updated.Spec.MaxNodesPerClass, generation, updated.Generation)
		}

		// A spec update leaves the status alone.
		updated.Status.Nodes = 100
		updated.Spec.MaxNodesPerClass = ptr.To[int32](11)
		updated, err = nodeClasses.Update(ctx, updated, metav1.UpdateOptions{FieldManager: "e2e"})
		if err != nil {
			t.Fatal(err)
		}
		if updated.Status.Nodes != 3 || *updated.Spec.MaxNodesPerClass != 11 {
			t.Errorf("After Update: status.nodes %d (want 3, unchanged), maxNodesPerClass %d (want 11)", updated.Status.Nodes, *updated.Spec.MaxNodesPerClass)
		}
		// A status condition that breaks metav1.Condition's schema is refused.
		bad := updated.DeepCopy()
		bad.Status.Conditions = append(bad.Status.Conditions, metav1.Condition{Type: "Warm", Status: "Maybe", Reason: "X", LastTransitionTime: metav1.Now()})
		if _, err := nodeClasses.UpdateStatus(ctx, bad, metav1.UpdateOptions{}); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "status.conditions[2].status") {
			t.Errorf("A condition with status Maybe: %v, want refused naming status.conditions[2].status", err)
		}

		// `kubectl get nodeclasses`: the server's table.
		var table metav1.Table
		err = ipp.IppV1alpha1().RESTClient().Get().Resource("nodeclasses").Name("metal").
			SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").Do(ctx).Into(&table)
		if err != nil {
			t.Fatal(err)
		}
		var columns []string
		for _, c := range table.ColumnDefinitions {
			if c.Priority == 0 {
				columns = append(columns, c.Name)
			}
		}
		if diff := cmp.Diff([]string{"Name", "Nodes", "Classes", "Pods", "Warm", "Warm-Size", "Isolation", "Ready", "Age"}, columns); diff != "" {
			t.Errorf("kubectl get columns (-want +got):\n%s", diff)
		}
		if len(table.Rows) != 1 {
			t.Fatalf("%d rows, want 1", len(table.Rows))
		}
		row := map[string]any{}
		for i, c := range table.ColumnDefinitions {
			row[c.Name] = table.Rows[0].Cells[i]
		}
		for col, want := range map[string]any{"Name": "metal", "Nodes": int64(3), "Classes": int64(2), "Pods": int64(7), "Warm": int64(1), "Isolation": "Class", "Ready": "True"} {
			if got := row[col]; got != want {
				t.Errorf("kubectl get nodeclasses: %s = %v (%T), want %v", col, got, got, want)
			}
		}
	})

	t.Run("informer", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		factory := ippinformers.NewSharedInformerFactory(ipp, 0)
		lister := factory.Ipp().V1alpha1().NodeClasses().Lister()
		factory.Start(ctx.Done())
		defer factory.Shutdown() // after cancel, which stops the informers
		defer cancel()
		for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
			if !ok {
				t.Fatalf("The %v informer did not sync", typ)
			}
		}
		nc, err := lister.Get("metal")
		if err != nil {
			t.Fatalf("The lister has no NodeClass metal: %v", err)
		}
		if nc.Status.Nodes != 3 || *nc.Spec.MaxNodesPerClass != 11 {
			t.Errorf("The lister's NodeClass metal: %+v", nc)
		}
		if _, err := lister.Get("absent"); !apierrors.IsNotFound(err) {
			t.Errorf("Lister Get of an absent NodeClass: %v, want NotFound", err)
		}
	})
}

// createRawNodeClass creates a NodeClass whose spec is given in YAML, through the generated
// client's REST client with strict field validation, as `kubectl create` sends it.
func createRawNodeClass(ctx context.Context, ipp ippclient.Interface, name, specYAML string) error {
	spec, err := yaml.YAMLToJSON([]byte(specYAML))
	if err != nil {
		return err
	}
	body, err := json.Marshal(map[string]any{
		"apiVersion": ippv1alpha1.SchemeGroupVersion.String(),
		"kind":       "NodeClass",
		"metadata":   map[string]any{"name": name},
		"spec":       json.RawMessage(spec),
	})
	if err != nil {
		return err
	}
	return ipp.IppV1alpha1().RESTClient().Post().Resource("nodeclasses").
		Param("fieldValidation", "Strict").SetHeader("Content-Type", "application/json").
		Body(body).Do(ctx).Error()
}

// installNodeClassCRD creates the CRD from deploy/, waits until it is Established, and at cleanup
// deletes it and waits until it is gone, with every NodeClass.
func installNodeClassCRD(t *testing.T) {
	t.Helper()
	remove, err := cluster.InstallCRD(t.Context(), deploy.NodeClassCRD)
	if remove != nil {
		t.Cleanup(func() {
			if err := remove(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
}
