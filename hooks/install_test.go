package hooks

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func fakeHookBinary(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "virtap-hook")
	if err := os.WriteFile(p, []byte("\x7fELF..."+BinaryMarker+"..."), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInstallUninstall(t *testing.T) {
	dir := t.TempDir()
	bin := fakeHookBinary(t)
	path, err := Install(InstallOptions{HooksDir: dir, Binary: bin, HookConfig: HookConfig{Policy: "/etc/p.toml", StateDir: "/var/lib/x", Host: "node1"}})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o755 || path != filepath.Join(dir, "qemu.d", "virtap") {
		t.Fatalf("%s %v %v", path, fi.Mode(), err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 && (st.Uid != 0 || st.Gid != 0) {
		t.Fatalf("hook owned by %d:%d, want root", st.Uid, st.Gid)
	}
	cfg, err := LoadHookConfig(path)
	if err != nil || cfg.Policy != "/etc/p.toml" || cfg.StateDir != "/var/lib/x" || cfg.Host != "node1" {
		t.Fatalf("config read back: %+v %v", cfg, err)
	}
	// Installing again replaces our own hook.
	if _, err := Install(InstallOptions{HooksDir: dir, Binary: bin}); err != nil {
		t.Fatalf("re-install: %v", err)
	}
	if _, err := Uninstall(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("hook left after uninstall")
	}
	if _, err := os.Stat(filepath.Join(dir, ConfigName)); !os.IsNotExist(err) {
		t.Fatal("settings left after uninstall")
	}
	if _, err := Uninstall(dir); err != nil {
		t.Fatalf("uninstall twice: %v", err)
	}
}

func TestInstallRefusesForeignFiles(t *testing.T) {
	dir := t.TempDir()
	foreign := filepath.Join(dir, "qemu.d", "virtap")
	if err := os.MkdirAll(filepath.Dir(foreign), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(foreign, []byte("#!/bin/sh\necho mine\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Install(InstallOptions{HooksDir: dir, Binary: fakeHookBinary(t)})
	if err == nil || !strings.Contains(err.Error(), "not virtap's hook") {
		t.Fatalf("install over a foreign file: %v", err)
	}
	if _, err := Uninstall(dir); err == nil {
		t.Fatal("uninstall removed a foreign file")
	}
	if b, _ := os.ReadFile(foreign); string(b) != "#!/bin/sh\necho mine\n" {
		t.Fatal("foreign file changed")
	}
	// A binary that is not virtap-hook is refused too.
	other := filepath.Join(t.TempDir(), "x")
	os.WriteFile(other, []byte("not it"), 0o755)
	if _, err := Install(InstallOptions{HooksDir: t.TempDir(), Binary: other}); err == nil {
		t.Fatal("installed a binary that is not virtap-hook")
	}
}

func TestLoadHookConfigRejectsUnknownKeys(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "qemu.d"), 0o755)
	os.WriteFile(filepath.Join(dir, ConfigName), []byte("policy = \"/p\"\ncolour = 1\n"), 0o644)
	if _, err := LoadHookConfig(filepath.Join(dir, "qemu.d", "virtap")); err == nil || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("%v", err)
	}
	if c, err := LoadHookConfig(filepath.Join(t.TempDir(), "qemu.d", "virtap")); err != nil || c != (HookConfig{}) {
		t.Fatalf("missing settings: %+v %v", c, err)
	}
}

// The Debian package's hook is a symlink into /usr/libexec: install and
// uninstall leave it alone and say why.
func TestInstallLeavesPackageSymlink(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "virtap-hook")
	if err := os.WriteFile(bin, []byte("#!/bin/false\n"+BinaryMarker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	hooksDir := filepath.Join(dir, "hooks")
	if err := os.MkdirAll(filepath.Join(hooksDir, "qemu.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bin, HookPath(hooksDir)); err != nil {
		t.Fatal(err)
	}
	for name, run := range map[string]func() error{
		"install":   func() error { _, err := Install(InstallOptions{HooksDir: hooksDir, Binary: bin}); return err },
		"uninstall": func() error { _, err := Uninstall(hooksDir); return err },
	} {
		if err := run(); err == nil || !strings.Contains(err.Error(), "Debian package") {
			t.Errorf("%s over the package's symlink: %v", name, err)
		}
		if fi, err := os.Lstat(HookPath(hooksDir)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s touched the package's symlink: %v", name, err)
		}
	}
}
