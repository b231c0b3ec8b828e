package doctor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/provision/policy"
	"github.com/virtap/virtap/vepa"
)

// lowerChecks runs the checks of one lower device: parent, link-up,
// carrier, mtu (per network), promisc, mac-budget, hairpin.
func (r *run) lowerChecks(ctx context.Context, l *lower) error {
	nets := l.names()
	what := "parent"
	switch l.kind {
	case policy.KindBridge:
		what = "bridge"
	case policy.KindPassthrough:
		what = "PF"
	}
	res := func(check string, st Status, detail, advice string) {
		r.rep.add(Result{Check: check, Network: nets, Device: l.name, Status: st, Detail: detail, Advice: advice})
	}
	info, err := r.env.Net.ParentStatus(l.name)
	if err != nil {
		res(CheckParent, Fail, fmt.Sprintf("cannot read %s %s: %v", what, l.name, err), "")
		return nil
	}
	skipRest := func(why string) {
		for _, c := range []string{CheckLinkUp, CheckCarrier, CheckMTU} {
			res(c, Skip, why, "")
		}
		if l.kind == policy.KindMacvtap || l.kind == policy.KindIpvtap {
			res(CheckPromisc, Skip, why, "")
			res(CheckMACBudget, Skip, why, "")
		}
		if len(vepaNets(l)) > 0 {
			res(CheckHairpin, Skip, why, "")
		}
	}
	if !info.Exists {
		res(CheckParent, Fail, fmt.Sprintf("%s %s does not exist on this host", what, l.name),
			"fix "+strings.ToLower(what)+" in the policy, or add a [hosts.HOST.networks.NAME] override for this host")
		skipRest(l.name + " does not exist")
		return nil
	}
	if !r.parentKindOK(l, info, res) {
		skipRest(l.name + " cannot serve as " + what)
		return nil
	}

	// link-up, carrier
	if info.Up {
		res(CheckLinkUp, OK, l.name+" is up", "")
	} else {
		res(CheckLinkUp, Fail, l.name+" is down", "bring it up: ip link set "+l.name+" up (and make that persistent)")
	}
	switch {
	case !info.Up:
		res(CheckCarrier, Skip, l.name+" is down", "")
	case info.Carrier:
		res(CheckCarrier, OK, l.name+" has carrier", "")
	case l.kind == policy.KindBridge:
		res(CheckCarrier, Warn, "bridge "+l.name+" has no carrier (no port is up): guests reach each other but nothing else", "add an uplink port to "+l.name)
	default:
		res(CheckCarrier, Fail, l.name+" has no carrier: the cable, the switch port or the far end is down; guests on it reach nothing",
			"check the link (cable, switch port, far end)")
	}

	// mtu, per network
	for _, n := range l.nets {
		rr := Result{Check: CheckMTU, Network: n.Name, Device: l.name}
		switch {
		case n.MTU == 0:
			rr.Status, rr.Detail = OK, fmt.Sprintf("guests inherit %s's MTU %d", l.name, info.MTU)
		case n.MTU > info.MTU:
			rr.Status = Fail
			rr.Detail = fmt.Sprintf("mtu %d is more than %s's MTU %d: the guest's device cannot be made", n.MTU, l.name, info.MTU)
			rr.Advice = fmt.Sprintf("raise %s's MTU (ip link set %s mtu %d) or lower mtu of network %s", l.name, l.name, n.MTU, n.Name)
		default:
			rr.Status, rr.Detail = OK, fmt.Sprintf("mtu %d fits %s's MTU %d", n.MTU, l.name, info.MTU)
		}
		r.rep.add(rr)
	}

	if l.kind == policy.KindMacvtap || l.kind == policy.KindIpvtap {
		r.bondCheck(l, res)
		r.promiscCheck(l, res)
		r.budgetCheck(l, res)
	}
	return r.hairpinCheck(ctx, l, info)
}

type resFunc func(check string, st Status, detail, advice string)

