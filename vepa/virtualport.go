package vepa

import (
	"encoding/xml"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"libvirt.org/go/libvirtxml"

	"github.com/virtap/virtap/provision/policy"
)

// Virtual port types, spelled as libvirt's <virtualport type='...'>.
const (
	TypeQbg = "802.1Qbg" // VSI discovery (VDP) through lldpad: managerid, typeid, typeidversion, instanceid
	TypeQbh = "802.1Qbh" // port profile (VN-Tag): profileid
)

// Limits of the 802.1Qbg and 802.1Qbh fields (libvirt enforces the same).
const (
	MaxManagerID     = 255
	MaxTypeID        = 1<<24 - 1 // 16777215
	MaxTypeIDVersion = 255
	MaxProfileIDLen  = 39
)

// VirtualPort is an 802.1Qbg or 802.1Qbh virtual port of a direct
// (macvtap) interface. Pointers tell "not set" from zero: 802.1Qbg requires
// all three numbers.
type VirtualPort struct {
	Type          string `json:"type"`
	ManagerID     *int   `json:"managerid,omitempty"`
	TypeID        *int   `json:"typeid,omitempty"`
	TypeIDVersion *int   `json:"typeidversion,omitempty"`
	// InstanceID is a UUID naming this VSI instance (802.1Qbg). Empty: the
	// caller derives a stable one per guest interface before rendering.
	InstanceID string `json:"instanceid,omitempty"`
	ProfileID  string `json:"profileid,omitempty"`
}

// FieldError is one invalid field of a virtual port.
type FieldError struct {
	Field string // "type", "managerid", ...
	Msg   string
}

func (e *FieldError) Error() string { return "virtualport " + e.Field + ": " + e.Msg }

// ValidationError lists every problem of one virtual port.
type ValidationError []*FieldError

func (es ValidationError) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

// FromPolicy converts a policy's virtual port (nil gives nil).
func FromPolicy(p *policy.VirtualPort) *VirtualPort {
	if p == nil {
		return nil
	}
	return &VirtualPort{Type: p.Type, ManagerID: p.ManagerID, TypeID: p.TypeID,
		TypeIDVersion: p.TypeIDVersion, InstanceID: p.InstanceID, ProfileID: p.ProfileID}
}

// FromLibvirt reads a <virtualport> element as libvirtxml decoded it, for
// checking ports already present in domain XML. Types other than 802.1Qbg
// and 802.1Qbh (openvswitch, midonet, none) give an error.
func FromLibvirt(v *libvirtxml.DomainInterfaceVirtualPort) (*VirtualPort, error) {
	if v == nil || v.Params == nil {
		return nil, errors.New("virtualport has no type")
	}
	i := func(u *uint) *int {
		if u == nil {
			return nil
		}
		n := int(*u)
		return &n
	}
	switch p := v.Params; {
	case p.VEPA8021QBG != nil:
		q := p.VEPA8021QBG
		return &VirtualPort{Type: TypeQbg, ManagerID: i(q.ManagerID), TypeID: i(q.TypeID),
			TypeIDVersion: i(q.TypeIDVersion), InstanceID: q.InstanceID}, nil
	case p.VNTag8011QBH != nil:
		return &VirtualPort{Type: TypeQbh, ProfileID: p.VNTag8011QBH.ProfileID}, nil
	case p.OpenVSwitch != nil:
		return nil, errors.New("virtualport type openvswitch is not an 802.1Qbg/802.1Qbh port")
	case p.MidoNet != nil:
		return nil, errors.New("virtualport type midonet is not an 802.1Qbg/802.1Qbh port")
	default:
		return nil, errors.New("virtualport has no type")
	}
}

