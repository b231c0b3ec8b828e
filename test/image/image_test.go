package image

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtap/virtap/internal/nstest"
	"github.com/virtap/virtap/test/internal/run"
)

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if nstest.InCI() {
			t.Fatalf("%s not installed (CI=true: not skipping)", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

// The archive the kernel unpacks must be one GNU cpio reads back with the
// same names, types, modes, device numbers and contents.
func TestCpioReadBackByGNUCpio(t *testing.T) {
	needTool(t, "cpio")
	var buf bytes.Buffer
	err := writeCpio(&buf, []cpioEntry{
		{Name: "bin/sh", Mode: modeSymlink | 0o777, Data: []byte("busybox")},
		{Name: "bin", Mode: modeDir | 0o755},
		{Name: "bin/busybox", Mode: modeFile | 0o755, Data: []byte("abcde")}, // odd length: padding
		{Name: "dev", Mode: modeDir | 0o755},
		{Name: "dev/console", Mode: modeChar | 0o600, RdevMaj: 5, RdevMin: 1},
		{Name: "init", Mode: modeFile | 0o755, Data: []byte("#!/bin/sh\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := run.In("", nil, buf.Bytes(), 10*time.Second, "cpio", "-itv", "--quiet")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{ // name -> ls-style prefix cpio -tv prints
		"bin":         "drwxr-xr-x",
		"bin/busybox": "-rwxr-xr-x",
		"bin/sh":      "lrwxrwxrwx",
		"dev":         "drwxr-xr-x",
		"dev/console": "crw-------",
		"init":        "-rwxr-xr-x",
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(want) {
		t.Fatalf("cpio lists %d entries, want %d:\n%s", len(lines), len(want), out)
	}
	var order []string
	for _, l := range lines {
		f := strings.Fields(l)
		name := f[len(f)-1]
		if strings.HasPrefix(f[0], "l") {
			name = f[len(f)-3] // "bin/sh -> busybox"
		}
		order = append(order, name)
		if want[name] != f[0] {
			t.Errorf("%s: mode %s, want %s (%q)", name, f[0], want[name], l)
		}
		if name == "dev/console" && !strings.Contains(l, "5,") {
			t.Errorf("dev/console lost its device number: %q", l)
		}
	}
	if order[0] != "bin" || order[1] != "bin/busybox" {
		t.Errorf("parents must come before children, got %v", order)
	}
	dir := t.TempDir()
	if _, err := run.In(dir, nil, buf.Bytes(), 10*time.Second, "cpio", "-id", "--quiet", "--no-absolute-filenames", "bin", "bin/*", "init"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "bin/busybox")); string(b) != "abcde" {
		t.Errorf("bin/busybox content %q", b)
	}
	if l, _ := os.Readlink(filepath.Join(dir, "bin/sh")); l != "busybox" {
		t.Errorf("bin/sh -> %q", l)
	}
}

func TestGuestImage(t *testing.T) {
	nstest.RequireRoot(t)
	needTool(t, "cpio")
	img, err := BuildGuestImage()
	if err != nil {
		t.Fatal(err)
	}
	k, err := os.ReadFile(img.Kernel)
	if err != nil {
		t.Fatal(err)
	}
	if len(k) < 0x210 || string(k[0x202:0x206]) != "HdrS" {
		t.Fatalf("%s is not a bzImage", img.Kernel)
	}
	if !strings.Contains(img.Package, img.KernelRelease) {
		t.Errorf("release %q does not match package %q", img.KernelRelease, img.Package)
	}
	f, err := os.Open(img.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	list, err := run.In("", nil, raw, 30*time.Second, "cpio", "-it", "--quiet")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, n := range strings.Fields(list) {
		have[n] = true
	}
	want := []string{"init", "bin/busybox", "bin/sh", "dev/console", "etc/virtap-modules"}
	for _, m := range GuestModules {
		want = append(want, "lib/modules/"+m+".ko")
	}
	for _, w := range want {
		if !have[w] {
			t.Errorf("initramfs lacks %s", w)
		}
	}
	order, err := run.In("", nil, raw, 30*time.Second, "cpio", "-i", "--quiet", "--to-stdout", "etc/virtap-modules")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(order); fmt.Sprint(got) != fmt.Sprint(GuestModules) {
		t.Errorf("module order %v, want %v", got, GuestModules)
	}
	again, err := BuildGuestImage()
	if err != nil || again.Initrd != img.Initrd || again.Kernel != img.Kernel {
		t.Errorf("second build: %+v %v, first %+v", again, err, img)
	}
}
