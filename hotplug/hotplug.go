// Package hotplug attaches and detaches policy-network interfaces of
// defined and running guests: libvirt runs no hook for a hot-plugged NIC,
// so virtap does the host-side work (package host) around the libvirt
// calls itself, with a revert stack: any failure undoes every step made.
//
// It does not link libvirt: cmd/virtap hands it a Libvirt (internal/virt).
// The state lock is never held across a libvirt call: a guest being
// stopped holds its domain in libvirt while its release hook waits for
// that lock.
package hotplug

import (
	"errors"
	"fmt"
	"net"

	"github.com/hashicorp/go-hclog"

	"github.com/virtap/virtap/host"
	"github.com/virtap/virtap/provision"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

// Where says which definitions of a domain a change applies to.
type Where struct{ Live, Config bool }

func (w Where) String() string {
	switch {
	case w.Live && w.Config:
		return "live and persistent"
	case w.Live:
		return "live"
	default:
		return "persistent"
	}
}

// Dom is a domain as libvirt has it.
type Dom struct {
	Name       string
	Running    bool
	Persistent bool
	Live       string // the live XML; "" unless running
	Config     string // the persistent (inactive) XML; "" unless persistent
}

// Libvirt is what hot-plug asks of libvirt. Device and metadata calls
// apply to the live domain, its persistent definition, or both (w).
type Libvirt interface {
	Lookup(name string) (Dom, error)
	AttachDevice(name, xml string, w Where) error
	DetachDevice(name, xml string, w Where) error
	UpdateDevice(name, xml string, w Where) error
	// SetMetadata sets virtap's element under <metadata> (key virtap,
	// namespace domain.Namespace); "" removes it.
	SetMetadata(name, element string, w Where) error
}

// Env is what one attach or detach works with.
type Env struct {
	Log     hclog.Logger
	Libvirt Libvirt
	Policy  *policy.Policy
	Host    string // this host's name in the policy
	// Provision are the options PlanAttach runs with (policy, host, local
	// lookups); Taken is filled in here.
	Provision provision.Options
	// Fleet, with [fleet] in the policy, makes planning claim the MAC and
	// lease the pool address fleet-wide for the domain d (nil: no fleet).
	Fleet func(d *domain.Doc) (*provision.Fleet, error)
	// Realiser opens the state (taking its lock) and netlink; close lets
	// go of both. Called once per step that changes the host.
	Realiser func() (r *host.Realiser, close func(), err error)
}

func (e *Env) log() hclog.Logger {
	if e.Log == nil {
		return hclog.NewNullLogger()
	}
	return e.Log
}

// withRealiser runs f with the state open, and closes it.
func (e *Env) withRealiser(f func(r *host.Realiser) error) error {
	r, done, err := e.Realiser()
	if err != nil {
		return err
	}
	defer done()
	return f(r)
}

// revert is a stack of undo steps, run last-in first-out.
type revert struct {
	log   hclog.Logger
	steps []step
}

type step struct {
	what string
	undo func() error
}

func (rv *revert) add(what string, undo func() error) { rv.steps = append(rv.steps, step{what, undo}) }

// run undoes every step and returns what could not be undone.
func (rv *revert) run() error {
	var errs []error
	for i := len(rv.steps) - 1; i >= 0; i-- {
		s := rv.steps[i]
		if err := s.undo(); err != nil {
			rv.log.Error("rollback step failed", "step", s.what, "error", err)
			errs = append(errs, fmt.Errorf("undo %s: %w", s.what, err))
		} else {
			rv.log.Debug("rolled back", "step", s.what)
		}
	}
	rv.steps = nil
	return errors.Join(errs...)
}

// parseDoc parses one of a domain's XML documents; "" is none.
func parseDoc(xml string) (*domain.Doc, error) {
	if xml == "" {
		return nil, nil
	}
	return domain.Parse([]byte(xml))
}

// guestOf is the host's view of a domain document.
func guestOf(d *domain.Doc) (*host.Guest, error) { return host.NewGuest(d) }

// sameMAC compares two MACs however they are written.
func sameMAC(a, b string) bool {
	x, errA := net.ParseMAC(a)
	y, errB := net.ParseMAC(b)
	return errA == nil && errB == nil && x.String() == y.String()
}

// interfaceXML returns the <interface> element with that MAC in d.
func interfaceXML(d *domain.Doc, mac string) (string, bool) {
	if d == nil {
		return "", false
	}
	for _, i := range d.Interfaces {
		if sameMAC(i.MAC, mac) {
			return string(d.Raw[i.Span.Start:i.Span.End]), true
		}
	}
	return "", false
}

// withEntry is rec with ir appended (a copy); without rec, a record of
// host h holding ir alone.
func withEntry(rec *domain.Record, h string, ir domain.IfaceRecord) *domain.Record {
	out := &domain.Record{Host: h}
	if rec != nil {
		out.Host = rec.Host
		out.Interfaces = append(out.Interfaces, rec.Interfaces...)
	}
	out.Interfaces = append(out.Interfaces, ir)
	return out
}

// withoutEntry is rec without the entry of mac (a copy).
func withoutEntry(rec *domain.Record, mac string) *domain.Record {
	if rec == nil {
		return nil
	}
	out := &domain.Record{Host: rec.Host}
	for _, i := range rec.Interfaces {
		if sameMAC(i.MAC, mac) {
			continue
		}
		out.Interfaces = append(out.Interfaces, i)
	}
	return out
}
