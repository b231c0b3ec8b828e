package hotplug

import (
	"errors"
	"fmt"

	"libvirt.org/go/libvirtxml"

	"github.com/virtap/virtap/host"
	"github.com/virtap/virtap/provision"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

// Attached says what Attach did.
type Attached struct {
	Domain  string             `json:"domain"`
	Where   Where              `json:"-"`
	Record  domain.IfaceRecord `json:"interface"`
	Device  string             `json:"device,omitempty"` // the host device (live only)
	Filter  bool               `json:"filter"`           // anti-spoofing is on it
	Defined bool               `json:"persistent"`       // in the persistent definition
	Live    bool               `json:"live"`
}

// resolveWhere picks the definitions to change: as given, else those the
// domain has (a running persistent guest: both, as virsh attach-interface
// --live --config).
func resolveWhere(dom Dom, w Where) (Where, error) {
	if !w.Live && !w.Config {
		return Where{Live: dom.Running, Config: dom.Persistent}, nil
	}
	if w.Live && !dom.Running {
		return w, fmt.Errorf("domain %s is not running: --live needs a running guest (leave it out to change the persistent definition)", dom.Name)
	}
	if w.Config && !dom.Persistent {
		return w, fmt.Errorf("domain %s is transient: it has no persistent definition for --config", dom.Name)
	}
	return w, nil
}

// Attach gives domain name a new interface on a policy network: planned
// against the current policy (provision.PlanAttach), the host side made
// (host.PrepareIface), virtap's record updated, the device attached, and
// for an untrusted macvtap the anti-spoofing filter bound to libvirt's new
// device before the guest's link goes up. Any failure undoes every step.
func Attach(e *Env, name string, req provision.AttachRequest, w Where) (*Attached, error) {
	dom, err := e.Libvirt.Lookup(name)
	if err != nil {
		return nil, err
	}
	if w, err = resolveWhere(dom, w); err != nil {
		return nil, err
	}
	live, err := parseDoc(dom.Live)
	if err != nil {
		return nil, fmt.Errorf("domain %s live XML: %w", dom.Name, err)
	}
	config, err := parseDoc(dom.Config)
	if err != nil {
		return nil, fmt.Errorf("domain %s persistent XML: %w", dom.Name, err)
	}
	base, other := config, live
	if !w.Config {
		base, other = live, config
	}
	opts := e.Provision
	if other != nil {
		opts.Taken = append(opts.Taken, usedMACs(other)...)
	}
	if e.Fleet != nil {
		if opts.Fleet, err = e.Fleet(base); err != nil {
			return nil, err
		}
	}
	att, err := provision.PlanAttach(base, req, opts)
	if err != nil {
		return nil, fmt.Errorf("domain %s: %w", dom.Name, err)
	}
	g, err := guestOf(att.Doc)
	if err != nil {
		return nil, err
	}
	rv := &revert{log: e.log().With("domain", dom.Name, "mac", att.Record.MAC)}
	res, err := attach(e, dom, w, live, config, att, g, rv)
	if err != nil {
		if uerr := rv.run(); uerr != nil {
			return nil, fmt.Errorf("%w; rollback incomplete (virtap gc removes what is left): %v", err, uerr)
		}
		return nil, fmt.Errorf("%w (everything rolled back)", err)
	}
	return res, nil
}

func attach(e *Env, dom Dom, w Where, live, config *domain.Doc, att *provision.Attachment, g *host.Guest, rv *revert) (*Attached, error) {
	ir := att.Record
	res := &Attached{Domain: dom.Name, Where: w, Record: ir, Device: ir.Device, Live: w.Live, Defined: w.Config}
	if w.Live {
		if err := e.withRealiser(func(r *host.Realiser) error { return r.PrepareIface(g, ir.MAC) }); err != nil {
			return nil, err
		}
		rv.add("host side", func() error {
			return e.withRealiser(func(r *host.Realiser) error { return r.ReleaseIface(g, ir) })
		})
		res.Filter = host.Untrusted(ir)
	}
	// The record first: a guest stopped from now on releases what it names.
	for _, x := range []struct {
		w   Where
		doc *domain.Doc
	}{{Where{Live: true}, live}, {Where{Config: true}, config}} {
		if !(x.w.Live && w.Live || x.w.Config && w.Config) {
			continue
		}
		var old *domain.Record
		if x.doc != nil {
			old = x.doc.Record
		}
		if err := e.Libvirt.SetMetadata(dom.Name, withEntry(old, e.Host, ir).Element(), x.w); err != nil {
			return nil, fmt.Errorf("virtap's record in the %s definition: %w", x.w, err)
		}
		prev := old.Element()
		rv.add("record in the "+x.w.String()+" definition", func() error { return e.Libvirt.SetMetadata(dom.Name, prev, x.w) })
	}
	if w.Config {
		if err := e.Libvirt.AttachDevice(dom.Name, att.XML, Where{Config: true}); err != nil {
			return nil, fmt.Errorf("attach to the persistent definition: %w", err)
		}
		rv.add("interface in the persistent definition", func() error {
			return e.Libvirt.DetachDevice(dom.Name, att.XML, Where{Config: true})
		})
	}
	if !w.Live {
		return res, nil
	}
	dev, err := attachLive(e, dom.Name, att, rv)
	if dev != "" {
		res.Device = dev
	}
	return res, err
}

// gated: the interface is attached with its link down until its filter is
// on libvirt's device (QEMU drops what a guest sends on a link that is
// down), so not one frame of an untrusted guest leaves unfiltered.
func gated(ir domain.IfaceRecord) bool {
	return ir.Kind == policy.KindMacvtap && host.Untrusted(ir)
}

// attachLive hot-plugs the interface and, when gated, binds its filter and
// brings its link up. It returns libvirt's device for a macvtap.
func attachLive(e *Env, name string, att *provision.Attachment, rv *revert) (string, error) {
	ir := att.Record
	xml := att.XML
	if gated(ir) {
		var err error
		if xml, err = setLink(att.XML, "down"); err != nil {
			return "", err
		}
	}
	if err := e.Libvirt.AttachDevice(name, xml, Where{Live: true}); err != nil {
		return "", fmt.Errorf("attach to the running guest: %w", err)
	}
	rv.add("interface in the running guest", func() error {
		if err := e.Libvirt.DetachDevice(name, xml, Where{Live: true}); err != nil {
			return err
		}
		return waitGone(e, name, ir.MAC)
	})
	dom, err := e.Libvirt.Lookup(name)
	if err != nil {
		return "", err
	}
	live, err := parseDoc(dom.Live)
	if err != nil || live == nil {
		return "", errors.Join(fmt.Errorf("domain %s: no live XML after the attach", name), err)
	}
	// As the hook does: the values that matter come from the policy, not
	// from the record in the XML.
	if live.Record, err = provision.FromPolicy(live, e.Policy, e.Host); err != nil {
		return "", err
	}
	g, err := guestOf(live)
	if err != nil {
		return "", err
	}
	now, ok := interfaceXML(live, ir.MAC)
	if !ok {
		return "", fmt.Errorf("domain %s: interface %s is not in the live XML after the attach", name, ir.MAC)
	}
	dev := targetOf(live, ir.MAC)
	if !gated(ir) {
		return dev, nil
	}
	if err := e.withRealiser(func(r *host.Realiser) error { return r.FilterIface(g, ir.MAC) }); err != nil {
		return dev, err
	}
	up, err := setLink(now, "up")
	if err != nil {
		return dev, err
	}
	if err := e.Libvirt.UpdateDevice(name, up, Where{Live: true}); err != nil {
		return dev, fmt.Errorf("link up after the filter was bound: %w", err)
	}
	return dev, nil
}

// setLink sets <link state=.../> of an <interface> element.
func setLink(xml, state string) (string, error) {
	var def libvirtxml.DomainInterface
	if err := def.Unmarshal(xml); err != nil {
		return "", err
	}
	def.Link = &libvirtxml.DomainInterfaceLink{State: state}
	return def.Marshal()
}

func targetOf(d *domain.Doc, mac string) string {
	for _, i := range d.Interfaces {
		if sameMAC(i.MAC, mac) {
			return i.TargetDev
		}
	}
	return ""
}

func usedMACs(d *domain.Doc) []string {
	var out []string
	for _, i := range d.Interfaces {
		out = append(out, i.MAC)
	}
	return out
}
