package main

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/virtap/virtap/host"
	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/paths"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/internal/virt"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

// virtap addr: extra addresses for containers nested in guests (issue 16).

func addrCmd(g *globals) *cobra.Command {
	var uri string
	cmd := &cobra.Command{
		Use:   "addr",
		Short: "Give a guest interface extra addresses at run time (containers inside guests)",
		Long: `A guest that runs containers on ipvlan over its NIC (one MAC, many IPs) needs
the host to accept the containers' addresses: on untrusted networks the anti-spoofing
filter allows them (source, ARP sender, ND target), and on ipvtap they are registered
on the guest's device so that ipvlan delivers them. Changes take effect at once on a
running guest, are kept in virtap's state by domain UUID and in the domain's metadata
(so they survive restarts and follow migration), and are freed by gc when the domain
is undefined.`,
	}
	cmd.PersistentFlags().StringVarP(&uri, "connect", "c", virt.DefaultURI,
		"libvirt URI (default: LIBVIRT_DEFAULT_URI, else uri_default in libvirt.conf, else libvirt's choice: qemu:///system for root)")
	cmd.AddCommand(addrAddCmd(g, &uri), addrDelCmd(g, &uri), addrListCmd(g, &uri))
	return cmd
}

func addrAddCmd(g *globals, uri *string) *cobra.Command {
	return &cobra.Command{
		Use:   "add DOMAIN NETWORK ADDRESS[/PREFIX]",
		Short: "Let a guest interface use another address or small prefix",
		Args:  args(cobra.ExactArgs(3)),
		RunE: func(cmd *cobra.Command, a []string) error {
			return g.addrChange(cmd, *uri, a[0], a[1], a[2], true)
		},
	}
}

func addrDelCmd(g *globals, uri *string) *cobra.Command {
	return &cobra.Command{
		Use:   "del DOMAIN NETWORK ADDRESS[/PREFIX]",
		Short: "Take back an extra address added with addr add",
		Args:  args(cobra.ExactArgs(3)),
		RunE: func(cmd *cobra.Command, a []string) error {
			return g.addrChange(cmd, *uri, a[0], a[1], a[2], false)
		},
	}
}

// addrTarget is the interface a request is about.
type addrTarget struct {
	dom    virt.Domain
	config string // persistent XML, "" if transient
	rec    *domain.Record
	ir     domain.IfaceRecord
	nw     *policy.Network
	p      netip.Prefix
	guest  *host.Guest // from the live (or persistent) XML, record rebuilt from the policy
}

// resolve checks a request before anything changes: the network in the
// policy, the address, the domain and its interface on that network.
func (g *globals) resolve(c *virt.Conn, dom, network, addr string) (*addrTarget, error) {
	pol, err := g.loadPolicy()
	if err != nil {
		return nil, err
	}
	h, _ := pol.ResolveHost("")
	nw, ok, err := pol.Network(h, network)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, usageError{fmt.Errorf("network %q is not in %s; networks here: %s", network, pol.File, strings.Join(pol.NetworkNames(h), ", "))}
	}
	p, err := policy.ParseExtra(addr)
	if err != nil {
		return nil, usageError{err}
	}
	d, cfg, err := lookupDomain(c, dom)
	if err != nil {
		return nil, err
	}
	// The policy, not the record in the XML, says what the interface is
	// (kind, trust, device): the record rebuilt from it, as the hook does.
	guest, err := liveGuest(d.XML, pol)
	if err != nil || guest == nil {
		return nil, fmt.Errorf("domain %s: virtap's record: %v", d.Name, err)
	}
	rec := guest.Doc.Record
	t := &addrTarget{dom: d, config: cfg, rec: rec, nw: nw, p: p, guest: guest}
	var nets []string
	for _, ir := range recIfaces(rec) {
		nets = append(nets, ir.Network)
		if ir.Network == network {
			t.ir = ir
		}
	}
	if t.ir.MAC == "" {
		return nil, fmt.Errorf("domain %s has no interface virtap provisioned on network %q (its networks: %s); provision one with virtap provision or attach",
			d.Name, network, strings.Join(nets, ", "))
	}
	return t, nil
}

