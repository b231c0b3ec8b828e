package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtap/virtap/hooks"
)

// policy check reads stdin for "-", and prints JSON (--format json or its
// alias --json) and YAML with a schema version and queues "auto".
func TestPolicyCheckStdinAndFormats(t *testing.T) {
	in, err := os.Open("../../examples/fleet-two-hosts/policy.toml")
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	old := os.Stdin
	os.Stdin = in
	code, out, errOut := capture(t, "policy", "check", "--host", "node2", "--format", "json", "-")
	os.Stdin = old
	var doc struct {
		SchemaVersion int              `json:"schema_version"`
		File          string           `json:"file"`
		Networks      []map[string]any `json:"networks"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || doc.SchemaVersion != SchemaVersion || doc.File != "stdin" || len(doc.Networks) == 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	if q := doc.Networks[0]["queues"]; q != "auto" && q != float64(4) {
		t.Fatalf("queues %v", q)
	}
	p := "../../examples/macvtap-bridge/policy.toml"
	if code, out, _ := capture(t, "policy", "check", "--json", p); code != 0 || !strings.Contains(out, `"queues": "auto"`) || !strings.Contains(out, `"schema_version": 1`) {
		t.Fatalf("--json: %d %s", code, out)
	}
	if code, out, _ := capture(t, "policy", "check", "--format", "yaml", p); code != 0 || !strings.Contains(out, "schema_version: 1\n") || !strings.Contains(out, "    queues: auto\n") {
		t.Fatalf("yaml: %d %s", code, out)
	}
	if code, _, errOut := capture(t, "policy", "check", "--format", "xml", p); code != 2 || !strings.Contains(errOut, "allowed: table, json, yaml") {
		t.Fatalf("bad format: %d %s", code, errOut)
	}
	if code, _, errOut := capture(t, "policy", "check", "--json", "--format", "yaml", p); code != 2 || !strings.Contains(errOut, "contradict") {
		t.Fatalf("--json --format yaml: %d %s", code, errOut)
	}
	// An unknown --host warns; --strict fails.
	if code, _, errOut := capture(t, "policy", "check", "--host", "node3", p); code != 0 || !strings.Contains(errOut, "warning: no [hosts.node3] in "+p+"; using the defaults") {
		t.Fatalf("--host node3: %d %s", code, errOut)
	}
	if code, _, _ := capture(t, "policy", "check", "--strict", "--host", "node3", p); code != 1 {
		t.Fatalf("--strict --host node3: %d", code)
	}
}

// status --json: lists are [] (never null), a schema version; a policy
// that does not load is reported, not ignored.
func TestStatusJSON(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "p.toml")
	os.WriteFile(pol, []byte("[networks.pool]\nkind = \"passthrough\"\ndevices = [\"vtxgone0\"]\n"), 0o600)
	code, out, errOut := capture(t, "--policy", pol, "--state-dir", filepath.Join(dir, "state"), "status", "--json", "--connect", "test:///default")
	if code != 0 || strings.Contains(out, "null") || !strings.Contains(out, `"schema_version": 1`) || !strings.Contains(out, `"guests": []`) || !strings.Contains(out, `"leases": []`) {
		t.Fatalf("exit %d: %s\n%s", code, out, errOut)
	}
	// A pool member that is not there is missing, not busy (as doctor says).
	if !strings.Contains(out, `"missing": [`+"\n"+`        "vtxgone0"`) || !strings.Contains(out, `"busy": []`) {
		t.Fatalf("pool: %s", out)
	}
	code, out, _ = capture(t, "--policy", pol, "--state-dir", filepath.Join(dir, "state"), "status", "--connect", "test:///default")
	if code != 0 || !strings.Contains(out, "BUSY OUTSIDE VIRTAP  MISSING") || !strings.Contains(out, "-                    vtxgone0") {
		t.Fatalf("table: %s", out)
	}
	os.WriteFile(pol, []byte("[networks.lan]\nkind = \"macvtap\"\n"), 0o600)
	code, out, errOut = capture(t, "--policy", pol, "--state-dir", filepath.Join(dir, "state"), "status", "--json", "--connect", "test:///default")
	if code != 1 || !strings.Contains(out, `"policy_error": "`+pol+`:1: networks.lan.parent: is required`) || !strings.Contains(errOut, "policy does not load") {
		t.Fatalf("bad policy: exit %d\n%s\n%s", code, out, errOut)
	}
}

// virtap version names virtap, the installed hook (asked with --version)
// and libvirt's library and daemon.
func TestVersion(t *testing.T) {
	hd := t.TempDir()
	os.MkdirAll(filepath.Join(hd, "qemu.d"), 0o755)
	code, out, errOut := capture(t, "version", "--hooks-dir", hd, "--connect", "test:///default", "--format", "json")
	var v versionView
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	if v.Virtap.Version != version || !strings.Contains(v.Hook.Error, "no hook") || v.Libvirt.Library == "" || v.Libvirt.Daemon == "" || v.Libvirt.URI != "test:///default" {
		t.Fatalf("%+v", v)
	}
	// A foreign file is not run.
	os.WriteFile(hooks.HookPath(hd), []byte("#!/bin/sh\necho pwned\n"), 0o755)
	if _, out, _ := capture(t, "version", "--hooks-dir", hd, "--connect", "test:///default"); !strings.Contains(out, "is not virtap's hook") {
		t.Fatalf("foreign hook: %s", out)
	}
}

// hooks install refuses a policy that is missing or does not validate, and
// writes absolute paths (libvirtd runs hooks from /).
func TestHooksInstallChecksPolicy(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "virtap-hook")
	os.WriteFile(bin, []byte("fake "+hooks.BinaryMarker), 0o755)
	hd := filepath.Join(dir, "hooks")
	code, out, errOut := capture(t, "--policy", "/nonexistent.toml", "hooks", "install", "--hooks-dir", hd, "--hook-binary", bin)
	if code != 1 || out != "" || !strings.Contains(errOut, "/nonexistent.toml") || !strings.Contains(errOut, "not installed") {
		t.Fatalf("missing policy: %d %q %s", code, out, errOut)
	}
	if _, err := os.Stat(hooks.HookPath(hd)); err == nil {
		t.Fatal("a hook was installed for a missing policy")
	}
	os.WriteFile(filepath.Join(dir, "bad.toml"), []byte("[networks.lan]\nkind = \"macvtap\"\n"), 0o600)
	if code, _, errOut := capture(t, "--policy", filepath.Join(dir, "bad.toml"), "hooks", "install", "--hooks-dir", hd, "--hook-binary", bin); code != 1 || !strings.Contains(errOut, "parent: is required") {
		t.Fatalf("bad policy: %d %s", code, errOut)
	}
	os.WriteFile(filepath.Join(dir, "p.toml"), []byte("[networks.lan]\nkind = \"macvtap\"\nparent = \"eth0\"\n"), 0o600)
	wd, _ := os.Getwd()
	defer os.Chdir(wd)
	os.Chdir(dir)
	if code, _, errOut := capture(t, "--policy", "p.toml", "--state-dir", "state", "hooks", "install", "--hooks-dir", hd, "--hook-binary", bin); code != 0 {
		t.Fatalf("install: %d %s", code, errOut)
	}
	cfg, err := hooks.LoadHookConfig(hooks.HookPath(hd))
	if err != nil || cfg.Policy != filepath.Join(dir, "p.toml") || cfg.StateDir != filepath.Join(dir, "state") {
		t.Fatalf("config %+v %v", cfg, err)
	}
}

// Shell completion offers the policy's hosts and networks.
func TestCompletion(t *testing.T) {
	p := "../../examples/fleet-two-hosts/policy.toml"
	code, out, _ := capture(t, "__complete", "--policy", p, "provision", "--host", "")
	if code != 0 || !strings.Contains(out, "node2\n") || !strings.Contains(out, ":4\n") {
		t.Fatalf("hosts: %d %q", code, out)
	}
	pol := filepath.Join(t.TempDir(), "p.toml")
	os.WriteFile(pol, []byte("[networks.fast]\nkind = \"passthrough\"\nmode = \"hostdev\"\npf = \"enp1s0\"\n[networks.lan]\nkind = \"macvtap\"\nparent = \"eth0\"\n"), 0o600)
	code, out, _ = capture(t, "__complete", "--policy", pol, "policy", "netxml", "f")
	if code != 0 || !strings.HasPrefix(out, "fast\n") || strings.Contains(out, "lan") {
		t.Fatalf("networks: %d %q", code, out)
	}
}
