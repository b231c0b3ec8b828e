package provision

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strings"

	"libvirt.org/go/libvirtxml"

	"github.com/virtap/virtap/internal/suggest"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/mac"
	"github.com/virtap/virtap/provision/policy"
)

// Attachment is one interface planned for hot-plug into a defined or
// running domain.
type Attachment struct {
	Plan   Plan
	Record domain.IfaceRecord // its entry in virtap's record
	// Full is the domain's record with the new entry appended (the other
	// entries as they were: hot-plug re-provisions nothing else).
	Full *domain.Record
	XML  string      // the <interface> element to attach
	Doc  *domain.Doc // the domain with the interface and Full in it
}

// AttachRequest says what to attach.
type AttachRequest struct {
	Network string // a policy network
	MAC     string // "": derived like any other interface of the domain
	Model   string // "": the network's model
}

// PlanAttach provisions one new interface on a policy network for the
// domain d (its live or persistent XML) against the current policy. Only
// the new interface is planned: the domain's other interfaces are left as
// they are even if the policy changed (virtap define --domain does that).
func PlanAttach(d *domain.Doc, req AttachRequest, opts Options) (*Attachment, error) {
	if _, ok, err := opts.Policy.Network(opts.Host, req.Network); err != nil {
		return nil, err
	} else if !ok {
		names := opts.Policy.NetworkNames(opts.Host)
		hint := suggest.DidYouMean(req.Network, names)
		if hint != "" {
			hint = ";" + hint
		}
		return nil, fmt.Errorf("network %q is not in %s for host %q%s (its networks: %s); add [networks.%s] or pick one of those",
			req.Network, opts.Policy.File, opts.Host, hint, strings.Join(names, ", "), req.Network)
	}
	if req.MAC != "" {
		m, err := mac.Normalize(req.MAC)
		if err != nil {
			return nil, fmt.Errorf("--mac %q: %v", req.MAC, err)
		}
		for _, used := range append(usedMACs(d), opts.Taken...) {
			if u, err := mac.Normalize(used); err == nil && u == m {
				return nil, fmt.Errorf("MAC %s is already used by an interface of domain %s; give another --mac or none", m, d.Name)
			}
		}
		req.MAC = m
	}
	spliced, err := spliceInterface(d, req)
	if err != nil {
		return nil, err
	}
	pv, err := newProvisioner(spliced, opts)
	if err != nil {
		return nil, err
	}
	for _, ifc := range spliced.Interfaces { // interfaces already ipvtap share their parent's MAC
		if r, ok := d.Record.ByMAC(ifc.MAC); ok && r.Kind == policy.KindIpvtap {
			pv.ipvtapParents[r.Parent] = ifc.Index
		}
	}
	ifc := spliced.Interfaces[len(spliced.Interfaces)-1]
	p, def, err := pv.iface(ifc)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, fmt.Errorf("network %q: not a network virtap manages", req.Network)
	}
	full := &domain.Record{Host: opts.Host}
	if d.Record != nil {
		full.Host = d.Record.Host
		full.Interfaces = append(full.Interfaces, d.Record.Interfaces...)
	}
	ir := record(p, spliced)
	full.Interfaces = append(full.Interfaces, ir)
	out, err := spliced.Render(map[int]*libvirtxml.DomainInterface{ifc.Index: def}, full)
	if err != nil {
		return nil, err
	}
	nd, err := domain.Parse(out)
	if err != nil {
		return nil, err
	}
	n := nd.Interfaces[ifc.Index]
	return &Attachment{Plan: *p, Record: ir, Full: full, XML: string(out[n.Span.Start:n.Span.End]), Doc: nd}, nil
}

func usedMACs(d *domain.Doc) []string {
	var out []string
	for _, i := range d.Interfaces {
		out = append(out, i.MAC)
	}
	return out
}

// spliceInterface returns d with <interface type='network'> for req as
// its last interface.
func spliceInterface(d *domain.Doc, req AttachRequest) (*domain.Doc, error) {
	end := bytes.LastIndex(d.Raw, []byte("</devices>"))
	if end < 0 {
		return nil, fmt.Errorf("domain %s has no <devices> element", d.Name)
	}
	esc := func(s string) string {
		var b strings.Builder
		_ = xml.EscapeText(&b, []byte(s))
		return b.String()
	}
	var b strings.Builder
	b.WriteString("  <interface type='network'>")
	if req.MAC != "" {
		fmt.Fprintf(&b, "<mac address='%s'/>", esc(req.MAC))
	}
	fmt.Fprintf(&b, "<source network='%s'/>", esc(req.Network))
	if req.Model != "" {
		fmt.Fprintf(&b, "<model type='%s'/>", esc(req.Model))
	}
	b.WriteString("</interface>\n  ")
	raw := make([]byte, 0, len(d.Raw)+b.Len())
	raw = append(raw, d.Raw[:end]...)
	raw = append(raw, b.String()...)
	raw = append(raw, d.Raw[end:]...)
	return domain.Parse(raw)
}
