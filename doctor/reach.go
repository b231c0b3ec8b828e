package doctor

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/virtap/virtap/provision/policy"
)

// Checks of issue 21's features.
const (
	CheckVLAN = "vlan"      // 802.1Q (module 8021q) for networks with vlan = N
	CheckBond = "bond-mode" // a bonded parent in a mode that breaks macvlan
)

// needsVLANDevice says whether the network sits on a VLAN device the hook
// makes (a VF carries its VLAN tag itself).
func needsVLANDevice(n *policy.Network) bool {
	return n.VLAN > 0 && (n.Kind == policy.KindIpvtap || n.Kind == policy.KindMacvtap && n.Mode != "passthrough")
}

// vlanCheck: the kernel must have 802.1Q: loaded (SysfsRoot/module/8021q),
// built in (modules.builtin), or loadable on demand (the module file).
func (r *run) vlanCheck(n *policy.Network) {
	if !needsVLANDevice(n) {
		return
	}
	res := func(st Status, detail, advice string) {
		r.rep.add(Result{Check: CheckVLAN, Network: n.Name, Device: n.Parent, Status: st, Detail: detail, Advice: advice})
	}
	if _, err := os.Stat(filepath.Join(r.env.sysfsRoot(), "module", "8021q")); err == nil {
		res(OK, fmt.Sprintf("vlan %d: module 8021q is loaded; guests sit on %s.%d", n.VLAN, n.Parent, n.VLAN), "")
		return
	}
	dir := r.env.modulesDir()
	if builtin(filepath.Join(dir, "modules.builtin"), "8021q.ko") {
		res(OK, fmt.Sprintf("vlan %d: 8021q is built into the kernel", n.VLAN), "")
		return
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "kernel", "net", "8021q", "8021q.ko*")); len(m) > 0 {
		res(OK, fmt.Sprintf("vlan %d: module 8021q is not loaded; the kernel loads it when the first VLAN device is made", n.VLAN), "")
		return
	}
	res(Fail, fmt.Sprintf("vlan %d: this kernel has no 802.1Q support (no %s/module/8021q, not in %s/modules.builtin, no module file): the hook cannot make the VLAN device", n.VLAN, r.env.sysfsRoot(), dir),
		"install the kernel's modules (8021q), or remove vlan from network "+n.Name)
}

// builtin reports whether modules.builtin at path lists a module whose
// file name is base.
func builtin(path, base string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if filepath.Base(strings.TrimSpace(sc.Text())) == base {
			return true
		}
	}
	return false
}

func (e *Env) modulesDir() string {
	if e.ModulesDir != "" {
		return e.ModulesDir
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "/lib/modules"
	}
	return filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]))
}

// bondCheck: a bond in balance-alb or balance-tlb rewrites source MACs on
// transmit (and alb answers ARP with its ports' MACs), so macvlan devices
// on it (macvtap guests, the host shim) lose their replies. Other modes,
// and ipvtap (one MAC, the bond's), are fine.
func (r *run) bondCheck(l *lower, res resFunc) {
	if l.kind != policy.KindMacvtap {
		return
	}
	link, err := r.link(l.name)
	if err != nil {
		return
	}
	b, ok := link.(*netlink.Bond)
	if !ok {
		return
	}
	switch b.Mode {
	case netlink.BOND_MODE_BALANCE_ALB, netlink.BOND_MODE_BALANCE_TLB:
		res(CheckBond, Fail, fmt.Sprintf("%s is a bond in mode %s, which rewrites the source MAC of transmitted frames: macvtap guests on it lose their traffic", l.name, b.Mode),
			fmt.Sprintf("use mode active-backup or 802.3ad (LACP) on %s, or kind = \"ipvtap\" (one MAC)", l.name))
	default:
		res(CheckBond, OK, fmt.Sprintf("%s is a bond in mode %s", l.name, b.Mode), "")
	}
}
