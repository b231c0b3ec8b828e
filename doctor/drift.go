package doctor

import (
	"fmt"
	"strings"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/provision"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

// CheckDrift: defined domains whose virtap record no longer matches the
// policy (a network gone, its mode, trust, parent, ... changed).
const CheckDrift = "drift"

// driftCheck provisions each defined domain that carries virtap's record
// again, in memory, and warns about those the policy would change.
func (r *run) driftCheck(p *policy.Policy, host string) {
	if r.env.Domains == nil {
		r.rep.add(Result{Check: CheckDrift, Status: Skip, Detail: "no source of defined domains"})
		return
	}
	docs, err := r.env.Domains()
	if err != nil {
		r.rep.add(Result{Check: CheckDrift, Status: Skip, Detail: fmt.Sprintf("cannot read defined domains: %v", err)})
		return
	}
	_, local := p.ResolveHost(host)
	opts := provision.Options{Policy: p, Host: host, Local: local, DevRoot: r.env.devRoot(), ParentMAC: netdev.LinkMAC}
	managed, drifting := 0, 0
	for _, dx := range docs {
		d, err := domain.Parse(dx.XML)
		if err != nil || d.Record == nil {
			continue // unparsable ones are reported by the direct-mode check
		}
		managed++
		changes, err := provision.Drift(d, opts)
		if err != nil {
			drifting++
			r.rep.add(Result{Check: CheckDrift, Device: d.Name, Status: Warn, Detail: fmt.Sprintf("domain %s: cannot be provisioned again: %v", d.Name, err),
				Advice: "fix the policy or the domain, then virtap define --domain " + d.Name})
			continue
		}
		if len(changes) == 0 {
			continue
		}
		drifting++
		var parts []string
		var nets []string
		for _, c := range changes {
			parts = append(parts, c.String())
			nets = append(nets, c.Network)
		}
		r.rep.add(Result{Check: CheckDrift, Network: strings.Join(nets, ","), Device: d.Name, Status: Warn,
			Detail: fmt.Sprintf("domain %s no longer matches the policy: %s", d.Name, strings.Join(parts, "; ")),
			Advice: fmt.Sprintf("virtap define --domain %s (--dry-run shows the diff), then restart the guest if it runs", d.Name)})
	}
	if drifting == 0 {
		r.rep.add(Result{Check: CheckDrift, Status: OK, Detail: fmt.Sprintf("%d defined domain(s) with virtap's record match the policy", managed)})
	}
}
