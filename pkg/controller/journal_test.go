package controller

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	core "k8s.io/client-go/testing"
)

// testJournalNamespace is the fixture's Options.JournalNamespace.
const testJournalNamespace = "ipp-system"

// journalOf returns the journal of the controllers of cluster in the fixture's API server.
func (f *fixture) journalOf(cluster string) journal {
	return journal{kube: f.kube, namespace: testJournalNamespace, cluster: cluster}
}

// journalData returns the data of the journal ConfigMap, none if it does not exist, from the
// clientset's tracker, so that the read is not among its actions.
func (f *fixture) journalData() map[string]string {
	f.t.Helper()
	obj, err := f.kube.Tracker().Get(corev1.SchemeGroupVersion.WithResource("configmaps"), testJournalNamespace, JournalName)
	if apierrors.IsNotFound(err) {
		return map[string]string{}
	}
	if err != nil {
		f.t.Fatal(err)
	}
	data := obj.(*corev1.ConfigMap).Data
	if data == nil {
		data = map[string]string{}
	}
	return data
}

func TestJournal(t *testing.T) {
	f := newFixture(t)
	minted := t0.Add(1500 * time.Millisecond)
	ours, theirs := f.journalOf("ipp"), f.journalOf("other")

	// The first entry creates the ConfigMap; later ones, of any cluster, patch it.
	if err := ours.record(f.ctx, "aaaaaa", journalValue{NodeName: "ipp-a"}, minted); err != nil {
		t.Fatal(err)
	}
	if err := theirs.record(f.ctx, "bbbbbb", journalValue{NodeName: "ipp-b"}, t0); err != nil {
		t.Fatal(err)
	}
	if err := ours.record(f.ctx, "cccccc", journalValue{NodeName: "ipp-c"}, t0); err != nil {
		t.Fatal(err)
	}
	entryA := `{"node":"ipp-a","minted":"2026-01-01T00:00:01Z"}`
	diff(t, "kube actions", []string{
		"patch configmaps/" + JournalName + " merge " + mergePatch(map[string]any{"data": map[string]any{"ipp.aaaaaa": entryA}}),
		"create configmaps",
		"patch configmaps/" + JournalName + " merge " + mergePatch(map[string]any{"data": map[string]any{"other.bbbbbb": `{"node":"ipp-b","minted":"2026-01-01T00:00:00Z"}`}}),
		"patch configmaps/" + JournalName + " merge " + mergePatch(map[string]any{"data": map[string]any{"ipp.cccccc": `{"node":"ipp-c","minted":"2026-01-01T00:00:00Z"}`}}),
	}, f.actions())
	// Each cluster reads its own entries; keys that are not a token's are left alone.
	cm, err := f.kube.CoreV1().ConfigMaps(testJournalNamespace).Get(f.ctx, JournalName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["ipp.not-a-token"] = "x"
	cm.Data["ipp.dddddd"] = "garbled"
	if _, err := f.kube.CoreV1().ConfigMaps(testJournalNamespace).Update(f.ctx, cm, metav1.UpdateOptions{FieldManager: testFieldManager}); err != nil {
		t.Fatal(err)
	}
	got, err := ours.tokens(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "our tokens", map[string]journalEntry{
		"aaaaaa": {NodeName: "ipp-a", Minted: t0.Add(time.Second)},
		"cccccc": {NodeName: "ipp-c", Minted: t0},
		"dddddd": {}, // unreadable: minted long ago
	}, got)

	// Forgetting removes one key, and is done when it is gone already.
	f.actions()
	for range 2 {
		if err := ours.forget(f.ctx, "aaaaaa"); err != nil {
			t.Fatal(err)
		}
	}
	diff(t, "journal", map[string]string{
		"other.bbbbbb":    `{"node":"ipp-b","minted":"2026-01-01T00:00:00Z"}`,
		"ipp.cccccc":      `{"node":"ipp-c","minted":"2026-01-01T00:00:00Z"}`,
		"ipp.dddddd":      "garbled",
		"ipp.not-a-token": "x",
	}, f.journalData())
}

// TestJournalEmpty checks that a journal whose ConfigMap does not exist has no tokens, and that
// forgetting in it is done.
func TestJournalEmpty(t *testing.T) {
	f := newFixture(t)
	j := f.journalOf("ipp")
	got, err := j.tokens(f.ctx)
	if err != nil || len(got) != 0 {
		t.Errorf("tokens() = %v, %v; want none", got, err)
	}
	if err := j.forget(f.ctx, "aaaaaa"); err != nil {
		t.Errorf("forget: %v", err)
	}
}

// TestJournalCreateRace checks that an entry is recorded when another controller creates the
// ConfigMap between this one's patch and its create.
func TestJournalCreateRace(t *testing.T) {
	f := newFixture(t)
	raced := false
	f.kube.PrependReactor("create", "configmaps", func(core.Action) (bool, runtime.Object, error) {
		if raced {
			return false, nil, nil
		}
		raced = true
		// The other controller's create, which the tracker serves without this reactor.
		if err := f.kube.Tracker().Add(&corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: testJournalNamespace, Name: JournalName},
			Data:       map[string]string{"other.bbbbbb": `{"node":"ipp-b","minted":"2026-01-01T00:00:00Z"}`},
		}); err != nil {
			t.Error(err)
		}
		return true, nil, apierrors.NewAlreadyExists(corev1.Resource("configmaps"), JournalName)
	})
	if err := f.journalOf("ipp").record(f.ctx, "aaaaaa", journalValue{NodeName: "ipp-a"}, t0); err != nil {
		t.Fatal(err)
	}
	diff(t, "journal", map[string]string{
		"ipp.aaaaaa":   `{"node":"ipp-a","minted":"2026-01-01T00:00:00Z"}`,
		"other.bbbbbb": `{"node":"ipp-b","minted":"2026-01-01T00:00:00Z"}`,
	}, f.journalData())
}

func TestNewNeedsJournalNamespace(t *testing.T) {
	f := newFixture(t)
	for _, ns := range []string{"", "Not_A_Namespace"} {
		pods, nodes := newInformerFactories(f.kube, f.cfg)
		_, err := newWithInformers(f.kube, pods.Core().V1().Pods(), nodes.Core().V1().Nodes(), f.provider, f.recorder, Options{
			Config:           f.cfg,
			MintJoinTokens:   true,
			JournalNamespace: ns,
			Issued:           func(string, string) bool { return false },
		})
		if err == nil || !strings.Contains(err.Error(), "journal namespace") {
			t.Errorf("New with journal namespace %q: %v, want an error about it", ns, err)
		}
	}
}
