package netdev

import (
	"fmt"
	"net"
	"strings"

	"github.com/google/uuid"
)

// tagPrefix starts the IFLA_IFALIAS of every device virtap created.
const tagPrefix = "virtap:"

// maxAlias is the kernel's limit for IFLA_IFALIAS (IFALIASZ 256, with NUL).
const maxAlias = 255

// Tag marks a host device as virtap's own. It is stored in the link's alias
// (IFLA_IFALIAS) as "virtap:<scope>:<id>":
//
//   - a guest's device: scope is the domain UUID, id the guest MAC in
//     lowercase colon form ("virtap:6f1c...-...:52:54:00:12:34:56");
//   - anything else (probe devices, host shims): scope is a purpose word
//     without colons, id free text ("virtap:probe:4242-1a2b3c4d").
//
// The zero Tag means "not virtap's".
type Tag struct {
	Scope string
	ID    string
}

// GuestTag is the tag of a guest interface's host device.
func GuestTag(domain uuid.UUID, mac net.HardwareAddr) Tag {
	return Tag{Scope: domain.String(), ID: strings.ToLower(mac.String())}
}

// Purposes of non-guest devices.
const (
	// ProbePurpose tags the devices of a reflective-relay probe (package
	// vepa): "virtap:probe:<pid>-<hex>".
	ProbePurpose = "probe"
	// ShimPurpose tags a network's host-access shim: "virtap:shim:<network>".
	ShimPurpose = "shim"
	// VLANPurpose tags an 802.1Q device virtap made for a network's vlan:
	// "virtap:vlan:<parent>.<id>". Guests share it; the state store's
	// interface records are its reference count.
	VLANPurpose = "vlan"
)

// PurposeTag is the tag of a non-guest device (purpose: "probe", "shim", ...).
func PurposeTag(purpose, id string) Tag {
	return Tag{Scope: purpose, ID: id}
}

// IsZero reports whether t is the zero Tag (no owner).
func (t Tag) IsZero() bool { return t == Tag{} }

// String is the alias form, "virtap:<scope>:<id>".
func (t Tag) String() string { return tagPrefix + t.Scope + ":" + t.ID }

// Domain returns the domain UUID of a guest tag.
func (t Tag) Domain() (uuid.UUID, bool) {
	u, err := uuid.Parse(t.Scope)
	return u, err == nil && len(t.Scope) == 36
}

// For reports whether t is a guest tag for domain u: the one test of
// "tagged for this domain" (release, gc and the filters use it).
func (t Tag) For(u uuid.UUID) bool {
	d, ok := t.Domain()
	return ok && d == u
}

// MAC returns the guest MAC of a guest tag.
func (t Tag) MAC() (net.HardwareAddr, bool) {
	if _, ok := t.Domain(); !ok {
		return nil, false
	}
	m, err := net.ParseMAC(t.ID)
	return m, err == nil && len(m) == 6
}

// Purpose returns the purpose word of a non-guest tag ("" for a guest tag).
func (t Tag) Purpose() string {
	if _, ok := t.Domain(); ok {
		return ""
	}
	return t.Scope
}

// Validate checks that t can be written as an alias and parsed back.
func (t Tag) Validate() error {
	switch {
	case t.Scope == "" || t.ID == "":
		return fmt.Errorf("tag %q: scope and id must not be empty", t.String())
	case strings.ContainsAny(t.Scope, ": \t\n"):
		return fmt.Errorf("tag %q: scope must not contain ':' or white space", t.String())
	case strings.ContainsAny(t.ID, "\x00\n"):
		return fmt.Errorf("tag %q: id must not contain NUL or newline", t.String())
	case len(t.String()) > maxAlias:
		return fmt.Errorf("tag %q: longer than %d bytes", t.String(), maxAlias)
	}
	if _, ok := t.Domain(); ok {
		if m, ok := t.MAC(); !ok || m.String() != t.ID {
			return fmt.Errorf("tag %q: a guest tag's id must be a lowercase colon MAC", t.String())
		}
	}
	return nil
}

// ParseTag reads a link alias. It returns false for any alias that is not a
// well-formed virtap tag (those devices are not virtap's).
func ParseTag(alias string) (Tag, bool) {
	rest, ok := strings.CutPrefix(alias, tagPrefix)
	if !ok {
		return Tag{}, false
	}
	scope, id, ok := strings.Cut(rest, ":")
	if !ok {
		return Tag{}, false
	}
	t := Tag{Scope: scope, ID: id}
	if t.Validate() != nil {
		return Tag{}, false
	}
	return t, true
}
