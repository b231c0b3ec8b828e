package passthrough

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/virtap/virtap/internal/ifname"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"

	"github.com/virtap/virtap/internal/store"
)

// Pool is a named VF pool: the VFs of PF, or an explicit list of devices.
type Pool struct {
	Name      string
	SysfsRoot string   // "/sys" on a real host
	PF        string   // either PF ...
	Devices   []string // ... or an explicit list of netdev names
	// Linker programs VFs; nil means NetlinkVF{} (the calling thread's netns).
	Linker VFLinker
	// Log receives logs under the name "passthrough"; nil discards them.
	Log hclog.Logger
	// Exists, when set, says whether a listed device outside sysfs (another
	// network namespace) exists; one that does not is Missing, not busy.
	Exists func(netdev string) bool
}

func (p *Pool) log() hclog.Logger {
	l := p.Log
	if l == nil {
		l = hclog.NewNullLogger()
	}
	return l.Named("passthrough").With("pool", p.Name)
}

func (p *Pool) linker() VFLinker {
	if p.Linker != nil {
		return p.Linker
	}
	return NetlinkVF{}
}

// Members discovers the pool's devices. For an explicit list, a listed
// device that has disappeared is returned with Netdev set and Missing true
// (so that Reserve skips it instead of failing the whole pool).
func (p *Pool) Members() ([]Member, error) {
	if p.PF != "" && len(p.Devices) > 0 {
		return nil, fmt.Errorf("pool %q: set pf or devices, not both", p.Name)
	}
	if p.PF != "" {
		vfs, err := Discover(p.SysfsRoot, p.PF)
		if err != nil {
			return nil, fmt.Errorf("pool %q: %w", p.Name, err)
		}
		out := make([]Member, len(vfs))
		for i, v := range vfs {
			out[i] = Member{VF: v, Missing: v.Netdev == ""}
		}
		return out, nil
	}
	if len(p.Devices) == 0 {
		return nil, fmt.Errorf("pool %q: neither pf nor devices", p.Name)
	}
	var out []Member
	for _, n := range p.Devices {
		vfs, err := DiscoverDevices(p.SysfsRoot, []string{n})
		if err != nil {
			if ifname.Validate(n) != nil {
				return nil, fmt.Errorf("pool %q: %w", p.Name, err)
			}
			// Not under this sysfs: sysfs shows the namespace it was
			// mounted in, so a device of another network namespace is
			// only known to netlink. The caller's inUse (netlink) tells
			// whether it exists and is free.
			out = append(out, Member{VF: VF{Index: -1, Netdev: n}, Missing: p.Exists != nil && !p.Exists(n)})
			continue
		}
		out = append(out, Member{VF: vfs[0]})
	}
	return out, nil
}

// Member is a pool device as discovery found it.
type Member struct {
	VF
	// Missing: the device has no netdev now (gone, or bound to another
	// driver such as vfio-pci by someone).
	Missing bool
}

// Reserve gives holder h (a guest interface) a device of the pool and
// returns it. A device that h already holds is returned again (re-run
// safe). Otherwise devices that are missing or that inUse reports as used
// (by something else than virtap: a macvlan/macvtap child, a bridge master,
// a dead lower layer) are skipped, and the store picks the first free one
// of the rest in one transaction, so concurrent hooks never get the same
// device. When none is left the error is a *store.PoolExhaustedError naming
// the holders and the busy devices. inUse may be nil (only Missing counts).
func (p *Pool) Reserve(st *store.Store, h store.Holder, inUse func(netdev string) bool) (VF, error) {
	members, err := p.Members()
	if err != nil {
		return VF{}, err
	}
	byKey := map[string]Member{}
	for _, m := range members {
		byKey[m.Key()] = m
	}
	if h.MAC != "" {
		r, ok, err := st.ReservationOf(p.Name, h.UUID, h.MAC)
		if err != nil {
			return VF{}, err
		}
		if m, member := byKey[r.Device]; ok && member {
			return m.VF, nil
		}
	}
	var candidates, busy []string
	for _, m := range members {
		if m.Missing || (inUse != nil && inUse(m.Netdev)) {
			busy = append(busy, m.Key())
			continue
		}
		candidates = append(candidates, m.Key())
	}
	key, err := st.Reserve(p.Name, candidates, h)
	var pe *store.PoolExhaustedError
	if errors.As(err, &pe) {
		for _, b := range busy {
			if _, held := pe.Holders[b]; !held {
				pe.Busy = append(pe.Busy, b)
			}
		}
		return VF{}, pe
	}
	if err != nil {
		return VF{}, err
	}
	m, ok := byKey[key]
	if !ok {
		// Held before under a key that is no longer a member (h without
		// a MAC, or the pool changed): hand it back and report.
		return VF{}, fmt.Errorf("pool %q: %s already holds %q, which is no longer a member", p.Name, h, key)
	}
	p.log().Info("reserved vf", "device", key, "netdev", m.Netdev, "uuid", h.UUID, "mac", h.MAC)
	return m.VF, nil
}

