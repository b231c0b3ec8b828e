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
		{args: []string{"--policy", good, "provision", "--host", "h", "--diff", guest}, code: 0, out: `+  <source dev="eth0" mode="bridge"/>`},
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
}
