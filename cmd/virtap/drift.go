package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/virt"
	"github.com/virtap/virtap/provision"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

// driftView is one guest whose virtap record no longer matches the policy.
type driftView struct {
	Guest   string `json:"guest"`
	UUID    string `json:"uuid"`
	Running bool   `json:"running"`
	// Definition: what re-provisioning the persistent definition changes.
	Definition []provision.IfaceChange `json:"definition,omitempty"`
	// Live: what the running guest has that the policy now sets otherwise.
	Live  []provision.IfaceChange `json:"live,omitempty"`
	Error string                  `json:"error,omitempty"`
	Fix   string                  `json:"fix"`
}

// guestDrift compares the defined (and running) guests that carry virtap's
// record with the current policy, as virtap define --domain would.
func guestDrift(c *virt.Conn, pol *policy.Policy, doms []virt.Domain, log hclog.Logger) []driftView {
	out := []driftView{}
	if pol == nil {
		return out
	}
	h, local := pol.ResolveHost("")
	opts := provision.Options{Policy: pol, Host: h, Local: local, ParentMAC: netdev.LinkMAC}
	for _, dm := range doms {
		if !strings.Contains(dm.XML, domain.Namespace) {
			continue
		}
		d, err := c.Lookup(dm.Name, false)
		if err != nil {
			log.Warn("drift: cannot read domain", "domain", dm.Name, "error", err)
			continue
		}
		v := driftView{Guest: d.Name, UUID: d.UUID, Running: d.Running}
		var errs []string
		for _, x := range []struct {
			xml string
			to  *[]provision.IfaceChange
		}{{d.Config, &v.Definition}, {d.Live, &v.Live}} {
			if x.xml == "" {
				continue
			}
			doc, err := domain.Parse([]byte(x.xml))
			if err == nil {
				*x.to, err = provision.Drift(doc, opts)
			}
			if err != nil {
				errs = append(errs, err.Error())
			}
		}
		v.Error = strings.Join(errs, "; ")
		switch {
		case len(v.Definition) > 0 || v.Error != "":
			v.Fix = "virtap define --domain " + d.Name
			if d.Running {
				v.Fix += ", then restart the guest"
			}
		case len(v.Live) > 0:
			v.Fix = fmt.Sprintf("restart the guest (virsh shutdown %s; virsh start %s): its definition matches the policy, the running guest does not", d.Name, d.Name)
		default:
			continue
		}
		out = append(out, v)
	}
	return out
}

func printDrift(out io.Writer, ds []driftView) {
	for _, d := range ds {
		changes := d.Definition
		if len(changes) == 0 {
			changes = d.Live
		}
		var parts []string
		for _, c := range changes {
			parts = append(parts, c.String())
		}
		if d.Error != "" {
			parts = append(parts, d.Error)
		}
		fmt.Fprintf(out, "\nDRIFT: guest %s no longer matches the policy: %s\n  run: %s\n", d.Guest, strings.Join(parts, "; "), d.Fix)
	}
}
