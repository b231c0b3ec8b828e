package harness

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/virtap/virtap/test/internal/run"
)

// VirshTimeout bounds every virsh call.
var VirshTimeout = 60 * time.Second

// Virsh runs `virsh -c qemu:///system ARGS...` and returns its output; on
// failure the error holds the command line and everything virsh printed.
func Virsh(args ...string) (string, error) {
	defer HoldLibvirt()()
	return run.Cmd(VirshTimeout, "virsh", append([]string{"-c", URI}, args...)...)
}

// libvirtGate keeps clients of this process out of libvirtd while
// Libvirt.Restart has it down: every Virsh call holds it for reading,
// Restart for writing. Parallel tests then never see a missing daemon.
var libvirtGate sync.RWMutex

// HoldLibvirt keeps Libvirt.Restart from stopping libvirtd until the
// returned function is called; wrap calls to libvirt made without Virsh
// (e.g. `virtap status`) in it. Do not call Virsh while holding it.
func HoldLibvirt() (release func()) {
	libvirtGate.RLock()
	return libvirtGate.RUnlock
}

// DefineXML defines a domain from XML text.
func DefineXML(xml string) error {
	f, err := os.CreateTemp("", "virtap-e2e-*.xml")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(xml); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	_, err = Virsh("define", f.Name())
	return err
}

// StartDomain starts a defined domain.
func StartDomain(name string) error { _, err := Virsh("start", name); return err }

// DestroyDomain stops a domain hard; a domain that is not running (or does
// not exist) is not an error.
func DestroyDomain(name string) error {
	out, err := Virsh("destroy", name)
	if err != nil && (strings.Contains(out, "domain is not running") || isNoDomain(out)) {
		return nil
	}
	return err
}

// UndefineDomain removes a domain's definition; a missing domain is not an error.
func UndefineDomain(name string) error {
	out, err := Virsh("undefine", name)
	if err != nil && isNoDomain(out) {
		return nil
	}
	return err
}

// DomainState returns `virsh domstate` ("running", "shut off", ...).
func DomainState(name string) (string, error) {
	out, err := Virsh("domstate", name)
	return strings.TrimSpace(out), err
}

// DomainExists reports whether libvirt knows a domain of that name.
func DomainExists(name string) (bool, error) {
	out, err := Virsh("domstate", name)
	if err != nil {
		if isNoDomain(out) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// DumpXML returns the live (or inactive) XML of a domain.
func DumpXML(name string) (string, error) { return Virsh("dumpxml", name) }

func isNoDomain(out string) bool {
	return strings.Contains(out, "failed to get domain") || strings.Contains(out, "Domain not found")
}

// QemuLogPath is where libvirt keeps the QEMU log of a domain.
func QemuLogPath(name string) string { return fmt.Sprintf("/var/log/libvirt/qemu/%s.log", name) }
