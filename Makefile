# IPP build, test and benchmark targets. `make help` lists them.
GO ?= go
BIN ?= bin/ipp
IMAGE ?= ipp:dev
# Seeds the fuzzers run from in `make test`; `make fuzz` explores further.
FUZZTIME ?= 30s

.PHONY: help build generate test test-unit test-e2e vet fmt fuzz bench bench-full sandbox image manifests clean

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## Build bin/ipp
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/ipp

# The generators are pinned by go.mod's `tool` directives: nothing to install. hack's
# TestGeneratedFilesAreCurrent (in test-unit) fails when the committed outputs are stale.
generate: ## Regenerate from pkg/apis: deepcopy and deploy/base/crds (controller-gen), pkg/generated (code-generator)
	./hack/update-codegen.sh

test: vet test-unit test-e2e ## Run every test: vet, unit (race), e2e on the in-process cluster

test-unit: ## Unit tests of the main module, with the race detector
	$(GO) test -race -count=1 ./...

# e2e/tests runs its controller tests on every provider (gce, then ec2). One provider:
#   cd e2e && go test ./tests -args -provider=ec2      or      make test-e2e IPP_E2E_PROVIDER=ec2
test-e2e: ## End-to-end tests: in-process control plane and cloud emulators, on gce and ec2 (one: cd e2e && go test ./tests -args -provider=ec2)
	cd e2e && $(GO) test -count=1 -timeout 40m ./...

vet: ## go vet and gofmt over both modules
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	cd e2e && $(GO) vet ./...

fmt: ## gofmt -w every Go file
	gofmt -w $$(git ls-files '*.go')

fuzz: ## Explore the admission fuzzers for FUZZTIME each
	@for f in $$($(GO) test -list '^Fuzz' ./pkg/admission/ | grep ^Fuzz); do \
		$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) ./pkg/admission/ || exit 1; done

bench: build ## Benchmarks P1-P4 at short sizes (minutes on 2 cores): JSON, p1.png and profiles in e2e/bench/results/short
	cd e2e && $(GO) run ./cmd/bench -suite short -ipp $(abspath $(BIN)) -out bench/results/short

bench-full: build ## Benchmarks P1-P3 at the sizes of issue 6, and P4 (5000 nodes, 50,000 Pods; about an hour on 2 cores): e2e/bench/results/full
	cd e2e && $(GO) run ./cmd/bench -suite full -ipp $(abspath $(BIN)) -out bench/results/full

sandbox: ## Run the sandbox: an in-process cluster, the GCE emulator and ipp, with three example classes, one on two nodes
	cd e2e && $(GO) run ./cmd/sandbox

image: ## Build the container image IMAGE (needs a Docker engine): docker build -t $(IMAGE) .
	docker build -t $(IMAGE) .

manifests: ## Print the gce overlay's manifests with IMAGE (IPP_OVERLAY=ec2|cert-manager for others)
	@./ipp.yaml.sh $(IMAGE)

clean: ## Remove build output
	rm -rf bin
