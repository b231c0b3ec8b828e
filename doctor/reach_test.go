package doctor

import (
	"os"
	"path/filepath"
	"testing"
)

// TestVLANModule: a network with vlan = N needs 802.1Q in the kernel:
// loaded, built in, or a module file the kernel loads on demand.
func TestVLANModule(t *testing.T) {
	ns := hostNS(t)
	p := pol(t, macvtapPolicy("up0", "vlan = 10"))
	e := env(t, ns.NL)
	e.ModulesDir = t.TempDir()
	want(t, one(t, doctor(t, e, p), CheckVLAN, "lan"), Fail, "this kernel has no 802.1Q support")

	if err := os.WriteFile(filepath.Join(e.ModulesDir, "modules.builtin"), []byte("kernel/net/ipv4/tcp_cubic.ko\nkernel/net/8021q/8021q.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want(t, one(t, doctor(t, e, p), CheckVLAN, "lan"), OK, "built into the kernel")

	e.ModulesDir = t.TempDir()
	mod := filepath.Join(e.ModulesDir, "kernel", "net", "8021q")
	if err := os.MkdirAll(mod, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mod, "8021q.ko.xz"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	want(t, one(t, doctor(t, e, p), CheckVLAN, "lan"), OK, "loads it when the first VLAN device is made")

	if err := os.MkdirAll(filepath.Join(e.SysfsRoot, "module", "8021q"), 0o755); err != nil {
		t.Fatal(err)
	}
	want(t, one(t, doctor(t, e, p), CheckVLAN, "lan"), OK, "module 8021q is loaded; guests sit on up0.10")

	// A VF carries the tag itself: no check.
	if rs := doctor(t, e, pol(t, macvtapPolicy("up0", "mode = \"passthrough\"\nvlan = 10"))).Find(CheckVLAN, "lan"); len(rs) != 0 {
		t.Errorf("vlan check for a passthrough macvtap: %+v", rs)
	}
}

// TestPFMTU: a VF pool whose mtu is above its PF's MTU fails (the VFs
// cannot carry more than the PF).
func TestPFMTU(t *testing.T) {
	ns := hostNS(t)
	p := pol(t, "[networks.fast]\nkind = \"passthrough\"\npf = \"up0\"\nmtu = 9000\n")
	want(t, one(t, doctor(t, env(t, ns.NL), p), CheckMTU, "fast"), Fail, "mtu 9000 is more than up0's MTU 1500")
	p = pol(t, "[networks.fast]\nkind = \"passthrough\"\npf = \"up0\"\nmtu = 1500\n")
	want(t, one(t, doctor(t, env(t, ns.NL), p), CheckMTU, "fast"), OK, "mtu 1500 fits up0's MTU 1500")
}
