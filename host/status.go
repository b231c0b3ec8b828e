package host

import (
	"sort"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nft"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/passthrough"
)

// Status is what virtap holds on this host.
type Status struct {
	Domains      []store.Domain           `json:"domains"`
	Devices      []DeviceStatus           `json:"devices"`
	Reservations []store.Reservation      `json:"reservations"`
	Leases       []store.Lease            `json:"leases"`
	Pools        []passthrough.PoolStatus `json:"pools"`
	Filters      []FilterStatus           `json:"filters"`
}

// FilterStatus is one guest interface's anti-spoofing filter: what it saw
// and what it dropped, by reason.
type FilterStatus struct {
	Domain  string `json:"domain"`
	MAC     string `json:"mac"`
	Device  string `json:"device"`
	Seen    uint64 `json:"seen"`
	Learned uint64 `json:"learned"` // DHCPACKs that bound an address
	// LearnedAddresses are the addresses DHCP snooping binds now.
	LearnedAddresses []string          `json:"learned_addresses,omitempty"`
	Dropped          map[string]uint64 `json:"dropped"`
}

// PoolSpec names a passthrough pool of the policy: its PF or devices.
type PoolSpec struct {
	Name    string
	PF      string
	Devices []string
}

// DeviceStatus is one host device carrying virtap's tag.
type DeviceStatus struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Parent string `json:"parent,omitempty"`
	Mode   string `json:"mode,omitempty"`
	MAC    string `json:"mac,omitempty"`
	Up     bool   `json:"up"`
	Tag    string `json:"tag"`
	Owner  string `json:"owner,omitempty"` // domain UUID, or the purpose
}

// Collect reads the store, the host's tagged devices and the pools'
// occupancy. It changes nothing.
func Collect(st *store.Store, nd *netdev.Manager, networks []string, pools []PoolSpec, sysfsRoot string) (*Status, error) {
	s := &Status{}
	var err error
	if st != nil {
		if s.Domains, err = st.Domains(); err != nil {
			return nil, err
		}
		pools, err := st.Pools()
		if err != nil {
			return nil, err
		}
		for _, p := range pools {
			rs, err := st.Reservations(p)
			if err != nil {
				return nil, err
			}
			s.Reservations = append(s.Reservations, rs...)
		}
		for _, n := range networks {
			ls, err := st.Leases(n)
			if err != nil {
				return nil, err
			}
			s.Leases = append(s.Leases, ls...)
		}
	}
	devs, err := nd.List()
	if err != nil {
		return nil, err
	}
	for _, d := range devs {
		ds := DeviceStatus{Name: d.Name, Kind: d.Kind, Parent: d.Parent, Mode: d.Mode, Up: d.Up, Tag: d.Tag.String(), Owner: d.Tag.Scope}
		if d.MAC != nil {
			ds.MAC = d.MAC.String()
		}
		s.Devices = append(s.Devices, ds)
	}
	sort.Slice(s.Devices, func(i, j int) bool { return s.Devices[i].Name < s.Devices[j].Name })
	if s.Filters, err = collectFilters(); err != nil {
		return nil, err
	}
	if len(pools) > 0 {
		inUse, err := passthrough.LinkUsage(nd.Handle())
		if err != nil {
			return nil, err
		}
		exists, err := passthrough.LinkExists(nd.Handle())
		if err != nil {
			return nil, err
		}
		for _, ps := range pools {
			p := &passthrough.Pool{Name: ps.Name, PF: ps.PF, Devices: ps.Devices, SysfsRoot: sysfsRoot, Exists: exists}
			var pst passthrough.PoolStatus
			if st != nil {
				pst, err = p.Status(st, inUse)
			} else {
				pst, err = poolWithoutStore(p, inUse)
			}
			if err != nil {
				pst = passthrough.NewPoolStatus(ps.Name)
				pst.Error = err.Error()
			}
			s.Pools = append(s.Pools, pst)
		}
	}
	return s, nil
}

// poolWithoutStore sizes a pool when no guest was ever prepared here.
func poolWithoutStore(p *passthrough.Pool, inUse func(string) bool) (passthrough.PoolStatus, error) {
	s := passthrough.NewPoolStatus(p.Name)
	members, err := p.Members()
	if err != nil {
		return s, err
	}
	s.Size = len(members)
	for _, m := range members {
		switch {
		case m.Missing:
			s.Missing = append(s.Missing, m.Key())
		case inUse(m.Netdev):
			s.Busy = append(s.Busy, m.Key())
		default:
			s.Free++
		}
	}
	return s, nil
}

// collectFilters reads the counters of every anti-spoofing table.
func collectFilters() ([]FilterStatus, error) {
	fm := nft.New(nil)
	ids, err := fm.Domains()
	if err != nil {
		return nil, err
	}
	var out []FilterStatus
	for _, u := range ids {
		cs, err := fm.Counters(u)
		if err != nil {
			return nil, err
		}
		learned, err := fm.Learned(u)
		if err != nil {
			return nil, err
		}
		byMAC := map[string]*FilterStatus{}
		var order []string
		for _, c := range cs {
			f, ok := byMAC[c.MAC]
			if !ok {
				f = &FilterStatus{Domain: u.String(), MAC: c.MAC, Dropped: map[string]uint64{}}
				for _, a := range learned[c.MAC] {
					f.LearnedAddresses = append(f.LearnedAddresses, a.String())
				}
				byMAC[c.MAC] = f
				order = append(order, c.MAC)
			}
			if c.Device != "" {
				f.Device = c.Device
			}
			switch c.Reason {
			case nft.ReasonSeen:
				f.Seen += c.Packets
			case nft.ReasonLearned:
				f.Learned += c.Packets
			default:
				f.Dropped[c.Reason] += c.Packets
			}
		}
		for _, m := range order {
			out = append(out, *byMAC[m])
		}
	}
	return out, nil
}