// Validate checks the port on its own: the type, the ranges (managerid
// 0-255, typeid 0-16777215, typeidversion 0-255), the instanceid UUID and
// a profileid of 1 to 39 characters, and that no field of the other type
// is set. An empty instanceid is allowed (derived later). The error is a
// ValidationError listing every problem.
func (v *VirtualPort) Validate() error {
	var errs ValidationError
	add := func(field, format string, a ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, a...)})
	}
	rng := func(field string, val *int, max int) {
		switch {
		case val == nil:
			add(field, "is required for 802.1Qbg (from 0 to %d)", max)
		case *val < 0 || *val > max:
			add(field, "must be from 0 to %d, not %d", max, *val)
		}
	}
	switch v.Type {
	case TypeQbg:
		rng("managerid", v.ManagerID, MaxManagerID)
		rng("typeid", v.TypeID, MaxTypeID)
		rng("typeidversion", v.TypeIDVersion, MaxTypeIDVersion)
		if v.InstanceID != "" {
			if u, err := uuid.Parse(v.InstanceID); err != nil || len(v.InstanceID) != 36 {
				add("instanceid", "%q is not a UUID such as 09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f", v.InstanceID)
			} else if u == uuid.Nil {
				add("instanceid", "must not be the nil UUID")
			}
		}
		if v.ProfileID != "" {
			add("profileid", "belongs to 802.1Qbh, not 802.1Qbg")
		}
	case TypeQbh:
		switch {
		case v.ProfileID == "":
			add("profileid", "is required for 802.1Qbh (1 to %d characters)", MaxProfileIDLen)
		case len(v.ProfileID) > MaxProfileIDLen:
			add("profileid", "is %d characters, at most %d allowed", len(v.ProfileID), MaxProfileIDLen)
		case strings.ContainsAny(v.ProfileID, "\x00\n\r\t"):
			add("profileid", "must not contain control characters")
		}
		if v.ManagerID != nil || v.TypeID != nil || v.TypeIDVersion != nil || v.InstanceID != "" {
			add("type", "managerid, typeid, typeidversion and instanceid belong to 802.1Qbg, not 802.1Qbh")
		}
	default:
		add("type", "%q is not a virtual port type; allowed: %s, %s", v.Type, TypeQbg, TypeQbh)
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// ValidateFor checks the port for a direct interface in the given macvtap
// mode (libvirt's spelling: bridge, vepa, private, passthrough). 802.1Qbg
// associates each guest as a VSI with the adjacent bridge, which then
// switches all of its traffic: that needs mode vepa. 802.1Qbh puts no
// constraint on the mode here (libvirt's examples use private).
func (v *VirtualPort) ValidateFor(mode string) error {
	var errs ValidationError
	if err := v.Validate(); err != nil {
		errs = append(errs, err.(ValidationError)...)
	}
	if v.Type == TypeQbg && mode != "vepa" {
		errs = append(errs, &FieldError{Field: "type", Msg: fmt.Sprintf("802.1Qbg needs mode vepa, not %q", mode)})
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// Libvirt validates the port and returns it as libvirtxml's element.
// instanceID is used for an 802.1Qbg port without one (pass "" to require
// the port's own); see provision.InstanceID for a stable per-interface id.
func (v *VirtualPort) Libvirt(instanceID string) (*libvirtxml.DomainInterfaceVirtualPort, error) {
	c := *v
	if c.Type == TypeQbg && c.InstanceID == "" {
		c.InstanceID = instanceID
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	u := func(p *int) *uint {
		n := uint(*p)
		return &n
	}
	if c.Type == TypeQbh {
		return &libvirtxml.DomainInterfaceVirtualPort{Params: &libvirtxml.DomainInterfaceVirtualPortParams{
			VNTag8011QBH: &libvirtxml.DomainInterfaceVirtualPortParamsVNTag8021QBH{ProfileID: c.ProfileID}}}, nil
	}
	if c.InstanceID == "" {
		return nil, ValidationError{{Field: "instanceid", Msg: "is empty and no derived instance id was given"}}
	}
	return &libvirtxml.DomainInterfaceVirtualPort{Params: &libvirtxml.DomainInterfaceVirtualPortParams{
		VEPA8021QBG: &libvirtxml.DomainInterfaceVirtualPortParamsVEPA8021QBG{
			ManagerID: u(c.ManagerID), TypeID: u(c.TypeID), TypeIDVersion: u(c.TypeIDVersion),
			InstanceID: strings.ToLower(c.InstanceID)}}}, nil
}

// Render returns the <virtualport> element as libvirt domain XML, e.g.
//
//	<virtualport type="802.1Qbg"><parameters managerid="11" typeid="1193047" typeidversion="2" instanceid="..."></parameters></virtualport>
func (v *VirtualPort) Render(instanceID string) (string, error) {
	lv, err := v.Libvirt(instanceID)
	if err != nil {
		return "", err
	}
	b, err := xml.Marshal(lv)
	if err != nil {
		return "", fmt.Errorf("render virtualport: %w", err)
	}
	return string(b), nil
}
