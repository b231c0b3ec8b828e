package host

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/passthrough"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

func poolName(ir domain.IfaceRecord) string {
	if ir.Kind == policy.KindPassthrough {
		return ir.Network
	}
	return ""
}

func (r *Realiser) pool(ir domain.IfaceRecord) *passthrough.Pool {
	return &passthrough.Pool{Name: ir.Network, SysfsRoot: r.sysfsRoot(), PF: ir.PF, Devices: strings.Fields(ir.Devices),
		Linker: passthrough.NetlinkVF{Handle: r.Net.Handle()}, Log: r.Log}
}

// preparePool reserves a free lower device of the pool atomically, programs
// it when it is a real VF (MAC, VLAN, spoofchk, trust, rate; the previous
// settings are saved first) and creates the passthrough macvtap on it.
func (r *Realiser) preparePool(g *Guest, ir domain.IfaceRecord, undo *revert) error {
	pool := r.pool(ir)
	inUse, err := passthrough.LinkUsage(r.Net.Handle())
	if err != nil {
		return err
	}
	h := store.Holder{UUID: g.UUID.String(), MAC: ir.MAC, Name: g.Name}
	_, held, err := r.Store.ReservationOf(ir.Network, h.UUID, h.MAC)
	if err != nil {
		return err
	}
	vf, err := pool.Reserve(r.Store, h, inUse)
	if err != nil {
		return err
	}
	if !held {
		undo.add(func() {
			if _, err := pool.ReleaseIface(r.Store, h.UUID, h.MAC); err != nil {
				r.Log.Warn("rollback: release pool device", "pool", ir.Network, "error", err)
			}
		})
	}
	if vf.Netdev == "" {
		return fmt.Errorf("pool device %s has no network device (bound to another driver?)", vf.Key())
	}
	hw, _ := net.ParseMAC(ir.MAC)
	cfg := passthrough.VFConfig{MAC: hw}
	spoof := ir.SpoofChk != "off"
	trust := ir.Trust == policy.TrustTrusted
	cfg.SpoofChk, cfg.Trust = &spoof, &trust
	if ir.VLAN > 0 {
		v := ir.VLAN
		cfg.VLAN = &v
	}
	if ir.MaxTxRate > 0 {
		v := ir.MaxTxRate
		cfg.MaxTxRate = &v
	}
	if err := pool.Program(r.Store, vf, h, cfg); err != nil {
		return err
	}
	return r.makeDevice(g, ir, vf.Netdev, undo)
}

// releasePools frees every pool device the domain holds, restoring the
// VF settings saved when it was programmed.
func (r *Realiser) releasePools(u string) error {
	rs, err := r.Store.HolderReservations(u)
	if err != nil {
		return err
	}
	var errs []error
	done := map[string]bool{}
	for _, rv := range rs {
		if done[rv.Pool] {
			continue
		}
		done[rv.Pool] = true
		p := &passthrough.Pool{Name: rv.Pool, SysfsRoot: r.sysfsRoot(), Linker: passthrough.NetlinkVF{Handle: r.Net.Handle()}, Log: r.Log}
		if _, err := p.ReleaseHolder(r.Store, u); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
