package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// capture runs virtap in-process and returns exit code, stdout and stderr.
func capture(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	oldOut, oldErr := os.Stdout, os.Stderr
	ro, wo, _ := os.Pipe()
	re, we, _ := os.Pipe()
	os.Stdout, os.Stderr = wo, we
	outc, errc := make(chan string), make(chan string)
	go func() { b, _ := io.ReadAll(ro); outc <- string(b) }()
	go func() { b, _ := io.ReadAll(re); errc <- string(b) }()
	code := run(args)
	wo.Close()
	we.Close()
	os.Stdout, os.Stderr = oldOut, oldErr
	return code, <-outc, <-errc
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "p.toml")
	os.WriteFile(good, []byte("[networks.lan]\nkind = \"macvtap\"\nparent = \"eth0\"\n"), 0o600)
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[networks.lan]\nkind = \"macvtap\"\nparent = \"eth0\"\nmode = \"bridg\"\n"), 0o600)
	guest := filepath.Join(dir, "g.xml")
	os.WriteFile(guest, []byte("<domain type='qemu'><name>g</name><uuid>3c7a5a53-8f0e-4d6b-9a31-2b4f1c9d7e10</uuid><devices><interface type='network'><source network='lan'/></interface></devices></domain>"), 0o600)

	cases := []struct {
		args      []string
		code      int
		out, err  string
		emptyOut  bool
		emptyErrs bool
	}{
		{args: []string{"--policy", good, "provision", "--host", "h", guest}, code: 0, out: `<source dev="eth0" mode="bridge"/>`},
		{args: []string{"--policy", good, "provision", "--host", "h", "--diff", guest}, code: 1, out: `+  <source dev="eth0" mode="bridge"/>`},
		{args: []string{"--policy", good, "provision", "--host", "h", "--diff", "-o", filepath.Join(dir, "x.xml"), guest}, code: 2, err: "--diff changes nothing", emptyOut: true},
		{args: []string{"--policy", good, "provision", "--host", "h", "-o", "/nonexistent/dir/x.xml", guest}, code: 1, err: "write /nonexistent/dir/x.xml: directory /nonexistent/dir does not exist", emptyOut: true},
		{args: []string{"--policy", bad, "provision", guest}, code: 1, err: "bad.toml:4: networks.lan.mode", emptyOut: true},
		{args: []string{"--policy", good, "provision", filepath.Join(dir, "missing.xml")}, code: 1, emptyOut: true},
		{args: []string{"--policy", good, "provision"}, code: 2, err: "accepts 1 arg", emptyOut: true},
		{args: []string{"--policy", good, "provision", "--bogus", guest}, code: 2, err: "unknown flag", emptyOut: true},
		{args: []string{"nosuchcommand"}, code: 2, err: "unknown command", emptyOut: true},
		{args: []string{"--log-level", "loud", "policy", "check", good}, code: 2, err: "--log-level"},
		{args: []string{"policy", "check", good, "--host", "h"}, code: 0, out: "lan      macvtap  eth0   bridge"},
		{args: []string{"policy", "check", bad}, code: 1, err: `"bridg" is not allowed; allowed: bridge, vepa, private, passthrough`},
		{args: []string{"--policy", good, "hook", "qemu", "g", "prepare", "begin"}, code: 2},
	}
	for _, c := range cases {
		code, out, errOut := capture(t, c.args...)
		name := strings.Join(c.args, " ")
		if code != c.code {
			t.Errorf("%s: exit %d, want %d (stderr %q)", name, code, c.code, errOut)
		}
		if c.out != "" && !strings.Contains(out, c.out) {
			t.Errorf("%s: stdout lacks %q:\n%s", name, c.out, out)
		}
		if c.err != "" && !strings.Contains(errOut, c.err) {
			t.Errorf("%s: stderr lacks %q: %q", name, c.err, errOut)
		}
		if c.emptyOut && out != "" {
			t.Errorf("%s: failed but printed to stdout: %q", name, out)
		}
	}
	// -o writes the file; stdin "-" reads the document.
	outFile := filepath.Join(dir, "out.xml")
	if code, _, e := capture(t, "--policy", good, "provision", "--host", "h", "-o", outFile, guest); code != 0 {
		t.Fatalf("-o: %d %s", code, e)
	}
	written, _ := os.ReadFile(outFile)
	in, _ := os.Open(guest)
	defer in.Close()
	oldIn := os.Stdin
	os.Stdin = in
	code, out, _ := capture(t, "--policy", good, "provision", "--host", "h", "-")
	os.Stdin = oldIn
	if code != 0 || !bytes.Equal([]byte(out), written) {
		t.Fatalf("stdin and -o disagree (%d)", code)
	}
	// --diff of virtap's own output: nothing would change, exit 0, no output.
	if code, out, e := capture(t, "--policy", good, "provision", "--host", "h", "--diff", outFile); code != 0 || out != "" {
		t.Fatalf("--diff of a provisioned file: exit %d, %q, %s", code, out, e)
	}
}

