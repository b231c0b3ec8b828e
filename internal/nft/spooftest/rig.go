package spooftest

import (
	"net"
	"testing"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nft"
	"github.com/virtap/virtap/internal/nstest"
)

// Rig is where frame-level filter tests start: a guest's macvtap (bridge
// mode, tagged for a fresh domain) on a switch with an external host, the
// guest's /dev/tapN open, a capture on the external host's link, and a
// filter manager in the host namespace whose table is removed at cleanup.
type Rig struct {
	Host   *nstest.NS
	Switch *nstest.Switched
	Cap    *Capture
	Dev    netdev.Device
	Tap    *netdev.Tap
	Domain uuid.UUID
	MAC    net.HardwareAddr
	Filter *nft.Manager
}

// NewRig builds a Rig with a macvtap named name and the guest MAC mac.
func NewRig(t testing.TB, name string, mac net.HardwareAddr) *Rig {
	t.Helper()
	r := &Rig{Host: nstest.New(t), Domain: uuid.New(), MAC: mac}
	r.Switch = nstest.NewSwitched(t, r.Host, false)
	r.Cap = NewCapture(t, r.Switch.External, r.Switch.ExtLink)
	nd := netdev.New(hclog.NewNullLogger(), r.Host.NL)
	d, err := nd.Create(netdev.Spec{Name: name, Kind: netdev.KindMacvtap, Parent: r.Switch.Uplink, Mode: "bridge", MAC: mac,
		Tag: netdev.GuestTag(r.Domain, mac), Up: true, Index: nstest.FreshIndex()})
	if err != nil {
		t.Fatal(err)
	}
	r.Dev = d
	if r.Tap, err = netdev.OpenTap(d, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Tap.Close() })
	r.Filter = nft.NewAt(hclog.NewNullLogger(), r.Host.Handle)
	t.Cleanup(func() { _ = r.Filter.Remove(r.Domain) })
	return r
}
