package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func checkFiles(t *testing.T, nets ...string) (pol, guest string) {
	t.Helper()
	dir := t.TempDir()
	pol = filepath.Join(dir, "p.toml")
	if err := os.WriteFile(pol, []byte("[networks.lan]\nkind = \"macvtap\"\nparent = \"eth0\"\n\n[hosts.node2.networks.lan]\nparent = \"eth1\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("<domain type='test'>\n  <name>g</name>\n  <uuid>3c7a5a53-8f0e-4d6b-9a31-2b4f1c9d7e10</uuid>\n  <memory>65536</memory>\n  <os><type arch='x86_64'>hvm</type></os>\n  <devices>\n")
	for _, n := range nets {
		b.WriteString("    <interface type='network'><source network='" + n + "'/></interface>\n")
	}
	b.WriteString("  </devices>\n</domain>\n")
	guest = filepath.Join(dir, "g.xml")
	if err := os.WriteFile(guest, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return pol, guest
}

// A network that is neither the policy's nor libvirt's is a warning with
// the closest policy network, naming the file and the element; --strict
// makes it an error. libvirt's networks are asked read-only (the test
// driver has "default").
func TestProvisionUnknownNetwork(t *testing.T) {
	pol, guest := checkFiles(t, "lan", "lna", "default")
	base := []string{"--policy", pol, "provision", "--host", "node2", "--connect", "test:///default"}
	code, out, errOut := capture(t, append(base, guest)...)
	want := guest + `: domain XML line 8: interface #2 (network "lna"): network "lna" is not in ` + pol + ` for host "node2" nor a libvirt network; did you mean 'lan'?`
	if code != 0 || !strings.Contains(out, `<source dev="eth1"`) || !strings.Contains(errOut, "virtap: warning: "+want) {
		t.Fatalf("exit %d\nstderr: %s", code, errOut)
	}
	if strings.Contains(errOut, `"default"`) {
		t.Fatalf("libvirt's default network was reported: %s", errOut)
	}
	code, out, errOut = capture(t, append(base, "--strict", guest)...)
	if code != 1 || out != "" || !strings.Contains(errOut, want) || !strings.Contains(errOut, "--strict") {
		t.Fatalf("--strict: exit %d, stdout %q, stderr %s", code, out, errOut)
	}
	// No libvirt to ask: still a warning, saying why libvirt was not asked.
	code, _, errOut = capture(t, "--policy", pol, "provision", "--host", "node2", "--connect", "test+unix:///nonexistent?socket=/nonexistent", guest)
	if code != 0 || !strings.Contains(errOut, "did you mean 'lan'?") || !strings.Contains(errOut, "libvirt's networks could not be read") || strings.Contains(errOut, "virError(") {
		t.Fatalf("without libvirt: exit %d, %s", code, errOut)
	}
}

// --host without a [hosts.NAME] section: a warning, an error with --strict.
func TestProvisionUnknownHost(t *testing.T) {
	pol, guest := checkFiles(t, "lan")
	code, out, errOut := capture(t, "--policy", pol, "provision", "--host", "node3", guest)
	want := "no [hosts.node3] in " + pol + "; using the defaults"
	if code != 0 || !strings.Contains(out, `<source dev="eth0"`) || !strings.Contains(errOut, "virtap: warning: "+want) {
		t.Fatalf("exit %d, %s", code, errOut)
	}
	if code, out, errOut := capture(t, "--policy", pol, "provision", "--strict", "--host", "node3", guest); code != 1 || out != "" || !strings.Contains(errOut, want) {
		t.Fatalf("--strict: exit %d, %q, %s", code, out, errOut)
	}
	if _, _, errOut := capture(t, "--policy", pol, "provision", "--host", "node2", guest); errOut != "" {
		t.Fatalf("a host with a section warned: %s", errOut)
	}
}

// define honours LIBVIRT_DEFAULT_URI when --connect is not given, and
// prints libvirt's errors as their message.
func TestDefineDefaultURI(t *testing.T) {
	pol, guest := checkFiles(t, "lan")
	t.Setenv("LIBVIRT_DEFAULT_URI", "test:///default")
	code, out, errOut := capture(t, "--policy", pol, "define", "--host", "node2", guest)
	if code != 0 || !strings.Contains(out, "defined g (") {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	t.Setenv("LIBVIRT_DEFAULT_URI", "test+unix:///nonexistent?socket=/nonexistent")
	code, _, errOut = capture(t, "--policy", pol, "define", "--host", "node2", guest)
	if code != 1 || strings.Contains(errOut, "virError(") || !strings.Contains(errOut, "connect to libvirt's default URI") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

// --cloud-init writes leases: it needs the state directory said outright.
func TestCloudInitNeedsStateDir(t *testing.T) {
	t.Setenv("VIRTAP_STATE_DIR", "")
	code, out, errOut := capture(t, "--policy", "../../examples/ipvtap-untrusted/policy.toml", "provision", "--host", "node1", "--cloud-init", t.TempDir(), "../../examples/ipvtap-untrusted/guest.xml")
	if code != 2 || out != "" || !strings.Contains(errOut, "--cloud-init leases addresses in the state directory that the hook uses: give it with --state-dir") {
		t.Fatalf("exit %d, %q, %s", code, out, errOut)
	}
}