// define goes through the libvirt API; libvirt's test driver stands in for
// a host (the end-to-end suite uses the real qemu:///system).
func TestDefineThroughTheAPI(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "p.toml")
	os.WriteFile(pol, []byte("[networks.lan]\nkind = \"macvtap\"\nparent = \"eth0\"\n\n[networks.gpu]\nkind = \"passthrough\"\nmode = \"hostdev\"\npf = \"enp65s0f0\"\n"), 0o600)
	guest := filepath.Join(dir, "g.xml")
	os.WriteFile(guest, []byte("<domain type='test'><name>g</name><memory>65536</memory><os><type arch='x86_64'>hvm</type></os><devices><interface type='network'><source network='lan'/></interface><interface type='network'><source network='gpu'/></interface></devices></domain>"), 0o600)
	code, out, errOut := capture(t, "--policy", pol, "define", "--connect", "test:///default", "--host", "h", guest)
	if code != 0 || !strings.Contains(out, "defined g (") || !strings.Contains(out, "with 2 virtap interface(s)") || !strings.Contains(out, "defined libvirt network virtap-gpu") {
		t.Fatalf("define: exit %d\n%s\n%s", code, out, errOut)
	}
	// Schema validation is on: an invalid document is refused by libvirt.
	os.WriteFile(guest, []byte("<domain type='test'><name>g</name><memory>65536</memory><os><type arch='x86_64'>hvm</type></os><devices><interface type='network'><source network='lan'/></interface><bogus/></devices></domain>"), 0o600)
	if code, out, errOut := capture(t, "--policy", pol, "define", "--connect", "test:///default", "--host", "h", guest); code != 1 || out != "" || !strings.Contains(errOut, "define:") {
		t.Fatalf("invalid domain: exit %d, %q, %q", code, out, errOut)
	}
}

func TestProvisionCloudInit(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	seed := filepath.Join(dir, "seed")
	args := []string{"--policy", "../../examples/ipvtap-untrusted/policy.toml", "--state-dir", state, "provision", "--host", "node1", "--cloud-init", seed, "../../examples/ipvtap-untrusted/guest.xml"}
	code, out, errOut := capture(t, args...)
	if code != 0 || !strings.Contains(out, `<target dev="vti`) {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	nc, _ := os.ReadFile(filepath.Join(seed, "network-config"))
	md, _ := os.ReadFile(filepath.Join(seed, "meta-data"))
	want := "version: 2\nethernets:\n  virtap0:\n    match:\n      macaddress: \"52:54:00:12:34:56\"\n    addresses:\n      - 198.51.100.10/24\n    routes:\n      - to: 0.0.0.0/0\n        via: 198.51.100.1\n        on-link: true\n"
	if !strings.HasSuffix(string(nc), want) || !strings.Contains(string(md), "instance-id: 4d5e6f7a-8b9c-4d0e-9f1a-2b3c4d5e6f7a\nlocal-hostname: untrusted1\n") {
		t.Fatalf("network-config:\n%s\nmeta-data:\n%s", nc, md)
	}
	// Stable: again the same address; another guest gets the next one.
	if code, _, _ := capture(t, args...); code != 0 {
		t.Fatal("second run failed")
	}
	if nc2, _ := os.ReadFile(filepath.Join(seed, "network-config")); string(nc2) != string(nc) {
		t.Fatalf("the lease changed:\n%s", nc2)
	}
	// A domain with no address pool: a clear error.
	code, _, errOut = capture(t, "--policy", "../../examples/macvtap-bridge/policy.toml", "--state-dir", state, "provision", "--cloud-init", seed, "../../examples/macvtap-bridge/guest.xml")
	if code != 1 || !strings.Contains(errOut, "address pool") {
		t.Fatalf("no pool: %d %s", code, errOut)
	}
}
