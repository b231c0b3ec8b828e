// Package paths is the one place for virtap's default paths and for the
// /dev and /sys roots that tests point elsewhere.
package paths

const (
	// Policy is the default policy file (--policy, VIRTAP_POLICY).
	Policy = "/etc/virtap/policy.toml"
	// StateDir is the default state directory (--state-dir, VIRTAP_STATE_DIR,
	// state_dir in the policy).
	StateDir = "/var/lib/virtap"
	// HooksDir is libvirt's hooks directory; the hook goes to HooksDir/qemu.d.
	HooksDir = "/etc/libvirt/hooks"
	// Hook is where virtap's hook goes in a hooks directory (libvirt runs
	// the files in HooksDir/qemu.d/); HookConfig is the hook's settings file
	// there, which libvirt ignores.
	Hook       = "qemu.d/virtap"
	HookConfig = "virtap-hook.toml"
	// Dev and Sys are the roots of /dev and /sys on a real host.
	Dev = "/dev"
	Sys = "/sys"
)

// Roots are where /dev and /sys are; the zero Roots is the real host.
type Roots struct {
	Dev string // "" means Dev
	Sys string // "" means Sys
}

// DevRoot is r.Dev, or /dev.
func (r Roots) DevRoot() string { return or(r.Dev, Dev) }

// SysRoot is r.Sys, or /sys.
func (r Roots) SysRoot() string { return or(r.Sys, Sys) }

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
