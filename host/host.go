// Package host realises and releases the host side of provisioned guest
// interfaces: the devices virtap creates itself (ipvtap, passthrough-pool
// macvtaps, host-access shims), pool reservations and their records. The
// hook calls it on the guest's lifecycle; gc calls it for leftovers.
//
// Every change is recorded before it is made (a write-ahead intent in the
// store) and every device carries virtap's tag, so a crash at any point
// leaves a state that Release or gc finishes.
package host

import (
	"fmt"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/paths"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/provision/domain"
)

// Realiser does the host-side work for one hook or gc run. It keeps no
// state of one request: what a Prepare must undo lives in that call.
type Realiser struct {
	Log   hclog.Logger
	Net   *netdev.Manager
	Store *store.Store // nil: the store's lock could not be had (Release works from tags alone)
	roots paths.Roots
}

// New returns a realiser that works on the links of nd and records in st.
// roots says where /dev and /sys are (the zero Roots: the real ones).
func New(log hclog.Logger, nd *netdev.Manager, st *store.Store, roots paths.Roots) *Realiser {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Realiser{Log: log, Net: nd, Store: st, roots: roots}
}

// Error is a failure the user must fix before the guest can start. Err,
// when set, is the cause (errors.Is and errors.As see it); Msg already
// says it in words.
type Error struct {
	Domain string
	MAC    string
	Msg    string
	Err    error
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

func (e *Error) Error() string {
	if e.MAC == "" {
		return fmt.Sprintf("virtap: domain %s: %s", e.Domain, e.Msg)
	}
	return fmt.Sprintf("virtap: domain %s interface %s: %s", e.Domain, e.MAC, e.Msg)
}

// Guest is what the hook knows of a domain: its UUID, name and document.
type Guest struct {
	UUID uuid.UUID
	Name string
	Doc  *domain.Doc
}

// NewGuest checks that a parsed document carries what the hook needs.
func NewGuest(d *domain.Doc) (*Guest, error) {
	if d.UUID == "" {
		return nil, fmt.Errorf("domain %q has no <uuid>; virtap keys its state by UUID", d.Name)
	}
	u, err := uuid.Parse(d.UUID)
	if err != nil {
		return nil, fmt.Errorf("domain %q: <uuid> %q: %v", d.Name, d.UUID, err)
	}
	return &Guest{UUID: u, Name: d.Name, Doc: d}, nil
}

func (r *Realiser) devRoot() string { return r.roots.DevRoot() }

func (r *Realiser) sysfsRoot() string { return r.roots.SysRoot() }

// revert is one call's undo steps, run last-in first-out, and the MACs
// whose records an earlier run made (lower case): a rollback keeps those.
type revert struct {
	steps []func()
	kept  map[string]bool
}

func (rv *revert) add(f func()) { rv.steps = append(rv.steps, f) }
func (rv *revert) run() {
	for i := len(rv.steps) - 1; i >= 0; i-- {
		rv.steps[i]()
	}
	rv.steps = nil
}
