package main

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtap/virtap/internal/nstest"
	"github.com/virtap/virtap/test/harness"
)

// The package as an operator meets it: built with nfpm, checked by
// lintian, installed with dpkg, the hook run from where dpkg put it, the
// man pages read with man, then removed and purged. It changes this host's
// package database, so it holds the lock the end-to-end suite holds for
// /etc/libvirt/hooks, and puts back any virtap hook, hook settings and
// policy that were there before.
func TestDebInstallRemove(t *testing.T) {
	nstest.RequireRoot(t)
	for _, tool := range []string{"dpkg", "dpkg-deb", "lintian", "man"} {
		if _, err := exec.LookPath(tool); err != nil {
			if nstest.InCI() {
				t.Fatalf("%s missing (hack/deps.sh installs it; CI=true: not skipping)", tool)
			}
			t.Skipf("%s missing: run hack/deps.sh", tool)
		}
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "virtap").Output(); err == nil && strings.Contains(string(out), "installed") {
		t.Fatalf("the virtap package is installed on this host (%s); this test would remove it: dpkg --purge virtap first", out)
	}
	unlock, err := harness.LockHost(30*time.Minute, func(s string) { t.Log(s) })
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	deb := buildDeb(t)
	lintianClean(t, deb)
	putBack := setAside(t, HookLink, HookConfig, PolicyFile)
	t.Cleanup(func() {
		_ = exec.Command("dpkg", "--purge", "virtap").Run()
		putBack()
	})

	out := dpkg(t, "-i", deb)
	if !strings.Contains(out, "restart libvirtd (or virtqemud)") {
		t.Errorf("postinst must say that libvirtd must be restarted; dpkg -i said:\n%s", out)
	}
	if owner := run(t, "dpkg-query", "-S", HookLink); !strings.HasPrefix(owner, "virtap:") {
		t.Errorf("%s is not owned by the package: %s", HookLink, owner)
	}
	hookRuns(t)
	manRenders(t)
	for _, p := range []string{"/usr/share/bash-completion/completions/virtap", "/usr/share/zsh/vendor-completions/_virtap", "/usr/share/fish/vendor_completions.d/virtap.fish", "/lib/systemd/system/virtap-gc.service"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("installed package lacks %s: %v", p, err)
		}
	}

	out = dpkg(t, "-r", "virtap")
	if !strings.Contains(out, "restart libvirtd (or virtqemud)") {
		t.Errorf("postrm must say that libvirtd must be restarted; dpkg -r said:\n%s", out)
	}
	if _, err := os.Lstat(HookLink); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("dpkg -r left the hook %s behind (%v)", HookLink, err)
	}
	if _, err := os.Stat(PolicyFile); err != nil {
		t.Errorf("dpkg -r must keep the conffile %s: %v", PolicyFile, err)
	}
	dpkg(t, "--purge", "virtap")
	for _, p := range []string{HookLink, HookConfig, PolicyFile, HookTarget} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("dpkg --purge left %s behind (%v)", p, err)
		}
	}
}

// buildDeb builds PIE binaries as 'make deb' does and packages them.
func buildDeb(t *testing.T) string {
	dir := t.TempDir()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []struct{ name, pkg, cgo string }{{"virtap", "./cmd/virtap", "1"}, {"virtap-hook", "./cmd/virtap-hook", "0"}} {
		cmd := exec.Command("go", "build", "-trimpath", "-buildmode=pie", "-ldflags", "-s -w -X main.version=test", "-o", filepath.Join(dir, b.name), b.pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED="+b.cgo)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	deb, err := build(options{Virtap: filepath.Join(dir, "virtap"), Hook: filepath.Join(dir, "virtap-hook"), Root: root, Out: dir})
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(deb) != "virtap_0.1.0_amd64.deb" {
		t.Errorf("package file %s, want virtap_VERSION_amd64.deb with the changelog's version", filepath.Base(deb))
	}
	return deb
}

func lintianClean(t *testing.T, deb string) {
	cmd := exec.Command("lintian", "--tag-display-limit", "0", deb)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "E: ") {
			t.Errorf("lintian: %s", l)
		}
	}
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("lintian: %v", err)
	}
	t.Logf("lintian:\n%s", out.String())
}

// hookRuns execs the hook where dpkg put it, as libvirtd does (bare
// environment, XML on stdin), for a domain virtap does not manage.
func hookRuns(t *testing.T) {
	cmd := exec.Command(HookLink, "plain", "prepare", "begin", "-")
	cmd.Env = []string{}
	cmd.Stdin = strings.NewReader("<domain type='qemu'><name>plain</name><devices/></domain>")
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Errorf("%s plain prepare begin -: %v, output %q", HookLink, err, out)
	}
	if v := run(t, HookLink, "--version"); !strings.Contains(v, "virtap-hook") {
		t.Errorf("%s --version: %q", HookLink, v)
	}
}

func manRenders(t *testing.T) {
	for _, m := range []struct {
		args []string
		want string
	}{
		{[]string{"virtap"}, "virtap-provision(8)"},
		{[]string{"8", "virtap-provision"}, "--cloud-init"},
		{[]string{"5", "virtap-policy.toml"}, "max_macs"},
	} {
		cmd := exec.Command("man", append([]string{"-P", "cat"}, m.args...)...)
		cmd.Env = append(os.Environ(), "MANWIDTH=100", "LANG=C.UTF-8")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), m.want) {
			t.Errorf("man %s: %v; want %q in:\n%.600s", strings.Join(m.args, " "), err, m.want, out)
		}
	}
}

// setAside moves existing files out of the way; the returned func puts
// them back (and removes what the test left there).
func setAside(t *testing.T, paths ...string) func() {
	stash := t.TempDir()
	var moved []string
	for i, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			if err := os.Rename(p, filepath.Join(stash, string(rune('a'+i)))); err != nil {
				t.Fatal(err)
			}
			moved = append(moved, p)
		}
	}
	return func() {
		for i, p := range paths {
			for _, m := range moved {
				if m == p {
					_ = os.MkdirAll(filepath.Dir(p), 0o755)
					_ = os.Remove(p)
					if err := os.Rename(filepath.Join(stash, string(rune('a'+i))), p); err != nil {
						t.Errorf("put back %s: %v", p, err)
					}
				}
			}
		}
	}
}

func dpkg(t *testing.T, args ...string) string {
	cmd := exec.Command("dpkg", append([]string{"--force-confdef", "--force-confold"}, args...)...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func run(t *testing.T, name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
