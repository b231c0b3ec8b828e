package hotplug

import (
	"fmt"
	"time"

	"github.com/virtap/virtap/host"
	"github.com/virtap/virtap/provision/domain"
)

// DetachTimeout bounds the wait for a guest to give back a hot-unplugged
// NIC (the guest acknowledges the ACPI unplug; libvirt returns before).
var DetachTimeout = 30 * time.Second

// Detached says what Detach did.
type Detached struct {
	Domain   string             `json:"domain"`
	Where    Where              `json:"-"`
	Record   domain.IfaceRecord `json:"interface"`
	Released bool               `json:"released"` // the host side is gone
}

// Detach takes the interface with that MAC out of a domain (libvirt
// first, then virtap's record) and, once no running guest has it, removes
// its host side (devices, VF reservation, filter, lease, state record,
// unused shim). An interface virtap does not manage is refused. A guest
// that does not give the NIC back keeps it and its host side (its filter
// too): the error says so, and running detach again finishes.
func Detach(e *Env, name, mac string, w Where) (*Detached, error) {
	dom, err := e.Libvirt.Lookup(name)
	if err != nil {
		return nil, err
	}
	live, err := parseDoc(dom.Live)
	if err != nil {
		return nil, err
	}
	config, err := parseDoc(dom.Config)
	if err != nil {
		return nil, err
	}
	liveXML, inLive := interfaceXML(live, mac)
	configXML, inConfig := interfaceXML(config, mac)
	switch {
	case !w.Live && !w.Config:
		w = Where{Live: inLive, Config: inConfig}
		if !inLive && !inConfig {
			return nil, fmt.Errorf("domain %s has no interface with MAC %s", dom.Name, mac)
		}
	case w.Live && !inLive:
		return nil, fmt.Errorf("the running domain %s has no interface with MAC %s", dom.Name, mac)
	case w.Config && !inConfig:
		return nil, fmt.Errorf("the persistent definition of domain %s has no interface with MAC %s", dom.Name, mac)
	}
	src := config
	if w.Live {
		src = live
	}
	ir, ok := src.Record.ByMAC(mac)
	if !ok {
		return nil, fmt.Errorf("interface %s of domain %s is not virtap's (no entry in its record); use virsh detach-interface", mac, dom.Name)
	}
	g, err := guestOf(src)
	if err != nil {
		return nil, err
	}
	res := &Detached{Domain: dom.Name, Where: w, Record: ir}
	if w.Live {
		if err := e.Libvirt.DetachDevice(dom.Name, liveXML, Where{Live: true}); err != nil {
			return nil, fmt.Errorf("detach from the running guest: %w", err)
		}
		if err := waitGone(e, dom.Name, mac); err != nil {
			return nil, err
		}
	}
	if w.Config {
		if err := e.Libvirt.DetachDevice(dom.Name, configXML, Where{Config: true}); err != nil {
			return nil, fmt.Errorf("detach from the persistent definition: %w", err)
		}
	}
	if err := dropEntries(e, dom.Name, mac, w, live, config); err != nil {
		return nil, err
	}
	// Only what no running guest uses any more: a --config detach of a
	// running guest leaves its live NIC working.
	if w.Live || !dom.Running {
		if err := e.withRealiser(func(r *host.Realiser) error { return r.ReleaseIface(g, ir) }); err != nil {
			return nil, fmt.Errorf("release the host side of %s: %w (virtap gc removes what is left)", mac, err)
		}
		res.Released = true
	}
	return res, nil
}

// dropEntries removes the interface's entry from virtap's record in the
// definitions w names.
func dropEntries(e *Env, name, mac string, w Where, live, config *domain.Doc) error {
	for _, x := range []struct {
		w   Where
		doc *domain.Doc
	}{{Where{Live: true}, live}, {Where{Config: true}, config}} {
		if !(x.w.Live && w.Live || x.w.Config && w.Config) || x.doc == nil || x.doc.Record == nil {
			continue
		}
		if err := e.Libvirt.SetMetadata(name, withoutEntry(x.doc.Record, mac).Element(), x.w); err != nil {
			return fmt.Errorf("virtap's record in the %s definition: %w", x.w, err)
		}
	}
	return nil
}

// waitGone waits until the running domain no longer has the interface.
func waitGone(e *Env, name, mac string) error {
	deadline := time.Now().Add(DetachTimeout)
	for {
		dom, err := e.Libvirt.Lookup(name)
		if err != nil {
			return err
		}
		live, err := parseDoc(dom.Live)
		if err != nil {
			return err
		}
		if _, ok := interfaceXML(live, mac); !ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("domain %s has not given back interface %s after %s (the guest must acknowledge the unplug; is it up, with ACPI?); its host side and filter stay: run virtap detach again later",
				name, mac, DetachTimeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
