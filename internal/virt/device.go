package virt

import (
	"fmt"

	"libvirt.org/go/libvirt"
)

// Definitions is one domain with both its definitions.
type Definitions struct {
	Name       string
	UUID       string
	Running    bool
	Persistent bool
	Live       string // the live XML; "" unless running
	// Config is the persistent definition (inactive XML); "" for a
	// transient domain.
	Config string
}

// Lookup reads a domain by name (or UUID) with both its definitions;
// secure adds the secure parts of the persistent one (passwords: needed to
// redefine it without losing them; not on a read-only connection).
func (c *Conn) Lookup(name string, secure bool) (Definitions, error) {
	d, err := c.c.LookupDomainByName(name)
	if err != nil {
		if d, err = c.c.LookupDomainByUUIDString(name); err != nil {
			return Definitions{}, fmt.Errorf("domain %s: %w", name, Err(err))
		}
	}
	defer d.Free()
	var out Definitions
	if out.Name, err = d.GetName(); err != nil {
		return out, err
	}
	if out.UUID, err = d.GetUUIDString(); err != nil {
		return out, err
	}
	if out.Running, err = d.IsActive(); err != nil {
		return out, fmt.Errorf("domain %s: state: %w", out.Name, err)
	}
	if out.Persistent, err = d.IsPersistent(); err != nil {
		return out, fmt.Errorf("domain %s: persistent: %w", out.Name, err)
	}
	if out.Running {
		if out.Live, err = d.GetXMLDesc(0); err != nil {
			return out, fmt.Errorf("domain %s: live xml: %w", out.Name, err)
		}
	}
	if out.Persistent {
		f := libvirt.DOMAIN_XML_INACTIVE
		if secure {
			f |= libvirt.DOMAIN_XML_SECURE
		}
		if out.Config, err = d.GetXMLDesc(f); err != nil {
			return out, fmt.Errorf("domain %s: persistent xml: %w", out.Name, err)
		}
	}
	return out, nil
}

// DefinedNames lists the persistent domains.
func (c *Conn) DefinedNames() ([]string, error) {
	ds, err := c.c.ListAllDomains(libvirt.CONNECT_LIST_DOMAINS_PERSISTENT)
	if err != nil {
		return nil, err
	}
	var out []string
	for i := range ds {
		if n, err := ds[i].GetName(); err == nil {
			out = append(out, n)
		}
		_ = ds[i].Free()
	}
	return out, nil
}

func deviceFlags(live, config bool) libvirt.DomainDeviceModifyFlags {
	var f libvirt.DomainDeviceModifyFlags
	if live {
		f |= libvirt.DOMAIN_DEVICE_MODIFY_LIVE
	}
	if config {
		f |= libvirt.DOMAIN_DEVICE_MODIFY_CONFIG
	}
	return f
}

func (c *Conn) withDomain(name string, f func(d *libvirt.Domain) error) error {
	d, err := c.c.LookupDomainByName(name)
	if err != nil {
		return fmt.Errorf("domain %s: %w", name, Err(err))
	}
	defer d.Free()
	return Err(f(d))
}

// AttachDevice adds a device to the running domain (live) and/or its
// persistent definition (config).
func (c *Conn) AttachDevice(name, xml string, live, config bool) error {
	return c.withDomain(name, func(d *libvirt.Domain) error { return d.AttachDeviceFlags(xml, deviceFlags(live, config)) })
}

// DetachDevice asks for a device to be removed; from a running domain it
// returns once the guest was asked (it may still have the device).
func (c *Conn) DetachDevice(name, xml string, live, config bool) error {
	return c.withDomain(name, func(d *libvirt.Domain) error { return d.DetachDeviceFlags(xml, deviceFlags(live, config)) })
}

// UpdateDevice changes a device in place (e.g. an interface's link state).
func (c *Conn) UpdateDevice(name, xml string, live, config bool) error {
	return c.withDomain(name, func(d *libvirt.Domain) error { return d.UpdateDeviceFlags(xml, deviceFlags(live, config)) })
}

// SetMetadata sets (or, with element "", removes) the domain's metadata
// element of namespace uri, written with prefix key.
func (c *Conn) SetMetadata(name, element, key, uri string, live, config bool) error {
	var f libvirt.DomainModificationImpact
	if live {
		f |= libvirt.DOMAIN_AFFECT_LIVE
	}
	if config {
		f |= libvirt.DOMAIN_AFFECT_CONFIG
	}
	return c.withDomain(name, func(d *libvirt.Domain) error {
		return d.SetMetadata(libvirt.DOMAIN_METADATA_ELEMENT, element, key, uri, f)
	})
}
