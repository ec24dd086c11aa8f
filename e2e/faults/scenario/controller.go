package scenario

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"

	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/controller"
	ippclientset "github.com/ipp-project/ipp/pkg/generated/clientset/versioned"
)

// Workers is how many dedicated nodes a controller of these tests reconciles at once, as
// ipp controller's default --workers.
const Workers = 4

// StartController runs IPP's controller in the test process for the tenant, with provider, as
// ipp controller wires it (narrowed informers, an Event recorder writing to the apiserver) but
// without leader election. opts.Config is set to the tenant's. The controller stops when the test
// ends; if the test failed, the end of its log is logged.
func (tn *Tenant) StartController(t testing.TB, provider cloudprovider.Provider, opts controller.Options) {
	t.Helper()
	logs := &syncBuffer{}
	logger := textlogger.NewLogger(textlogger.NewConfig(textlogger.Output(logs), textlogger.Verbosity(2))).WithName("controller")
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(), logger))

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartStructuredLogging(4)
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: tn.Client.CoreV1().Events("")})
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "ipp-controller"})

	opts.Config = tn.Config
	opts.MintJoinTokens = true
	// Tenants share the namespace; the journal keys its entries by cluster name.
	opts.JournalNamespace = "kube-system"
	ipp, err := ippclientset.NewForConfig(tn.cp.AdminConfig)
	if err != nil {
		cancel()
		broadcaster.Shutdown()
		t.Fatalf("Creating the NodeClass client: %v", err)
	}
	opts.IPPClient = ipp
	m, err := controller.NewManager(tn.Client, provider, recorder, opts)
	if err != nil {
		cancel()
		broadcaster.Shutdown()
		t.Fatalf("Creating the controller: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, Workers) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Controller: %v", err)
		}
		broadcaster.Shutdown()
		if t.Failed() {
			t.Logf("Controller log (last 400 lines):\n%s", logs.Tail(400))
		}
	})
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Tail returns the last n lines written.
func (b *syncBuffer) Tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return tail(b.buf.String(), n)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"..."}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
