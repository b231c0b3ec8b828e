package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/virtap/virtap/host"
	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nft"
	"github.com/virtap/virtap/internal/paths"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/internal/virt"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

// guestView is one domain as status shows it.
type guestView struct {
	Name       string               `json:"name"`
	UUID       string               `json:"uuid"`
	State      string               `json:"state"`
	Interfaces []domain.IfaceRecord `json:"interfaces"`
}

type statusView struct {
	SchemaVersion int         `json:"schema_version"`
	Policy        string      `json:"policy"`
	PolicyError   string      `json:"policy_error,omitempty"` // the policy does not load: networks and pools unknown
	Guests        []guestView `json:"guests"`
	*host.Status
	Libvirt string `json:"libvirt,omitempty"` // why guests are missing, if they are
	// Unfiltered lists untrusted interfaces of running guests that have no
	// anti-spoofing filter (gc puts them back).
	Unfiltered []host.Unfiltered `json:"unfiltered"`
	Fleet      *fleetView        `json:"fleet,omitempty"` // [fleet] only
	// Drift lists guests whose record no longer matches the policy.
	Drift []driftView `json:"drift"`
	// Extras are the guests' extra addresses (policy and virtap addr).
	Extras []extraView `json:"extras"`
}

func statusCmd(g *globals) *cobra.Command {
	var of outputFlags
	var uri string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show guests, their interfaces, virtap's host devices, leases and reservations",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := of.resolve(cmd)
			if err != nil {
				return err
			}
			v := statusView{SchemaVersion: SchemaVersion, Policy: g.policyPath}
			pol, err := g.loadPolicy()
			switch {
			case errors.Is(err, fs.ErrNotExist):
				v.Policy = ""
			case err != nil:
				// Report it, and show what can be shown without it.
				v.PolicyError = err.Error()
			}
			var nets []string
			var pools []host.PoolSpec
			if pol != nil {
				h, _ := pol.ResolveHost("")
				nets = pol.NetworkNames(h)
				all, err := pol.Networks(h)
				if err != nil {
					return err
				}
				for _, n := range all {
					if n.Kind == policy.KindPassthrough {
						pools = append(pools, host.PoolSpec{Name: n.Name, PF: n.PF, Devices: n.Devices})
					}
				}
			}
			if err := g.collectStatus(&v, pol, nets, pools, uri); err != nil {
				return err
			}
			if format != formatTable {
				if err := writeData(cmd.OutOrStdout(), format, v); err != nil {
					return err
				}
			} else {
				printStatus(cmd, &v, pol)
			}
			if v.PolicyError != "" {
				return fmt.Errorf("policy does not load; networks and pools are unknown:\n%s", v.PolicyError)
			}
			return nil
		},
	}
	of.register(cmd)
	connectFlag(cmd, &uri)
	return cmd
}

// collectStatus fills v from the state, the host, the fleet and libvirt
// (read-only).
func (g *globals) collectStatus(v *statusView, pol *policy.Policy, nets []string, pools []host.PoolSpec, uri string) error {
	// Read the state and let go of its lock before asking libvirt:
	// a guest being destroyed holds libvirt while its release hook
	// waits for this lock, so holding both would stall the destroy.
	st, err := store.Open(g.state(pol), store.Options{ReadOnly: true, Logger: g.log})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	s, err := host.Collect(st, netdev.New(g.log, nil), nets, pools, paths.Sys)
	var extras []store.Extra
	if st != nil {
		extras, _ = st.AllExtras()
		st.Close()
	}
	if err != nil {
		return err
	}
	v.Status = s
	if pol != nil && pol.Fleet != nil {
		v.Fleet = g.fleetStatus(pol)
	}
	c, err := virt.ConnectReadOnly(uri)
	if err != nil {
		v.Libvirt = err.Error()
		return nil
	}
	doms, err := c.Domains()
	v.Drift = guestDrift(c, pol, doms, g.log)
	c.Close()
	if err != nil {
		v.Libvirt = err.Error()
	}
	var live []*host.Guest
	for _, d := range doms {
		if g, err := liveGuest(d.XML, pol); d.Running && err == nil && g != nil {
			live = append(live, g)
		}
		rec, _, err := domain.ParseRecord([]byte(d.XML))
		if err != nil || rec == nil {
			continue
		}
		state := "shut off"
		if d.Running {
			state = "running"
		}
		v.Guests = append(v.Guests, guestView{Name: d.Name, UUID: d.UUID.String(), State: state, Interfaces: rec.Interfaces})
	}
	v.Extras = extraRows(doms, extras)
	if v.Unfiltered, err = host.MissingFilters(nft.New(g.log), live); err != nil {
		v.Libvirt = strings.TrimSpace(v.Libvirt + " " + err.Error())
	}
	return nil
}

