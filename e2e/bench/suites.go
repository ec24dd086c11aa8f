package bench

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Suite sizes every part.
type Suite struct {
	P1 P1Config
	P2 P2Config
	P3 P3Config
	P4 P4Config
}

// p4Sizes are P4's sizes in both suites: the emulators' boot delay of issue 12 (60 s), 20 warm
// claims against a pool of 20 (the last 20 wait for the first replacements), 20 cold boots, and the
// burst of 20 classes against a pool of 5.
var p4Sizes = P4Config{
	BootDelay: metav1.Duration{Duration: 60 * time.Second}, Provider: "gce",
	WarmClasses: 40, WarmPool: 20, ColdClasses: 20, Interval: metav1.Duration{Duration: time.Second},
	BurstClasses: 20, BurstPool: 5,
}

// Suites are the sizes `make bench` (short) and `make bench-full` (full) run.
var Suites = map[string]Suite{
	"short": {
		P1: P1Config{Nodes: []int{100, 500}, Pods: 500, NodesPerClass: 10, ExistingPerNode: []int{0, 6}, CreateWorkers: 16, Repeat: 1},
		P2: P2Config{Concurrency: []int{1, 8, 64}, Duration: metav1.Duration{Duration: 5 * time.Second}, Warmup: metav1.Duration{Duration: time.Second}, CreatePods: 300, PacedRate: 2000, PacedClients: 8},
		P3: P3Config{ReactionClasses: 150, SteadyClasses: 500, PodsPerClass: 10, BurstClasses: 100, BurstPodsPerClass: 10, IdleWindow: metav1.Duration{Duration: 35 * time.Second}, ReactionInterval: metav1.Duration{Duration: 50 * time.Millisecond}, CreateWorkers: 8},
		P4: p4Sizes,
	},
	"full": {
		P1: P1Config{Nodes: []int{500, 1000, 5000}, Pods: 2000, NodesPerClass: 10, ExistingPerNode: []int{0, 6}, CreateWorkers: 16, Repeat: 2},
		P2: P2Config{Concurrency: []int{1, 8, 64}, Duration: metav1.Duration{Duration: 20 * time.Second}, Warmup: metav1.Duration{Duration: 2 * time.Second}, CreatePods: 2000, PacedRate: 2000, PacedClients: 8},
		P3: P3Config{ReactionClasses: 1000, SteadyClasses: 5000, PodsPerClass: 10, BurstClasses: 100, BurstPodsPerClass: 10, IdleWindow: metav1.Duration{Duration: 65 * time.Second}, ReactionInterval: metav1.Duration{Duration: 50 * time.Millisecond}, CreateWorkers: 8},
		P4: p4Sizes,
	},
}
