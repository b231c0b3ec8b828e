package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The real binary, as libvirt runs it: argv, stdin, exit code.
func TestHookBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "virtap-hook")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if out, err := exec.Command("go", "list", "-deps", ".").Output(); err != nil || bytes.Contains(out, []byte("libvirt.org/go/libvirt\n")) {
		t.Fatalf("the hook must not link libvirt (err %v)", err)
	}
	run := func(stdin string, args ...string) (int, string, string) {
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{"VIRTAP_STATE_DIR=" + filepath.Join(t.TempDir(), "s"), "VIRTAP_POLICY=" + missingParentPolicy(t)} // libvirt's bare environment
		cmd.Stdin = strings.NewReader(stdin)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, o.String(), e.String()
	}
	if code, _, errOut := run("", "only", "two"); code != 2 || !strings.Contains(errOut, "usage") {
		t.Fatalf("bad usage: exit %d, %q", code, errOut)
	}
	plain := "<domain type='qemu'><name>p</name><devices/></domain>"
	for _, op := range []string{"prepare", "start", "started", "stopped", "release", "migrate", "restore", "reconnect", "attach"} {
		if code, out, errOut := run(plain, "p", op, "begin", "-"); code != 0 || out != "" || errOut != "" {
			t.Fatalf("%s of an unmanaged domain: exit %d, stdout %q, stderr %q", op, code, out, errOut)
		}
	}
	// A managed domain whose parent does not exist: exit 1 and a message
	// virsh start can show.
	managed := `<domain type='qemu'><name>m</name><uuid>3c7a5a53-8f0e-4d6b-9a31-2b4f1c9d7e10</uuid><metadata><virtap:virtap xmlns:virtap="https://virtap.dev/xmlns/domain/1"><virtap:interface mac="52:54:00:00:00:01" network="lan" kind="macvtap" mode="bridge" parent="nosuchnic0"/></virtap:virtap></metadata><devices/></domain>`
	code, out, errOut := run(managed, "m", "prepare", "begin", "-")
	if code != 1 || out != "" || !strings.Contains(errOut, "parent nosuchnic0 does not exist") {
		t.Fatalf("prepare with a missing parent: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, _, _ := run(managed, "m", "release", "end", "-"); code != 0 {
		t.Fatalf("release must exit 0, got %d", code)
	}
	if code, out, _ := run("", "--version"); code != 0 || !strings.Contains(out, "virtap-hook") {
		t.Fatalf("--version: %d %q", code, out)
	}
}

// missingParentPolicy writes a policy whose network "lan" sits on a parent
// this host lacks: the hook takes every value from the current policy, so
// the refusal the tests look for must come from the policy, not the record.
func missingParentPolicy(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.toml")
	pol := "[networks.lan]\nkind = \"macvtap\"\nparent = \"nosuchnic0\"\nmode = \"bridge\"\n"
	if err := os.WriteFile(p, []byte(pol), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
