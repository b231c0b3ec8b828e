package doctor

import (
	"github.com/virtap/virtap/host"
	"github.com/virtap/virtap/internal/nft"
	"github.com/virtap/virtap/provision/domain"
)

// CheckFilters: every untrusted interface of a running guest has its
// anti-spoofing filter (a firewall reload's `nft flush ruleset` removes it).
const CheckFilters = "anti-spoofing"

// filtersCheck reads the running guests' live XML (Env.Running) and fails
// for each untrusted interface without a filter.
func (r *run) filtersCheck() {
	if r.env.Running == nil {
		r.rep.add(Result{Check: CheckFilters, Status: Skip, Detail: "no source of running domains (libvirt not reachable)"})
		return
	}
	doms, err := r.env.Running()
	if err != nil {
		r.rep.add(Result{Check: CheckFilters, Status: Skip, Detail: "running domains: " + err.Error()})
		return
	}
	var live []*host.Guest
	for _, d := range doms {
		doc, err := domain.Parse(d.XML)
		if err != nil || doc.Record == nil {
			continue
		}
		if g, err := host.NewGuest(doc); err == nil {
			live = append(live, g)
		}
	}
	missing, err := host.MissingFilters(nft.New(r.env.Log), live)
	if err != nil {
		r.rep.add(Result{Check: CheckFilters, Status: Fail, Detail: "reading nftables: " + err.Error()})
		return
	}
	for _, m := range missing {
		r.rep.add(Result{Check: CheckFilters, Device: m.Domain, Status: Fail, Detail: m.String(),
			Advice: "run 'virtap gc' (or restart libvirtd, or virtqemud on modular hosts: the reconnect hook re-applies filters); after a firewall reload, run it every time"})
	}
	if len(missing) == 0 {
		r.rep.add(Result{Check: CheckFilters, Status: OK, Detail: "every untrusted interface of the running guests has its filter"})
	}
}