// lookupDomain finds a domain by name or UUID: its live XML when it runs,
// else its persistent one, and the persistent one ("" if transient).
func lookupDomain(c *virt.Conn, dom string) (virt.Domain, string, error) {
	def, err := c.Lookup(dom, false)
	if err != nil {
		if doms, lerr := c.Domains(); lerr == nil && !knownDomain(doms, dom) {
			return virt.Domain{}, "", fmt.Errorf("%q: no such domain (virsh list --all lists the domains)", dom)
		}
		return virt.Domain{}, "", err
	}
	u, err := uuid.Parse(def.UUID)
	if err != nil {
		return virt.Domain{}, "", fmt.Errorf("domain %s: uuid %q: %w", def.Name, def.UUID, err)
	}
	d := virt.Domain{Name: def.Name, UUID: u, Running: def.Running, XML: def.Config}
	if def.Running {
		d.XML = def.Live
	}
	return d, def.Config, nil
}

func recIfaces(rec *domain.Record) []domain.IfaceRecord {
	if rec == nil {
		return nil
	}
	return rec.Interfaces
}

func (g *globals) addrChange(cmd *cobra.Command, uri, dom, network, addr string, add bool) error {
	c, err := virt.Connect(uri)
	if err != nil {
		return err
	}
	defer c.Close()
	t, err := g.resolve(c, dom, network, addr)
	if err != nil {
		return err
	}
	var claims []host.Claim
	if add {
		if err := t.nw.CheckExtra(t.p); err != nil {
			return err
		}
		doms, err := c.Domains()
		if err != nil {
			return err
		}
		for _, d := range doms {
			rec, _, err := domain.ParseRecord([]byte(d.XML))
			if err == nil && d.UUID != t.dom.UUID {
				claims = append(claims, host.ClaimsOfRecord(d.Name, d.UUID, rec)...)
			}
		}
	}
	// The state lock is held only here, never while libvirt is asked:
	// a guest being destroyed holds libvirt while its release hook waits
	// for this lock.
	changed, err := g.addrState(t, claims, add)
	if err != nil || !changed {
		if err == nil {
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s on network %s: nothing to change\n", t.dom.Name, t.p, network)
		}
		return err
	}
	if err := g.addrMetadata(c, t, add); err != nil {
		if _, rerr := g.addrState(t, nil, !add); rerr != nil {
			err = errors.Join(err, fmt.Errorf("rollback: %w", rerr))
		}
		return err
	}
	verb, when := "added", "at once"
	if !add {
		verb = "deleted"
	}
	if !t.dom.Running {
		when = "at its next start"
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s %s for %s (%s) interface %s on network %s: effective %s\n", verb, t.p, t.dom.Name, t.dom.UUID, t.ir.MAC, network, when)
	return nil
}

// addrState changes the store and, for a running guest, the host: the
// filter's sets and the ipvtap device. It rolls back the store when the
// host change fails. changed is false when there was nothing to do.
func (g *globals) addrState(t *addrTarget, claims []host.Claim, add bool) (changed bool, err error) {
	pol, err := g.stateDirPolicy()
	if err != nil {
		return false, err
	}
	st, err := store.Open(g.state(pol), store.Options{Logger: g.log})
	if err != nil {
		return false, err
	}
	defer st.Close()
	u := t.dom.UUID.String()
	if add {
		if changed, err = g.addrAddState(st, t, claims); err != nil || !changed {
			return changed, err
		}
	} else {
		if changed, err = st.DelExtra(u, t.ir.MAC, t.p); err != nil {
			return false, err
		}
		if !changed {
			if slices.Contains(strings.Fields(t.ir.Extra), t.p.String()) || slices.Contains(strings.Fields(t.ir.Extra), t.p.Addr().String()) {
				return false, fmt.Errorf("%s is fixed in the policy for %s; remove it from [guests.%s] extra_addresses.%s", t.p, t.dom.Name, t.dom.Name, t.ir.Network)
			}
			return false, fmt.Errorf("%s is not an extra address of %s on network %q (virtap addr list %s shows them)", t.p, t.dom.Name, t.ir.Network, t.dom.Name)
		}
	}
	if !t.dom.Running {
		return true, nil
	}
	nd := netdev.New(g.log, nil)
	err = host.ChangeExtras(g.log, nd.Handle(), t.dom.UUID, t.ir, t.ir.Device, policy.Expand(t.p), add)
	if err == nil {
		if add && t.ir.Kind == policy.KindIpvtap {
			// On-link answers (l3 on_link networks) and a gratuitous ARP
			// or unsolicited NA for the guest's addresses, the new one too.
			if rerr := host.New(g.log, nd, st, paths.Roots{}).Reach(t.guest); rerr != nil {
				g.log.Warn("extra address not announced; neighbours learn it later", "error", rerr)
			}
		}
		return true, nil
	}
	// Put the store back as it was.
	if add {
		_, _ = st.DelExtra(u, t.ir.MAC, t.p)
	} else {
		_, _ = st.AddExtra(u, t.dom.Name, t.ir.MAC, t.ir.Network, t.p, 1<<30)
	}
	return false, fmt.Errorf("%s on %s: %w", t.p, t.dom.Name, err)
}

func (g *globals) addrAddState(st *store.Store, t *addrTarget, claims []host.Claim) (bool, error) {
	more, err := host.ClaimsOfStore(st, t.ir.Network)
	if err != nil {
		return false, err
	}
	u := t.dom.UUID.String()
	if err := host.Conflict(t.p, t.ir.Network, u, t.ir.MAC, append(claims, more...)); err != nil {
		return false, err
	}
	fixed, err := host.ParsePrefixes(t.ir.Extra)
	if err != nil {
		return false, err
	}
	budget := t.nw.MaxExtraAddresses - len(host.ExpandAll(fixed))
	ok, err := st.AddExtra(u, t.dom.Name, t.ir.MAC, t.ir.Network, t.p, budget)
	if capErr, isCap := errors.AsType[*store.ExtraCapError](err); isCap {
		return false, fmt.Errorf("%s on network %q: %d extra addresses (%d from the policy), %d more would exceed max_extra_addresses = %d; delete some (virtap addr del) or raise max_extra_addresses in the policy",
			t.dom.Name, t.ir.Network, capErr.Have+len(host.ExpandAll(fixed)), len(host.ExpandAll(fixed)), capErr.Add, t.nw.MaxExtraAddresses)
	}
	return ok, err
}

// addrMetadata writes the interface's run-time extras into virtap's record
// in the live and the persistent definition, so that they migrate with the
// guest (the migrate hook reads them from there).
func (g *globals) addrMetadata(c *virt.Conn, t *addrTarget, add bool) error {
	edit := func(xml string) (string, error) {
		rec, _, err := domain.ParseRecord([]byte(xml))
		if err != nil || rec == nil {
			return "", err
		}
		for i, ir := range rec.Interfaces {
			if !strings.EqualFold(ir.MAC, t.ir.MAC) {
				continue
			}
			list := slices.DeleteFunc(strings.Fields(ir.Added), func(s string) bool { return s == t.p.String() })
			if add {
				list = append(list, t.p.String())
			}
			rec.Interfaces[i].Added = strings.Join(list, " ")
		}
		return rec.Element(), nil
	}
	var live, cfg string
	var err error
	if t.dom.Running {
		if live, err = edit(t.dom.XML); err != nil {
			return err
		}
	}
	if t.config != "" {
		if cfg, err = edit(t.config); err != nil {
			return err
		}
	}
	if live != "" {
		if err := c.SetMetadata(t.dom.Name, live, domain.Prefix, domain.Namespace, true, false); err != nil {
			return fmt.Errorf("live metadata: %w", err)
		}
	}
	if cfg != "" {
		if err := c.SetMetadata(t.dom.Name, cfg, domain.Prefix, domain.Namespace, false, true); err != nil {
			return fmt.Errorf("persistent metadata: %w", err)
		}
	}
	return nil
}
