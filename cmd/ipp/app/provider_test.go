package app

import (
	"errors"
	"testing"
	"time"

	"k8s.io/klog/v2/ktesting"
	clocktesting "k8s.io/utils/clock/testing"

	cpfake "github.com/ipp-project/ipp/pkg/cloudprovider/fake"
)

// closingProvider is a provider that holds something to release, as the GCE provider does.
type closingProvider struct {
	*cpfake.Provider
	closed int
	err    error
}

func (p *closingProvider) Close() error {
	p.closed++
	return p.err
}

func TestCloseProvider(t *testing.T) {
	logger, _ := ktesting.NewTestContext(t)
	p := &closingProvider{Provider: cpfake.New(clocktesting.NewFakeClock(time.Now())), err: errors.New("connection reset")}
	closeProvider(logger, p)
	if p.closed != 1 {
		t.Errorf("closeProvider called Close %d times, want 1", p.closed)
	}
	// A provider that holds nothing to release is left alone.
	closeProvider(logger, cpfake.New(clocktesting.NewFakeClock(time.Now())))
}
