package provision

import (
	"errors"
	"strings"

	"libvirt.org/go/libvirtxml"

	"github.com/virtap/virtap/provision/policy"
)

// virtualPort renders a policy's virtual port, which the policy validated
// (policy.VirtualPort.Check), as libvirt's element. An 802.1Qbg port
// without an instanceid gets InstanceID(seed, macAddr); UUIDs are written
// lower-case, as libvirt writes them back.
func virtualPort(vp *policy.VirtualPort, seed, macAddr string) *libvirtxml.DomainInterfaceVirtualPort {
	u := func(p *int) *uint {
		if p == nil {
			return nil
		}
		v := uint(*p)
		return &v
	}
	switch vp.Type {
	case policy.VirtualPortQbg:
		id := vp.InstanceID
		if id == "" {
			id = InstanceID(seed, macAddr)
		}
		return &libvirtxml.DomainInterfaceVirtualPort{Params: &libvirtxml.DomainInterfaceVirtualPortParams{
			VEPA8021QBG: &libvirtxml.DomainInterfaceVirtualPortParamsVEPA8021QBG{
				ManagerID: u(vp.ManagerID), TypeID: u(vp.TypeID), TypeIDVersion: u(vp.TypeIDVersion), InstanceID: strings.ToLower(id)}}}
	default:
		return &libvirtxml.DomainInterfaceVirtualPort{Params: &libvirtxml.DomainInterfaceVirtualPortParams{
			VNTag8011QBH: &libvirtxml.DomainInterfaceVirtualPortParamsVNTag8021QBH{ProfileID: vp.ProfileID}}}
	}
}

// ErrNotQbgQbh says a <virtualport> is of another type (openvswitch,
// midonet, ...) or has none: not an 802.1Qbg/Qbh port.
var ErrNotQbgQbh = errors.New("virtualport is not an 802.1Qbg or 802.1Qbh port")

// VirtualPortOf reads a <virtualport> element of domain XML back into the
// policy's form, the inverse of rendering, so that policy.VirtualPort.Check
// can judge ports already in defined domains. Other types give
// ErrNotQbgQbh.
func VirtualPortOf(v *libvirtxml.DomainInterfaceVirtualPort) (*policy.VirtualPort, error) {
	if v == nil || v.Params == nil {
		return nil, ErrNotQbgQbh
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
		return &policy.VirtualPort{Type: policy.VirtualPortQbg, ManagerID: i(q.ManagerID), TypeID: i(q.TypeID),
			TypeIDVersion: i(q.TypeIDVersion), InstanceID: q.InstanceID}, nil
	case p.VNTag8011QBH != nil:
		return &policy.VirtualPort{Type: policy.VirtualPortQbh, ProfileID: p.VNTag8011QBH.ProfileID}, nil
	default:
		return nil, ErrNotQbgQbh
	}
}
