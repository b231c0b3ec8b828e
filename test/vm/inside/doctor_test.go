//go:build virtapvm

package inside

import (
	"context"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/virtap/virtap/doctor"
	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nstest"
	"github.com/virtap/virtap/provision/policy"
)

// TestDoctorBond: a macvtap parent that is a bond in balance-alb or
// balance-tlb fails doctor (those modes rewrite source MACs); active-backup
// passes. This machine's kernel has no bonding; the VM's has.
func TestDoctorBond(t *testing.T) {
	for _, c := range []struct {
		mode netlink.BondMode
		want doctor.Status
	}{{netlink.BOND_MODE_BALANCE_ALB, doctor.Fail}, {netlink.BOND_MODE_BALANCE_TLB, doctor.Fail}, {netlink.BOND_MODE_ACTIVE_BACKUP, doctor.OK}} {
		t.Run(c.mode.String(), func(t *testing.T) {
			hn := nstest.New(t)
			la := netlink.NewLinkAttrs()
			la.Name = "bond0"
			b := netlink.NewLinkBond(la)
			b.Mode = c.mode
			if err := hn.NL.LinkAdd(b); err != nil {
				t.Fatal(err)
			}
			hn.Up(t, "bond0")
			p, err := policy.Parse("p.toml", []byte("[networks.lan]\nkind = \"macvtap\"\nparent = \"bond0\"\n"))
			if err != nil {
				t.Fatal(err)
			}
			rep, err := doctor.Run(context.Background(), doctor.Env{Net: netdev.New(nil, hn.NL), DevRoot: t.TempDir(),
				SysfsRoot: t.TempDir(), HooksDir: t.TempDir()}, p, "vm")
			if err != nil {
				t.Fatal(err)
			}
			rs := rep.Find(doctor.CheckBond, "lan")
			if len(rs) != 1 || rs[0].Status != c.want || !strings.Contains(rs[0].Detail, c.mode.String()) {
				t.Fatalf("bond check for mode %s: %+v, want %s", c.mode, rs, c.want)
			}
			t.Logf("MEASURED doctor bond %s: %s: %s", c.mode, rs[0].Status, rs[0].Detail)
		})
	}
}
