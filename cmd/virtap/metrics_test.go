package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtap/virtap/internal/nstest"
)

// The command: flags, stdout, --textfile, a bad directory is exit 1.
func TestMetricsCommand(t *testing.T) {
	nstest.RequireRoot(t) // it reads netlink and nftables
	nstest.New(t)         // ... of a fresh namespace, not the host's
	state := t.TempDir()
	pol := "../../examples/ipvtap-untrusted/policy.toml"
	code, out, errOut := capture(t, "--policy", pol, "--state-dir", state, "metrics")
	if code != 0 || !strings.Contains(out, `virtap_address_pool_size{network="edge"} 90`) || !strings.Contains(out, "virtap_managed_guests 0") {
		t.Fatalf("metrics: exit %d\nstdout:\n%s\nstderr: %s", code, out, errOut)
	}
	dir := t.TempDir()
	if code, out, errOut := capture(t, "--policy", pol, "--state-dir", state, "metrics", "--textfile", dir); code != 0 || out != "" {
		t.Fatalf("metrics --textfile: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "virtap.prom")); err != nil || !strings.Contains(string(b), "virtap_build_info") {
		t.Fatalf("virtap.prom: %v\n%s", err, b)
	}
	if code, _, errOut := capture(t, "--policy", pol, "--state-dir", state, "metrics", "--textfile", filepath.Join(dir, "nope")); code != 1 || !strings.Contains(errOut, "--textfile") {
		t.Fatalf("missing directory: exit %d, stderr %q", code, errOut)
	}
}
