package app

import (
	"slices"
	"testing"
)

// TestRootCommandTree checks the explicit wiring: every subcommand is there, and two command trees
// share no flag values (the provider flags used to live in package-level factories).
func TestRootCommandTree(t *testing.T) {
	a, b := NewRootCommand(), NewRootCommand()
	var names []string
	for _, c := range a.Commands() {
		names = append(names, c.Name())
	}
	for _, want := range []string{"cleanup", "controller", "run", "webhook"} {
		if !slices.Contains(names, want) {
			t.Errorf("subcommands %v lack %q", names, want)
		}
	}
	ca, _, err := a.Find([]string{"controller"})
	if err != nil {
		t.Fatal(err)
	}
	cb, _, err := b.Find([]string{"controller"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Flags().Set("gce-zone", "europe-west1-b"); err != nil {
		t.Fatal(err)
	}
	if got := cb.Flags().Lookup("gce-zone").Value.String(); got != "" {
		t.Errorf("--gce-zone of a second command tree = %q after setting the first's; want it unset", got)
	}
}