// parentKindOK checks that the lower device suits the networks' kind: a
// bridge network needs a Linux bridge; a macvtap/ipvtap parent must not be
// a bridge port (the bridge owns its receive path).
func (r *run) parentKindOK(l *lower, info netdev.ParentInfo, res resFunc) bool {
	switch l.kind {
	case policy.KindBridge:
		if info.Kind != "bridge" {
			res(CheckParent, Fail, fmt.Sprintf("%s is a %s, not a Linux bridge", l.name, info.Kind),
				"create the bridge (ip link add "+l.name+" type bridge) or use kind = \"macvtap\" on this device")
			return false
		}
		res(CheckParent, OK, fmt.Sprintf("bridge %s exists", l.name), "")
	case policy.KindMacvtap, policy.KindIpvtap:
		if info.Master != 0 {
			master := fmt.Sprintf("index %d", info.Master)
			if m, err := r.env.Net.Handle().LinkByIndex(info.Master); err == nil {
				master = m.Attrs().Name
			}
			res(CheckParent, Fail, fmt.Sprintf("%s is a port of %s: the master owns its receive path, so %s devices on it get no traffic or cannot be made", l.name, master, l.kind),
				fmt.Sprintf("use %s as the parent, or kind = \"bridge\" with bridge = %q", master, master))
			return false
		}
		res(CheckParent, OK, fmt.Sprintf("%s exists (%s, index %d)", l.name, info.Kind, info.Index), "")
	default:
		res(CheckParent, OK, fmt.Sprintf("%s exists (%s, index %d)", l.name, info.Kind, info.Index), "")
	}
	return true
}

func (r *run) promiscCheck(l *lower, res resFunc) {
	link, err := r.link(l.name)
	if err != nil {
		res(CheckPromisc, Skip, fmt.Sprintf("cannot read %s: %v", l.name, err), "")
		return
	}
	if p := link.Attrs().Promisc; p > 0 {
		res(CheckPromisc, Warn, fmt.Sprintf("%s is in promiscuous mode (promiscuity %d): every frame on its wire reaches the host, and the NIC's MAC filter no longer protects it", l.name, p),
			"find who set it (a bridge, a capture, a macvtap in passthrough mode, or a full unicast filter) and undo that, or move guests to kind = \"ipvtap\"")
		return
	}
	res(CheckPromisc, OK, l.name+" is not promiscuous", "")
}

