package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/virtap/virtap/provision/policy"
)

// virtap-policy.toml(5) is the README's policy reference: every key of a
// network is in it, rendered as roff.
func TestPolicyManPageNamesEveryKey(t *testing.T) {
	page, err := policyManPage("../../README.md", time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	text := string(page)
	if !strings.HasPrefix(text, ".nh\n") && !strings.Contains(text, `.TH "VIRTAP-POLICY.TOML" "5"`) {
		t.Fatalf("no .TH header:\n%.300s", text)
	}
	keys := append(policy.NetworkKeys(), "state_dir", "mac_prefix", "hosts.", "guests.")
	for _, k := range keys {
		k = strings.Trim(k, "[]")
		if !strings.Contains(strings.ReplaceAll(text, `\_`, "_"), k) {
			t.Errorf("virtap-policy.toml(5) does not name %s", k)
		}
	}
}

// Depends names what virtap links, with minimum versions.
func TestDependsFromELF(t *testing.T) {
	exe, err := os.Executable() // this test binary links libc like virtap
	if err != nil {
		t.Fatal(err)
	}
	deps, err := elfDepends(exe)
	if err != nil {
		t.Fatal(err)
	}
	if len(deps) == 0 || !strings.HasPrefix(deps[0], "libc6 (>= ") {
		t.Errorf("Depends of a binary that links libc: %q", deps)
	}
}
