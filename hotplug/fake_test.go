package hotplug

import (
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"

	"libvirt.org/go/libvirtxml"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nstest"
	"github.com/virtap/virtap/provision/domain"
)

// fakeLibvirt stands in for libvirtd below Attach and Detach (the real one
// is exercised end to end in test/e2e): it keeps a domain's live and
// persistent XML, splices devices and virtap's record in and out as
// libvirt does, and, like libvirt, makes the macvtap of a direct interface
// attached live (a real device on the test namespace's uplink) and removes
// it on detach. fail makes the named call fail ("attach-live",
// "attach-config", "metadata-live", "metadata-config", "update-live").
type fakeLibvirt struct {
	dom   Dom
	net   *netdev.Manager
	fail  map[string]error
	calls []string
	// onUpdate runs before an UpdateDevice (a test checks what holds then).
	onUpdate func(xml string)
	// spy runs at the start of every call, with its name.
	spy func(call string)
}

var _ Libvirt = (*fakeLibvirt)(nil)

var tapSeq atomic.Int32

func where(w Where) string {
	switch {
	case w.Live && w.Config:
		return "both"
	case w.Live:
		return "live"
	}
	return "config"
}

func (f *fakeLibvirt) call(op string, w Where) error {
	name := op + "-" + where(w)
	f.calls = append(f.calls, name)
	if f.spy != nil {
		f.spy(name)
	}
	return f.fail[name]
}

func (f *fakeLibvirt) Lookup(name string) (Dom, error) {
	if name != f.dom.Name {
		return Dom{}, fmt.Errorf("domain %s: no such domain", name)
	}
	return f.dom, nil
}

// edit applies fn to the XML of each definition w names.
func (f *fakeLibvirt) edit(w Where, fn func(doc string) (string, error)) error {
	for _, x := range []struct {
		on  bool
		doc *string
	}{{w.Live, &f.dom.Live}, {w.Config, &f.dom.Config}} {
		if !x.on {
			continue
		}
		out, err := fn(*x.doc)
		if err != nil {
			return err
		}
		*x.doc = out
	}
	return nil
}

func (f *fakeLibvirt) AttachDevice(name, dev string, w Where) error {
	if err := f.call("attach", w); err != nil {
		return err
	}
	var def libvirtxml.DomainInterface
	if err := def.Unmarshal(dev); err != nil {
		return err
	}
	if w.Live && def.Source != nil && def.Source.Direct != nil {
		tap := fmt.Sprintf("macvtap%d", 90+tapSeq.Add(1))
		hw, _ := net.ParseMAC(def.MAC.Address)
		if _, err := f.net.Create(netdev.Spec{Name: tap, Kind: netdev.KindMacvtap, Parent: def.Source.Direct.Dev,
			Mode: def.Source.Direct.Mode, MAC: hw, Tag: netdev.PurposeTag("test", "libvirt"), Up: true, Index: nstest.FreshIndex()}); err != nil {
			return err
		}
		l, err := f.net.Handle().LinkByName(tap)
		if err == nil {
			err = f.net.Handle().LinkSetAlias(l, "") // libvirt's own: untagged
		}
		if err != nil {
			return err
		}
		def.Target = &libvirtxml.DomainInterfaceTarget{Dev: tap}
	}
	return f.edit(w, func(doc string) (string, error) {
		out, err := def.Marshal()
		if err != nil {
			return "", err
		}
		i := strings.LastIndex(doc, "</devices>")
		return doc[:i] + out + "\n" + doc[i:], nil
	})
}

func (f *fakeLibvirt) DetachDevice(name, dev string, w Where) error {
	if err := f.call("detach", w); err != nil {
		return err
	}
	var def libvirtxml.DomainInterface
	if err := def.Unmarshal(dev); err != nil {
		return err
	}
	return f.edit(w, func(doc string) (string, error) {
		d, err := domain.Parse([]byte(doc))
		if err != nil {
			return "", err
		}
		for _, i := range d.Interfaces {
			if sameMAC(i.MAC, def.MAC.Address) {
				if i.TargetDev != "" && w.Live {
					l, err := f.net.Handle().LinkByName(i.TargetDev)
					if err != nil {
						return "", err
					}
					if err := f.net.Handle().LinkDel(l); err != nil {
						return "", err
					}
				}
				return doc[:i.Span.Start] + doc[i.Span.End:], nil
			}
		}
		return "", fmt.Errorf("no interface %s", def.MAC.Address)
	})
}

func (f *fakeLibvirt) UpdateDevice(name, dev string, w Where) error {
	if f.onUpdate != nil {
		f.onUpdate(dev)
	}
	if err := f.call("update", w); err != nil {
		return err
	}
	var def libvirtxml.DomainInterface
	if err := def.Unmarshal(dev); err != nil {
		return err
	}
	return f.edit(w, func(doc string) (string, error) {
		d, err := domain.Parse([]byte(doc))
		if err != nil {
			return "", err
		}
		for _, i := range d.Interfaces {
			if sameMAC(i.MAC, def.MAC.Address) {
				out, err := def.Marshal()
				return doc[:i.Span.Start] + out + doc[i.Span.End:], err
			}
		}
		return "", fmt.Errorf("no interface %s", def.MAC.Address)
	})
}

func (f *fakeLibvirt) SetMetadata(name, element string, w Where) error {
	if err := f.call("metadata", w); err != nil {
		return err
	}
	var rec *domain.Record
	if element != "" {
		if strings.Contains(element, "xmlns") {
			return errors.New("internal error: failed to create a new XML namespace") // as libvirt
		}
		// libvirt puts the element and its children into the namespace.
		element = strings.Replace(element, "<virtap", fmt.Sprintf("<virtap xmlns=%q", domain.Namespace), 1)
		rec = &domain.Record{}
		if err := xml.Unmarshal([]byte(element), rec); err != nil {
			return err
		}
	}
	return f.edit(w, func(doc string) (string, error) {
		d, err := domain.Parse([]byte(doc))
		if err != nil {
			return "", err
		}
		out, err := d.Render(nil, rec)
		return string(out), err
	})
}