// budgetCheck compares the unicast MACs that the parent's NIC must filter
// for guests with the smallest max_macs of the macvtap networks on it.
//
// Counted, each distinct MAC once: every macvlan/macvtap device on the
// parent now (tagged or not, but not probe devices), every macvtap
// interface record of the state store on the parent, and every direct
// interface of a defined domain whose source is the parent (a stopped
// guest takes its slot again when it starts; one without a MAC counts
// once). The parent's own address is not counted. ipvtap guests share the
// parent's MAC and use none.
func (r *run) budgetCheck(l *lower, res resFunc) {
	limit := 0
	var macvtaps []string
	passthru := true
	for _, n := range l.nets {
		if n.Kind != policy.KindMacvtap {
			continue
		}
		macvtaps = append(macvtaps, n.Name)
		if n.Mode != "passthrough" {
			passthru = false
		}
		if limit == 0 || n.MaxMACs < limit {
			limit = n.MaxMACs
		}
	}
	if len(macvtaps) == 0 {
		res(CheckMACBudget, OK, fmt.Sprintf("only ipvtap on %s: guests share its MAC, no filter slot used", l.name), "")
		return
	}
	if passthru {
		res(CheckMACBudget, OK, fmt.Sprintf("macvtap passthrough on %s: one guest owns the device and its MAC", l.name), "")
		return
	}
	macs := map[string]bool{}
	devices, records, defined := 0, 0, 0
	kids, err := r.env.Net.MacvlanChildren(l.name)
	if err != nil {
		res(CheckMACBudget, Skip, fmt.Sprintf("cannot list devices on %s: %v", l.name, err), "")
		return
	}
	for _, k := range kids {
		if k.Tag.Purpose() == netdev.ProbePurpose {
			continue
		}
		m := strings.ToLower(k.MAC.String())
		if !macs[m] {
			macs[m] = true
			devices++
		}
	}
	for _, d := range r.records {
		for _, ifc := range d.Interfaces {
			if ifc.Parent != l.name || (ifc.Kind != "" && ifc.Kind != policy.KindMacvtap) {
				continue
			}
			m := strings.ToLower(ifc.MAC)
			if !macs[m] {
				macs[m] = true
				records++
			}
		}
	}
	for _, d := range r.domains {
		for i, di := range d.direct {
			if di.dev != l.name {
				continue
			}
			m := di.mac
			if m == "" {
				m = fmt.Sprintf("%s#%d", d.source, i)
			}
			if !macs[m] {
				macs[m] = true
				defined++
			}
		}
	}
	used := len(macs)
	detail := fmt.Sprintf("%d of %d unicast MACs on %s (%d on devices now, %d more in virtap's records, %d more for defined guests not running)",
		used, limit, l.name, devices, records, defined)
	advice := fmt.Sprintf("beyond its filter the NIC turns promiscuous and every frame on the wire reaches the host: use kind = \"ipvtap\" (guests share %s's MAC) or kind = \"passthrough\" (SR-IOV VFs), or raise max_macs if the NIC holds more", l.name)
	switch {
	case used > limit:
		res(CheckMACBudget, Fail, detail+": over max_macs", advice)
	case used == limit:
		res(CheckMACBudget, Warn, detail+": at max_macs, one more guest goes over", advice)
	default:
		res(CheckMACBudget, OK, detail, "")
	}
}

// vepaNets are the networks on l whose guests rely on the switch's
// reflective relay: macvtap mode vepa and ipvtap flag vepa.
func vepaNets(l *lower) []string {
	var out []string
	for _, n := range l.nets {
		if (n.Kind == policy.KindMacvtap && n.Mode == "vepa") || (n.Kind == policy.KindIpvtap && n.Flag == "vepa") {
			out = append(out, n.Name)
		}
	}
	return out
}

func (r *run) hairpinCheck(ctx context.Context, l *lower, info netdev.ParentInfo) error {
	vn := vepaNets(l)
	if len(vn) == 0 {
		return nil
	}
	res := func(st Status, detail, advice string) {
		r.rep.add(Result{Check: CheckHairpin, Network: strings.Join(vn, ","), Device: l.name, Status: st, Detail: detail, Advice: advice})
	}
	switch {
	case !r.env.Probe:
		res(Skip, "reflective-relay probe turned off (--no-probe)", "")
		return nil
	case !info.Up || !info.Carrier:
		res(Skip, "the probe needs "+l.name+" up with carrier", "")
		return nil
	}
	timeout := r.env.ProbeTimeout
	if timeout <= 0 {
		timeout = time.Second
	}
	var pr vepa.ProbeResult
	var err error
	if r.env.Prober != nil {
		pr, err = r.env.Prober(ctx, l.name)
	} else {
		pr, err = vepa.Probe(ctx, r.log, r.env.Net.Handle(), l.name, timeout)
	}
	if err != nil {
		if errors.Is(err, vepa.ErrInterrupted) || ctx.Err() != nil {
			res(Skip, "probe interrupted", "")
			return err
		}
		res(Warn, fmt.Sprintf("cannot probe the switch behind %s: %v", l.name, err), "run virtap doctor as root on a host whose kernel has macvtap")
		return nil
	}
	r.reflects[l.name] = pr.Reflects
	if pr.Reflects {
		res(OK, pr.Detail, "")
		return nil
	}
	res(Fail, pr.Detail, "turn on reflective relay (802.1Qbg hairpin) on the switch port behind "+l.name+
		" (on a Linux bridge: bridge link set dev PORT hairpin on), or use mode = \"bridge\"")
	return nil
}