// realVF returns the PF's view of vf, or ok=false when the device is not a
// VF the PF reports (a stand-in, a fake sysfs tree, a vanished PF).
func (p *Pool) realVF(vf VF) (VFSettings, bool, error) {
	if vf.PF == "" || vf.Index < 0 {
		return VFSettings{}, false, nil
	}
	vfs, err := p.linker().VFs(vf.PF)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return VFSettings{}, false, nil
		}
		return VFSettings{}, false, fmt.Errorf("pf %q: %w", vf.PF, err)
	}
	cur, ok := vfs[vf.Index]
	return cur, ok, nil
}

// Program applies cfg to a VF that h holds, after saving the VF's current
// settings in the reservation (write-ahead: a crash after it still lets
// Release restore them; a re-run keeps the first saved settings). A device
// the PF does not report as its VF is left alone (debug log).
func (p *Pool) Program(st *store.Store, vf VF, h store.Holder, cfg VFConfig) error {
	log := p.log().With("device", vf.Key(), "uuid", h.UUID)
	cur, real, err := p.realVF(vf)
	if err != nil {
		return err
	}
	if !real {
		log.Debug("not a vf of its pf, skipping vf programming", "pf", vf.PF, "vf_index", vf.Index)
		return nil
	}
	r, ok, err := st.ReservationOf(p.Name, h.UUID, h.MAC)
	if err != nil {
		return err
	}
	if !ok || r.Device != vf.Key() {
		return fmt.Errorf("pool %q: %s does not hold %s", p.Name, h, vf.Key())
	}
	if _, _, _, saved, _ := decodeSaved(r.Data); !saved {
		if err := st.AnnotateReservation(p.Name, vf.Key(), h.UUID, encodeSaved(vf.PF, vf.Index, cur)); err != nil {
			return fmt.Errorf("save vf settings: %w", err)
		}
	}
	if err := apply(p.linker(), vf.PF, vf.Index, cfg); err != nil {
		return fmt.Errorf("pool %q: program %s: %w", p.Name, vf.Key(), err)
	}
	log.Debug("programmed vf", "pf", vf.PF, "vf_index", vf.Index)
	return nil
}

// ReleaseHolder releases every device the domain holds in this pool.
func (p *Pool) ReleaseHolder(st *store.Store, domUUID string) ([]store.Reservation, error) {
	return p.release(st, domUUID, "")
}

// ReleaseIface releases the device one interface (uuid, mac) holds.
func (p *Pool) ReleaseIface(st *store.Store, domUUID, mac string) ([]store.Reservation, error) {
	if mac == "" {
		return nil, errors.New("empty mac")
	}
	return p.release(st, domUUID, mac)
}

