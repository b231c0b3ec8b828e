// Package xmlcheck validates domain XML with libvirt's own tools, for tests:
// virt-xml-validate (the RNG schema) and `virsh -c test:///default define
// --validate`.
package xmlcheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Tools reports whether both validators are installed. Under CI=true a
// missing tool fails the test instead of skipping it.
func Tools(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"virt-xml-validate", "virsh"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is missing: make test installs libvirt-clients and libxml2-utils", tool)
			}
			t.Skipf("%s is missing (install libvirt-clients libxml2-utils)", tool)
		}
	}
}

// Domain validates one document with both tools.
func Domain(t testing.TB, name string, xml []byte) {
	t.Helper()
	Tools(t)
	path := filepath.Join(t.TempDir(), "domain.xml")
	if err := os.WriteFile(path, xml, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("virt-xml-validate", path, "domain").CombinedOutput(); err != nil {
		t.Fatalf("%s: virt-xml-validate: %v\n%s", name, err, out)
	}
	if out, err := exec.Command("virsh", "-q", "-c", "test:///default", "define", "--validate", path).CombinedOutput(); err != nil {
		t.Fatalf("%s: virsh define --validate: %v\n%s", name, err, out)
	}
}

// Network validates a libvirt network definition with both tools.
func Network(t testing.TB, name string, xml []byte) {
	t.Helper()
	Tools(t)
	path := filepath.Join(t.TempDir(), "network.xml")
	if err := os.WriteFile(path, xml, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("virt-xml-validate", path, "network").CombinedOutput(); err != nil {
		t.Fatalf("%s: virt-xml-validate: %v\n%s", name, err, out)
	}
	if out, err := exec.Command("virsh", "-q", "-c", "test:///default", "net-define", path).CombinedOutput(); err != nil {
		t.Fatalf("%s: virsh net-define: %v\n%s", name, err, out)
	}
}