func printStatus(cmd *cobra.Command, v *statusView, _ *policy.Policy) {
	out := cmd.OutOrStdout()
	names := map[string]string{} // domain uuid -> guest name
	for _, gv := range v.Guests {
		names[gv.UUID] = gv.Name
	}
	printGuests(out, v)
	fmt.Fprintln(out)
	printDevices(out, v, names)
	if len(v.Pools) > 0 {
		fmt.Fprintln(out)
		printPools(out, v)
	}
	if len(v.Reservations) > 0 {
		fmt.Fprintln(out)
		printReservations(out, v)
	}
	if len(v.Leases) > 0 {
		fmt.Fprintln(out)
		table(out, "NETWORK\tADDRESS\tHELD BY", func(tw io.Writer) {
			for _, l := range v.Leases {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", l.Network, l.Addr, l.Holder)
			}
		})
	}
	if len(v.Filters) > 0 {
		fmt.Fprintln(out)
		printFilters(out, v, names)
	}
	if len(v.Extras) > 0 {
		fmt.Fprintln(out)
		printExtras(out, v.Extras)
	}
	for _, u := range v.Unfiltered {
		fmt.Fprintf(out, "\nWARNING: %s\n", u)
	}
	printDrift(out, v.Drift)
	if v.Fleet != nil {
		printFleet(out, v.Fleet)
	}
	if v.Libvirt != "" {
		fmt.Fprintf(out, "\nguests unknown: %s\n", strings.TrimSpace(v.Libvirt))
	}
}

// table prints one aligned table: its header, then what rows writes.
func table(out io.Writer, header string, rows func(tw io.Writer)) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	rows(tw)
	tw.Flush()
}

func printGuests(out io.Writer, v *statusView) {
	held := map[string]string{} // domain uuid + mac -> device
	for _, d := range v.Domains {
		for _, i := range d.Interfaces {
			held[d.UUID+i.MAC] = i.Device + "@" + i.Parent
		}
	}
	table(out, "GUEST\tSTATE\tMAC\tNETWORK\tKIND\tMODE\tLOWER\tHOST DEVICE", func(tw io.Writer) {
		if len(v.Guests) == 0 {
			fmt.Fprintln(tw, "(none)\t\t\t\t\t\t\t")
		}
		for _, gv := range v.Guests {
			for _, i := range gv.Interfaces {
				lower := i.Parent
				switch i.Kind {
				case policy.KindBridge:
					lower = i.Bridge
				case policy.KindPassthrough:
					lower = "pool " + i.Network
				}
				dev := "-"
				if i.Device != "" {
					dev = i.Device
					if h, ok := held[gv.UUID+i.MAC]; ok {
						dev = h
					}
				}
				mode := i.Mode
				if i.Flag != "" {
					mode += "/" + i.Flag
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", gv.Name, gv.State, i.MAC, i.Network, i.Kind, mode, lower, dev)
			}
		}
	})
}

func printDevices(out io.Writer, v *statusView, names map[string]string) {
	table(out, "DEVICE\tKIND\tPARENT\tMODE\tUP\tOWNER", func(tw io.Writer) {
		if len(v.Devices) == 0 {
			fmt.Fprintln(tw, "(none)\t\t\t\t\t")
		}
		for _, d := range v.Devices {
			owner := d.Owner
			if u, err := uuid.Parse(owner); err == nil {
				owner = names[u.String()]
				if owner == "" {
					owner = u.String() + " (unknown guest)"
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\n", d.Name, d.Kind, d.Parent, d.Mode, d.Up, owner)
		}
	})
}

func printPools(out io.Writer, v *statusView) {
	dash := func(ss []string) string {
		if len(ss) == 0 {
			return "-"
		}
		return strings.Join(ss, " ")
	}
	table(out, "POOL\tSIZE\tFREE\tHELD\tBUSY OUTSIDE VIRTAP\tMISSING", func(tw io.Writer) {
		for _, p := range v.Pools {
			if p.Error != "" {
				fmt.Fprintf(tw, "%s\t?\t?\t?\t%s\t\n", p.Name, p.Error)
				continue
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\n", p.Name, p.Size, p.Free, len(p.Holders), dash(p.Busy), dash(p.Missing))
		}
	})
}

func printReservations(out io.Writer, v *statusView) {
	rs := append([]store.Reservation(nil), v.Reservations...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].Pool+rs[i].Device < rs[j].Pool+rs[j].Device })
	table(out, "POOL\tDEVICE\tHELD BY\tSINCE", func(tw io.Writer) {
		for _, r := range rs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Pool, r.Device, r.Holder, r.Since.Format("2006-01-02 15:04:05"))
		}
	})
}

func printFilters(out io.Writer, v *statusView, names map[string]string) {
	table(out, "ANTI-SPOOFING\tMAC\tDEVICE\tSEEN\tLEARNED\tDROPPED", func(tw io.Writer) {
		for _, f := range v.Filters {
			owner := names[f.Domain]
			if owner == "" {
				owner = f.Domain
			}
			var drops []string
			for reason, n := range f.Dropped {
				if n > 0 {
					drops = append(drops, fmt.Sprintf("%s=%d", reason, n))
				}
			}
			sort.Strings(drops)
			d := strings.Join(drops, " ")
			if d == "" {
				d = "0"
			}
			learned := strings.Join(f.LearnedAddresses, ",")
			if learned == "" {
				learned = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", owner, f.MAC, f.Device, f.Seen, learned, d)
		}
	})
}