// release restores saved VF settings (best effort, all of them), then frees
// the reservation whatever the restore said: a device that cannot be
// restored must not stay blocked forever. A crash between the two leaves the
// reservation with its saved settings, so a re-run restores again.
func (p *Pool) release(st *store.Store, domUUID, mac string) ([]store.Reservation, error) {
	rs, err := st.HolderReservations(domUUID)
	if err != nil {
		return nil, err
	}
	if mac != "" {
		if mac, err = store.NormalizeMAC(mac); err != nil {
			return nil, err
		}
	}
	var out []store.Reservation
	var errs []error
	for _, r := range rs {
		if r.Pool != p.Name || (mac != "" && r.Holder.MAC != mac) {
			continue
		}
		log := p.log().With("device", r.Device, "uuid", r.Holder.UUID)
		pf, idx, saved, ok, derr := decodeSaved(r.Data)
		switch {
		case derr != nil:
			errs = append(errs, fmt.Errorf("pool %q: saved settings of %s: %w", p.Name, r.Device, derr))
		case ok:
			_, real, err := p.realVF(VF{PF: pf, Index: idx})
			if err != nil {
				errs = append(errs, err)
			} else if !real {
				log.Debug("vf no longer reported by its pf, nothing to restore", "pf", pf, "vf_index", idx)
			} else if err := restore(p.linker(), pf, idx, saved); err != nil {
				log.Warn("restoring vf settings failed", "error", err)
				errs = append(errs, fmt.Errorf("pool %q: %w", p.Name, err))
			}
		}
		if _, _, err := st.Release(p.Name, r.Holder.UUID, r.Holder.MAC); err != nil {
			errs = append(errs, err)
			continue
		}
		log.Info("released vf")
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}

// PoolStatus is a pool's occupancy, for `virtap status` and `virtap doctor`.
type PoolStatus struct {
	Name    string                  `json:"name"`
	Size    int                     `json:"size"`
	Free    int                     `json:"free"`
	Holders map[string]store.Holder `json:"holders"`
	// Busy: members in use by something else, not held by virtap.
	Busy []string `json:"busy"`
	// Missing: members that are not on this host (no such netdev or VF).
	Missing []string `json:"missing"`
	// Error says why the pool could not be read, if it could not.
	Error string `json:"error,omitempty"`
	// Stale: reserved keys that are no longer members of the pool.
	Stale []string `json:"stale"`
}

// NewPoolStatus is an empty status of pool name, its lists empty, not nil.
func NewPoolStatus(name string) PoolStatus {
	return PoolStatus{Name: name, Holders: map[string]store.Holder{}, Busy: []string{}, Missing: []string{}, Stale: []string{}}
}

// Status reports the pool's occupancy; inUse as for Reserve.
func (p *Pool) Status(st *store.Store, inUse func(netdev string) bool) (PoolStatus, error) {
	s := NewPoolStatus(p.Name)
	members, err := p.Members()
	if err != nil {
		return s, err
	}
	rs, err := st.Reservations(p.Name)
	if err != nil {
		return s, err
	}
	for _, r := range rs {
		s.Holders[r.Device] = r.Holder
	}
	s.Size = len(members)
	isMember := map[string]bool{}
	for _, m := range members {
		isMember[m.Key()] = true
		if _, held := s.Holders[m.Key()]; held {
			continue
		}
		switch {
		case m.Missing:
			s.Missing = append(s.Missing, m.Key())
			continue
		case inUse != nil && inUse(m.Netdev):
			s.Busy = append(s.Busy, m.Key())
			continue
		}
		s.Free++
	}
	for k := range s.Holders {
		if !isMember[k] {
			s.Stale = append(s.Stale, k)
		}
	}
	sort.Strings(s.Stale)
	return s, nil
}

// Headroom returns nil when at least need devices are free, else an error
// that names the pool and its holders.
func (s PoolStatus) Headroom(need int) error {
	if s.Free >= need {
		return nil
	}
	var held []string
	for d, h := range s.Holders {
		held = append(held, fmt.Sprintf("%s by %s", d, h))
	}
	sort.Strings(held)
	msg := fmt.Sprintf("pool %q has %d free of %d devices, %d needed", s.Name, s.Free, s.Size, need)
	if len(held) > 0 {
		msg += "; held: " + strings.Join(held, ", ")
	}
	if len(s.Busy) > 0 {
		msg += "; in use outside virtap: " + strings.Join(s.Busy, ", ")
	}
	if len(s.Missing) > 0 {
		msg += "; missing: " + strings.Join(s.Missing, ", ")
	}
	return errors.New(msg)
}

// LinkExists takes one snapshot of the link names in h's namespace (nil:
// the calling thread's) and says whether a netdev is among them.
func LinkExists(h *netlink.Handle) (func(netdev string) bool, error) {
	if h == nil {
		h = &netlink.Handle{}
	}
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	names := map[string]bool{}
	for _, l := range links {
		names[l.Attrs().Name] = true
	}
	return func(netdev string) bool { return names[netdev] }, nil
}

// LinkUsage takes one snapshot of the links in h's namespace (nil: the
// calling thread's) and returns an inUse function for Reserve and Status:
// a netdev is in use when it is missing, is enslaved to a master (bridge,
// bond), has a macvlan/macvtap/ipvlan/ipvtap/vlan child, or its lower
// layer is down or not present.
func LinkUsage(h *netlink.Handle) (func(netdev string) bool, error) {
	if h == nil {
		h = &netlink.Handle{}
	}
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	byName := map[string]*netlink.LinkAttrs{}
	hasChild := map[int]bool{}
	for _, l := range links {
		a := l.Attrs()
		byName[a.Name] = a
		switch l.Type() {
		case "macvlan", "macvtap", "ipvlan", "ipvtap", "vlan":
			if a.ParentIndex != 0 && a.NetNsID < 0 {
				hasChild[a.ParentIndex] = true
			}
		}
	}
	return func(netdev string) bool {
		a, ok := byName[netdev]
		if !ok {
			return true
		}
		return a.MasterIndex != 0 || hasChild[a.Index] ||
			a.OperState == netlink.OperLowerLayerDown || a.OperState == netlink.OperNotPresent
	}, nil
}
