package image

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/virtap/virtap/test/internal/run"
)

// Packages are the Debian packages the end-to-end tests need.
var Packages = []string{
	"libvirt-daemon", "libvirt-daemon-driver-qemu", "libvirt-clients",
	"qemu-system-x86", "busybox-static", "cpio", "iproute2", "iputils-ping",
	"libxml2-utils",
}

// MissingPackages lists those of pkgs that dpkg does not report installed.
func MissingPackages(pkgs ...string) ([]string, error) {
	var missing []string
	for _, p := range pkgs {
		out, err := run.Cmd(30*time.Second, "dpkg-query", "-W", "-f=${db:Status-Status}", p)
		if err != nil || strings.TrimSpace(out) != "installed" {
			missing = append(missing, p)
		}
	}
	return missing, nil
}

// EnsurePackages installs the missing ones of Packages with apt-get
// (--no-install-recommends); it does nothing, and needs no root, when all are
// present.
func EnsurePackages() error {
	missing, err := MissingPackages(Packages...)
	if err != nil || len(missing) == 0 {
		return err
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("packages missing and not root: %s", strings.Join(missing, " "))
	}
	if _, err := run.Cmd(5*time.Minute, "apt-get", "update"); err != nil {
		return err
	}
	args := append([]string{"install", "-y", "--no-install-recommends"}, missing...)
	if _, err := run.CmdEnv([]string{"DEBIAN_FRONTEND=noninteractive"}, 15*time.Minute, "apt-get", args...); err != nil {
		return err
	}
	still, _ := MissingPackages(missing...)
	if len(still) > 0 {
		return fmt.Errorf("apt-get install left packages missing: %s", strings.Join(still, " "))
	}
	return nil
}
