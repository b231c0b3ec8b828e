// Package virt is the only place virtap talks to libvirt's API (cgo,
// libvirt.org/go/libvirt). The hook never imports it: a hook that calls
// libvirt deadlocks libvirtd, and linking libvirt makes a process start
// about 12 times slower.
package virt

import (
	"errors"
	"fmt"

	"github.com/google/uuid"
	"libvirt.org/go/libvirt"
)

// DefaultURI is "": libvirt then picks the URI itself, as virsh does:
// LIBVIRT_DEFAULT_URI, else uri_default in libvirt.conf, else its probe
// (qemu:///system for root).
const DefaultURI = ""

// Restart is how messages tell the user to restart the daemon that runs
// the qemu driver (and reads the hooks).
const Restart = "restart libvirtd (or virtqemud on modular hosts)"

// Conn is a connection to libvirt.
type Conn struct{ c *libvirt.Connect }

// Connect opens uri read-write ("": libvirt's default URI).
func Connect(uri string) (*Conn, error) {
	return connect(uri, false)
}

// ConnectReadOnly opens uri read-only, for callers that change nothing.
func ConnectReadOnly(uri string) (*Conn, error) {
	return connect(uri, true)
}

func connect(uri string, ro bool) (*Conn, error) {
	var c *libvirt.Connect
	var err error
	if ro {
		c, err = libvirt.NewConnectReadOnly(uri)
	} else {
		c, err = libvirt.NewConnect(uri)
	}
	if err != nil {
		name := uri
		if name == "" {
			name = "libvirt's default URI (LIBVIRT_DEFAULT_URI, uri_default in libvirt.conf)"
		}
		return nil, fmt.Errorf("connect to %s: %w (is libvirtd or virtqemud running? give another --connect)", name, Err(err))
	}
	return &Conn{c: c}, nil
}

// Err turns a libvirt error into its message: "virError(Code=27,
// Domain=12, Message='...')" says nothing more to a user than the message.
func Err(err error) error {
	if lerr, ok := errors.AsType[libvirt.Error](err); ok && lerr.Message != "" {
		return errors.New(lerr.Message)
	}
	return err
}

// URI is the URI the connection uses (what libvirt picked for "").
func (c *Conn) URI() string {
	u, err := c.c.GetURI()
	if err != nil {
		return ""
	}
	return u
}

// Networks lists the names of libvirt's networks (defined or running).
func (c *Conn) Networks() ([]string, error) {
	ns, err := c.c.ListAllNetworks(0)
	if err != nil {
		return nil, Err(err)
	}
	var out []string
	for i := range ns {
		if name, err := ns[i].GetName(); err == nil {
			out = append(out, name)
		}
		_ = ns[i].Free()
	}
	return out, nil
}

// Versions are the version of libvirt the daemon runs and of its
// hypervisor (QEMU), as "major.minor.micro".
func (c *Conn) Versions() (daemon, hypervisor string, err error) {
	d, err := c.c.GetLibVersion()
	if err != nil {
		return "", "", Err(err)
	}
	h, err := c.c.GetVersion()
	if err != nil {
		return dotted(d), "", Err(err)
	}
	return dotted(d), dotted(h), nil
}

// LibVersion is the version of the libvirt library this process loaded.
func LibVersion() (string, error) {
	v, err := libvirt.GetVersion()
	if err != nil {
		return "", Err(err)
	}
	return dotted(v), nil
}

func dotted(v uint32) string {
	return fmt.Sprintf("%d.%d.%d", v/1000000, v/1000%1000, v%1000)
}

// Close closes the connection.
func (c *Conn) Close() { _, _ = c.c.Close() }

// Define defines (or redefines) a domain from XML with libvirt's schema
// validation on, and returns its name and UUID.
func (c *Conn) Define(xml string) (string, string, error) {
	d, err := c.c.DomainDefineXMLFlags(xml, libvirt.DOMAIN_DEFINE_VALIDATE)
	if err != nil {
		return "", "", Err(err)
	}
	defer d.Free()
	name, _ := d.GetName()
	id, _ := d.GetUUIDString()
	return name, id, nil
}

// Domain is one defined or running domain.
type Domain struct {
	Name    string
	UUID    uuid.UUID
	Running bool
	XML     string // the live XML for running domains, else the persistent one
}

// Domains lists all domains with their XML. A domain whose UUID or state
// cannot be read is an error, never a stopped domain (gc would remove its
// devices); one that went away while being listed is left out.
func (c *Conn) Domains() ([]Domain, error) {
	ds, err := c.c.ListAllDomains(0)
	if err != nil {
		return nil, Err(err)
	}
	defer func() {
		for i := range ds {
			_ = ds[i].Free()
		}
	}()
	var out []Domain
	for i := range ds {
		dom, err := domainOf(&ds[i])
		if lerr, ok := errors.AsType[libvirt.Error](err); ok && lerr.Code == libvirt.ERR_NO_DOMAIN {
			continue
		}
		if err != nil {
			return nil, Err(err)
		}
		out = append(out, dom)
	}
	return out, nil
}

// domainOf reads one listed domain.
func domainOf(d *libvirt.Domain) (Domain, error) {
	name, err := d.GetName()
	if err != nil {
		return Domain{}, err
	}
	id, err := d.GetUUIDString()
	if err != nil {
		return Domain{}, fmt.Errorf("domain %s: uuid: %w", name, err)
	}
	u, err := uuid.Parse(id)
	if err != nil {
		return Domain{}, fmt.Errorf("domain %s: uuid %q: %w", name, id, err)
	}
	active, err := d.IsActive()
	if err != nil {
		return Domain{}, fmt.Errorf("domain %s: state: %w", name, err)
	}
	xml, err := d.GetXMLDesc(0)
	if err != nil {
		return Domain{}, fmt.Errorf("domain %s: xml: %w", name, err)
	}
	return Domain{Name: name, UUID: u, Running: active, XML: xml}, nil
}

// EnsureNetwork defines, starts and autostarts a libvirt network from xml
// unless one of that name exists (then it is only started if inactive).
func (c *Conn) EnsureNetwork(name, xml string) (created bool, err error) {
	n, err := c.c.LookupNetworkByName(name)
	if err != nil {
		n, err = c.c.NetworkDefineXML(xml)
		if err != nil {
			return false, fmt.Errorf("define network %s: %w", name, Err(err))
		}
		created = true
	}
	defer n.Free()
	if active, _ := n.IsActive(); !active {
		if err := n.Create(); err != nil {
			return created, fmt.Errorf("start network %s: %w", name, Err(err))
		}
	}
	if err := n.SetAutostart(true); err != nil {
		return created, fmt.Errorf("autostart network %s: %w", name, Err(err))
	}
	return created, nil
}
