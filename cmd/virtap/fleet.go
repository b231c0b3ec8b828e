package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/virtap/virtap/host"
	"github.com/virtap/virtap/internal/fleet"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/provision"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

// The fleet client is the lease store host.LeaseFor and gc work with.
var (
	_ host.Leaser     = (*fleet.Client)(nil)
	_ host.FleetStore = (*fleet.Client)(nil)
)

// fleetTimeout bounds each call to etcd from the command line.
const fleetTimeout = 5 * time.Second

// openFleet connects to the policy's fleet store as host hostName; nil
// without [fleet].
func (g *globals) openFleet(pol *policy.Policy, hostName string, timeout time.Duration) (*fleet.Client, error) {
	if pol == nil || pol.Fleet == nil {
		return nil, nil
	}
	f := pol.Fleet
	return fleet.Open(fleet.Config{Endpoints: f.Etcd, CertFile: f.Cert, KeyFile: f.Key, CAFile: f.CA,
		Prefix: f.Prefix, Host: hostName, Timeout: timeout, Logger: g.log})
}

// fleetProvision makes provisioning register the domain's MACs and lease
// its pool addresses in the fleet store.
func fleetProvision(cl *fleet.Client, d *domain.Doc) (*provision.Fleet, error) {
	if d.UUID == "" {
		return nil, errors.New("in a fleet every domain needs a <uuid> (its leases and MACs belong to it on every host); add one, e.g. <uuid>$(uuidgen)</uuid>")
	}
	return &provision.Fleet{
		ClaimMAC: func(m string) (string, error) {
			err := cl.ClaimMAC(m, store.Holder{UUID: d.UUID, Name: d.Name})
			var taken *fleet.MACTakenError
			if errors.As(err, &taken) {
				return fmt.Sprintf("domain %s on host %s", taken.Owner.Holder, taken.Owner.Host), nil
			}
			return "", err
		},
		Lease: func(p provision.Plan) (netip.Addr, error) {
			pool, err := host.ParsePool(p.Network.Addresses, p.Network.Range, p.Network.Gateway)
			if err != nil {
				return netip.Addr{}, err
			}
			return host.LeaseFor(cl, p.Network.Name, pool, p.Address, store.Holder{UUID: d.UUID, MAC: p.MAC, Name: d.Name})
		},
	}, nil
}

// gcFleet lets go of the fleet leases of domains this host no longer has.
func (g *globals) gcFleet(pol *policy.Policy, r *host.Realiser, defined func(uuid.UUID) bool, dryRun bool) ([]host.GCAction, error) {
	h, _ := pol.ResolveHost("")
	cl, err := g.openFleet(pol, h, fleetTimeout)
	if err != nil || cl == nil {
		return nil, err
	}
	defer cl.Close()
	return r.GCFleet(cl, defined, dryRun)
}

// fleetView is the fleet store as status shows it.
type fleetView struct {
	Host      string                 `json:"host"`
	Prefix    string                 `json:"prefix"`
	Healthy   bool                   `json:"healthy"`
	Endpoints []fleet.EndpointStatus `json:"endpoints"`
	Leases    []fleet.Record         `json:"leases,omitempty"`
	Error     string                 `json:"error,omitempty"`
}

// fleetStatus asks the fleet store for its health and leases (2 s per call).
func (g *globals) fleetStatus(pol *policy.Policy) *fleetView {
	h, _ := pol.ResolveHost("")
	v := &fleetView{Host: h, Prefix: pol.Fleet.Prefix}
	cl, err := g.openFleet(pol, h, 2*time.Second)
	if err != nil {
		v.Error = err.Error()
		return v
	}
	defer cl.Close()
	v.Endpoints, v.Healthy = cl.Health()
	if !v.Healthy {
		return v
	}
	nws, err := cl.LeaseNetworks()
	for _, nw := range nws {
		rs, e := cl.Records(nw)
		v.Leases = append(v.Leases, rs...)
		err = errors.Join(err, e)
	}
	if err != nil {
		v.Error = err.Error()
	}
	return v
}

func printFleet(out io.Writer, v *fleetView) {
	fmt.Fprintf(out, "\nfleet store (host %s, prefix %s): ", v.Host, v.Prefix)
	if v.Healthy {
		fmt.Fprintln(out, "healthy")
	} else {
		fmt.Fprintln(out, "NOT AVAILABLE (new pool addresses cannot be leased; provisioned guests still start)")
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ETCD\tVERSION\tLEADER\tSTATUS")
	for _, e := range v.Endpoints {
		st := "ok"
		if e.Error != "" {
			st = e.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\n", e.Endpoint, e.Version, e.Leader, st)
	}
	tw.Flush()
	if len(v.Leases) > 0 {
		fmt.Fprintln(out)
		tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "FLEET NETWORK\tADDRESS\tHELD BY\tLEASED ON")
		for _, l := range v.Leases {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", l.Network, l.Addr, l.Holder, l.Host)
		}
		tw.Flush()
	}
	if v.Error != "" {
		fmt.Fprintf(out, "fleet: %s\n", v.Error)
	}
}

// provisionIn provisions in; with [fleet] (and not dry) it registers MACs
// and leases pool addresses in the fleet store first.
func (g *globals) provisionIn(pol *policy.Policy, in []byte, opts provision.Options, dry bool) (*provision.Result, error) {
	d, err := domain.Parse(in)
	if err != nil {
		return nil, err
	}
	if dry || pol.Fleet == nil {
		return provision.ProvisionDoc(d, opts)
	}
	cl, err := g.openFleet(pol, opts.Host, fleetTimeout)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	if opts.Fleet, err = fleetProvision(cl, d); err != nil {
		return nil, err
	}
	return provision.ProvisionDoc(d, opts)
}
