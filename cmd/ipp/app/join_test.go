package app

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
)

// testPin is a well-formed --join-ca-cert-hash.
var testPin = "sha256:" + strings.Repeat("5a", 32)

// TestJoinRequiresCAPin checks the join flags: a join through --join-endpoint must pin the
// cluster CA with a well-formed hash, or opt out of the check explicitly.
func TestJoinRequiresCAPin(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "no join", args: nil},
		{name: "pinned", args: []string{"--join-endpoint=10.0.0.1:6443", "--join-ca-cert-hash=" + testPin}},
		{name: "pinned, shared token", args: []string{"--join-endpoint=10.0.0.1:6443", "--join-ca-cert-hash=" + testPin, "--join-token=abcdef.0123456789abcdef"}},
		{name: "explicitly insecure", args: []string{"--join-endpoint=10.0.0.1:6443", "--join-insecure-skip-ca-verification"}},
		{name: "no pin", args: []string{"--join-endpoint=10.0.0.1:6443"}, wantErr: "--join-endpoint 10.0.0.1:6443 without --join-ca-cert-hash"},
		{name: "no pin, shared token", args: []string{"--join-endpoint=10.0.0.1:6443", "--join-token=abcdef.0123456789abcdef"}, wantErr: "without --join-ca-cert-hash"},
		{name: "pin too short", args: []string{"--join-endpoint=10.0.0.1:6443", "--join-ca-cert-hash=sha256:00ff"}, wantErr: "invalid --join-ca-cert-hash"},
		{name: "pin without algorithm", args: []string{"--join-endpoint=10.0.0.1:6443", "--join-ca-cert-hash=" + strings.Repeat("5a", 32)}, wantErr: "invalid --join-ca-cert-hash"},
		{name: "pin not hex", args: []string{"--join-endpoint=10.0.0.1:6443", "--join-ca-cert-hash=sha256:" + strings.Repeat("g", 64)}, wantErr: "sha256:<64 hex digits>"},
		{name: "malformed pin without a join", args: []string{"--join-ca-cert-hash=abc"}, wantErr: "invalid --join-ca-cert-hash"},
		{name: "pin and insecure", args: []string{"--join-endpoint=10.0.0.1:6443", "--join-ca-cert-hash=" + testPin, "--join-insecure-skip-ca-verification"}, wantErr: "give only the pin"},
		{name: "insecure without a join", args: []string{"--join-insecure-skip-ca-verification"}, wantErr: "without --join-endpoint"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := &providerOptions{provider: "gce"}
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			o.addFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := o.validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Errorf("validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("validate = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestCommandsRefuseUnpinnedJoin runs every subcommand that has --join-endpoint with a join that
// pins nothing: each must refuse to start, naming --join-ca-cert-hash, before it reaches any
// API server or cloud. A new subcommand with the join flags is covered without a change here.
func TestCommandsRefuseUnpinnedJoin(t *testing.T) {
	// Flags each subcommand needs to get as far as its provider's flags.
	needs := map[string][]string{
		"run":        {"--tls-cert-file=c", "--tls-private-key-file=k"},
		"controller": {},
		"cleanup":    {"--provider=gce", "--yes"},
	}
	var covered []string
	for _, cmd := range NewRootCommand().Commands() {
		if cmd.Flags().Lookup("join-endpoint") == nil {
			continue
		}
		name := cmd.Name()
		covered = append(covered, name)
		t.Run(name, func(t *testing.T) {
			extra, ok := needs[name]
			if !ok {
				t.Fatalf("ipp %s has --join-endpoint: add the flags it needs to start to this test", name)
			}
			args := append([]string{name, "--kubeconfig=" + kubeconfigFile(t), "--join-endpoint=10.0.0.1:6443"}, extra...)
			root := NewRootCommand()
			root.SetArgs(args)
			root.SetOut(&bytes.Buffer{})
			root.SetErr(&bytes.Buffer{})
			err := root.Execute()
			if err == nil || !strings.Contains(err.Error(), "without --join-ca-cert-hash") {
				t.Errorf("ipp %s: err = %v, want a refusal naming --join-ca-cert-hash", strings.Join(args, " "), err)
			}
		})
	}
	slices.Sort(covered)
	if want := []string{"cleanup", "controller", "run"}; !slices.Equal(covered, want) {
		t.Errorf("subcommands with --join-endpoint = %v, want %v", covered, want)
	}
}

// TestInsecureJoinWarns checks that a provider built with the explicit opt-out logs a WARNING
// that names it, and that a pinned join logs none.
func TestInsecureJoinWarns(t *testing.T) {
	gce := []string{"--provider=gce", "--gce-project=p", "--gce-zone=z-a", "--gce-image=i", "--gce-endpoint=http://127.0.0.1:1", "--join-endpoint=10.0.0.1:6443"}
	for _, tc := range []struct {
		name     string
		args     []string
		wantWarn bool
	}{
		{"insecure", append(slices.Clone(gce), "--join-insecure-skip-ca-verification"), true},
		{"pinned", append(slices.Clone(gce), "--join-ca-cert-hash="+testPin), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.BufferLogs(true)))
			ctx := klog.NewContext(t.Context(), logger)
			o := &providerOptions{}
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			o.addFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if _, err := o.build(ctx, "ipp"); err != nil {
				t.Fatalf("build: %v", err)
			}
			log := logger.GetSink().(ktesting.Underlier).GetBuffer().String()
			warned := strings.Contains(log, "WARNING") && strings.Contains(log, "--join-insecure-skip-ca-verification")
			if warned != tc.wantWarn {
				t.Errorf("warned = %v, want %v; log:\n%s", warned, tc.wantWarn, log)
			}
		})
	}
}
