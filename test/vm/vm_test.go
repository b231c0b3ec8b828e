// Package vm boots a test host VM whose kernel has what this machine's
// lacks (ipvlan, ipvtap, 8021q, vhost_net) and runs the tests of
// test/vm/inside in it: the Debian kernel under QEMU (TCG), an initramfs
// with busybox, those modules and the statically linked test binary. The
// VM prints the binary's -test.v output and a verdict on its serial
// console; this test fails unless the verdict is PASS.
//
// Run it alone (as root):
//
//	go test -v -count=1 ./test/vm
//	VIRTAP_VM_RUN='TestModes/l3' go test -v -count=1 ./test/vm   # a subset
package vm

import (
	"bytes"
	"context"
	_ "embed"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtap/virtap/internal/nstest"
	"github.com/virtap/virtap/test/image"
	"github.com/virtap/virtap/test/internal/run"
)

//go:embed init.sh
var initScript []byte

// lockedBuffer collects the serial console while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var resultRE = regexp.MustCompile(`VIRTAP-VM-RESULT (PASS|FAIL)`)

func TestIpvtapInVM(t *testing.T) {
	nstest.RequireRoot(t)
	for _, tool := range []string{"qemu-system-x86_64", "apt-get", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			if nstest.InCI() {
				t.Fatalf("%s not found (run make deps): %v", tool, err)
			}
			t.Skipf("%s not found (make deps installs it); CI is not \"true\"", tool)
		}
	}
	root, err := run.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "virtap-vm.test")
	build := exec.Command("go", "test", "-c", "-tags", "virtapvm", "-trimpath", "-o", bin, "./test/vm/inside")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the in-VM test binary: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	img, err := image.BuildVMImage(image.VMModules, initScript, []image.VMFile{{Name: "virtap-vm.test", Data: data}})
	if err != nil {
		t.Fatalf("build the VM image: %v", err)
	}
	t.Logf("kernel %s, modules %s", img.KernelRelease, strings.Join(img.Modules, " "))
	appendLine := ""
	if run := os.Getenv("VIRTAP_VM_RUN"); run != "" {
		if strings.ContainsAny(run, " \t\n") {
			t.Fatalf("VIRTAP_VM_RUN must not contain white space: %q", run)
		}
		appendLine = "virtap.run=" + run
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var serial lockedBuffer
	var w io.Writer = &serial
	if testing.Verbose() {
		w = io.MultiWriter(&serial, prefixWriter{os.Stdout})
	}
	start := time.Now()
	err = image.BootVM(ctx, &image.VMImage{Kernel: img.Kernel, Initrd: img.Initrd}, appendLine, 512, w)
	out := serial.String()
	t.Logf("VM ran %s", time.Since(start).Round(time.Second))
	if err != nil && ctx.Err() != nil {
		t.Fatalf("the VM did not power off within 4 minutes; serial console:\n%s", out)
	}
	if err != nil {
		t.Errorf("qemu: %v", err)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "MEASURED ") || strings.HasPrefix(strings.TrimSpace(l), "--- FAIL") {
			t.Log(strings.TrimSpace(l))
		}
	}
	m := resultRE.FindStringSubmatch(out)
	switch {
	case m == nil:
		t.Fatalf("no VIRTAP-VM-RESULT on the serial console:\n%s", out)
	case m[1] != "PASS":
		t.Fatalf("the in-VM tests failed:\n%s", out)
	}
	if strings.Contains(out, "VIRTAP-VM-ERROR") {
		t.Errorf("the VM reported errors:\n%s", out)
	}
}

// prefixWriter streams the console with a marker so it reads apart from
// the host's own test output.
type prefixWriter struct{ w io.Writer }

func (p prefixWriter) Write(b []byte) (int, error) {
	_, err := p.w.Write(bytes.ReplaceAll(b, []byte("\n"), []byte("\n[vm] ")))
	return len(b), err
}
