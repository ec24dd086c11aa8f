package bench

import (
	"context"
	"time"
)

// P3Config sizes P3.
type P3Config struct {
	ReactionClasses, SteadyClasses, PodsPerClass, BurstClasses, BurstPodsPerClass int
	IdleWindow, ReactionInterval time.Duration
	LogFile, IPPBinary, Repo, WorkDir string `json:"-"`
}

// P3Result is P3's output.
type P3Result struct{}

// RunP3 runs P3.
func RunP3(ctx context.Context, cfg P3Config) (*P3Result, error) { return nil, nil }
