package host

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/virtap/virtap/internal/nft"
)

// Filters that come back: `nft flush ruleset` (what a firewall reload
// does) removes virtap's tables with everything else, and nothing in the
// kernel puts them back. The reconnect hook (libvirtd restart) and
// `virtap gc` (and so the boot unit) re-apply every running untrusted
// guest's filter; status and doctor name the interfaces that have none.

// Unfiltered is an untrusted interface of a running guest without a filter.
type Unfiltered struct {
	Domain string `json:"domain"`
	UUID   string `json:"uuid"`
	MAC    string `json:"mac"`
	Device string `json:"device,omitempty"`
}

func (u Unfiltered) String() string {
	dev := u.Device
	if dev == "" {
		dev = "its device"
	}
	return fmt.Sprintf("guest %s (%s) interface %s on %s is untrusted but has no anti-spoofing filter; run 'virtap gc' to restore it", u.Domain, u.UUID, u.MAC, dev)
}

// MissingFilters lists the untrusted interfaces of running guests (from
// their live documents) that have no filter here.
func MissingFilters(fm *nft.Manager, running []*Guest) ([]Unfiltered, error) {
	var out []Unfiltered
	var errs []error
	for _, g := range running {
		if g.Doc == nil || g.Doc.Record == nil {
			continue
		}
		have, err := fm.Installed(g.UUID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, ir := range g.Doc.Record.Interfaces {
			if !Untrusted(ir) {
				continue
			}
			hw, err := net.ParseMAC(ir.MAC)
			if err != nil {
				continue
			}
			if _, ok := have[strings.ToLower(hw.String())]; ok {
				continue
			}
			dev := ir.Device
			if ir.Kind == "macvtap" {
				dev = liveTarget(g, ir.MAC)
			}
			out = append(out, Unfiltered{Domain: g.Name, UUID: g.UUID.String(), MAC: ir.MAC, Device: dev})
		}
	}
	return out, errors.Join(errs...)
}

// RestoreFilters puts back the filters of running guests that lost them
// (gc). It reports one action per interface it restored (or would, in a
// dry run).
func (r *Realiser) RestoreFilters(running []*Guest, dryRun bool) ([]GCAction, error) {
	missing, err := MissingFilters(r.filters(), running)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	var acts []GCAction
	done := map[string]bool{}
	for _, m := range missing {
		acts = append(acts, GCAction{What: "filter", Name: m.MAC, Domain: m.UUID, Reason: "restored: an untrusted interface of a running guest had no anti-spoofing filter"})
		if dryRun || done[m.UUID] {
			continue
		}
		done[m.UUID] = true
		for _, g := range running {
			if g.UUID.String() == m.UUID {
				if err := r.Started(g); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return acts, errors.Join(errs...)
}
