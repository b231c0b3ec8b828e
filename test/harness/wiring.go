package harness

import "testing"

// Wiring decides how a scenario's guest NIC reaches the topology, so one
// scenario runs both on plain libvirt XML and through virtap: Interface
// gives the <interface> snippet for a guest on uplink in a macvtap mode (mac
// "" lets libvirt or virtap choose), and
// Prepare may rewrite the guest's XML (e.g. `virtap provision`) before Start.
type Wiring interface {
	Name() string
	Interface(t testing.TB, topo *Topology, uplink int, mode, mac string) string
	Prepare(t testing.TB, topo *Topology, g *Guest)
}

// PlainDirect is libvirt's own <interface type='direct'> on the uplink: the
// reference the virtap wiring must behave like.
type PlainDirect struct{}

func (PlainDirect) Name() string { return "plain-direct" }

func (PlainDirect) Interface(_ testing.TB, topo *Topology, uplink int, mode, mac string) string {
	return DirectInterface(topo.Uplinks[uplink], mode, mac)
}

func (PlainDirect) Prepare(testing.TB, *Topology, *Guest) {}

var _ Wiring = PlainDirect{}

// GoneChecker is a Wiring that can check, after a scenario destroyed its
// guests, that nothing it set up for topo is left on the host.
type GoneChecker interface {
	CheckGone(t testing.TB, topo *Topology)
}

// RunningChecker is a Wiring that can check, while a scenario's guests run,
// that its host-side state for them is in place.
type RunningChecker interface {
	CheckRunning(t testing.TB, topo *Topology)
}
