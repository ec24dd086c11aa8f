package controller

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of the per-namespace creation rate limit, for the controller's flags. Options leave it
// off when NamespaceCreateQPS is zero.
const (
	// DefaultNamespaceCreateQPS is how many instances a namespace may have IPP create per
	// second, on average: one every 5 s.
	DefaultNamespaceCreateQPS = 0.2
	// DefaultNamespaceCreateBurst is how many creations a namespace may make at once.
	DefaultNamespaceCreateBurst = 20
)

// ValidateCreationLimit checks a per-namespace creation rate limit: qps zero (off) or positive
// and finite, and with a limit, a burst of at least one.
func ValidateCreationLimit(qps float64, burst int) error {
	switch {
	case math.IsNaN(qps) || math.IsInf(qps, 0):
		return fmt.Errorf("invalid namespace creation rate %v per second: must be a finite number; 0 turns the limit off", qps)
	case qps < 0:
		return fmt.Errorf("invalid namespace creation rate %v per second: must not be negative; 0 turns the limit off", qps)
	case qps > 0 && burst < 1:
		return fmt.Errorf("invalid namespace creation burst %d: must be at least 1 with a rate limit of %v per second", burst, qps)
	}
	return nil
}

// creationLimiter is a token bucket per namespace that every creation of an instance for that
// namespace's Pods is charged to, so that no namespace can make IPP create instances faster than
// limit, in bursts of burst. Time is always given (the controller's clock), never read.
//
// A bucket that has filled up again is the same as a new one, so buckets are forgotten once full:
// the map holds only the namespaces that created an instance in the last burst/limit.
type creationLimiter struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

// newCreationLimiter returns the limiter for qps and burst, or nil if qps is zero (no limit).
func newCreationLimiter(qps float64, burst int) (*creationLimiter, error) {
	if err := ValidateCreationLimit(qps, burst); err != nil {
		return nil, err
	}
	if qps == 0 {
		return nil, nil
	}
	return &creationLimiter{limit: rate.Limit(qps), burst: burst, buckets: map[string]*rate.Limiter{}}, nil
}

// reserve charges one creation to namespace at now. The reservation's DelayFrom(now) says how
// long the creation must wait; CancelAt gives the token back if it is not made.
func (l *creationLimiter) reserve(namespace string, now time.Time) (*rate.Reservation, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.forgetFullLocked(now)
	b, ok := l.buckets[namespace]
	if !ok {
		b = rate.NewLimiter(l.limit, l.burst)
		l.buckets[namespace] = b
	}
	res := b.ReserveN(now, 1)
	if !res.OK() {
		// Only a burst below 1 refuses a single token, and validation rules that out.
		return nil, errors.New("the namespace creation rate limit refuses every creation: its burst is below 1")
	}
	return res, nil
}

// forgetFullLocked drops the buckets that are full at now.
func (l *creationLimiter) forgetFullLocked(now time.Time) {
	for ns, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, ns)
		}
	}
}

// len returns how many namespaces have a bucket that was not full at the last reservation.
func (l *creationLimiter) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// String describes the limit for Events and logs.
func (l *creationLimiter) String() string {
	return fmt.Sprintf("%v instances per second, in bursts of %d", float64(l.limit), l.burst)
}
