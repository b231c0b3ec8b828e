package host

import (
	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/provision/policy"
)

// Rebuild refills an empty store from the tags on virtap's guest devices
// (after a damaged database was moved aside): one ready interface record
// per tagged device, under the domain UUID and MAC its tag names, so that
// release and gc find the devices again. Reservations and leases cannot
// be read from a tag; gc and the next reconnect restore what they can.
func (r *Realiser) Rebuild() (int, error) {
	devs, err := r.Net.List()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, d := range devs {
		u, ok := d.Tag.Domain()
		mac, okm := d.Tag.MAC()
		if !ok || !okm {
			continue
		}
		kind := policy.KindPassthrough
		if d.Kind == netdev.KindIPvtap {
			kind = policy.KindIpvtap
		}
		ifc := store.Iface{MAC: mac.String(), Kind: kind, Device: d.Name, Parent: d.Parent, Mode: d.Mode, State: store.StateReady}
		if err := r.Store.PutIface(u.String(), "", ifc); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
