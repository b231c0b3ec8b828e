package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/virtap/virtap/internal/fleet"
	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/udiff"
	"github.com/virtap/virtap/internal/virt"
	"github.com/virtap/virtap/provision"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

// redefineFlags: virtap define --domain NAME | --all [--dry-run].
type redefineFlags struct {
	domains []string
	all     bool
	dryRun  bool
}

func (f *redefineFlags) bind(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&f.domains, "domain", nil, "re-provision this defined domain from its persistent XML against the current policy (repeatable)")
	cmd.Flags().BoolVar(&f.all, "all", false, "re-provision every defined domain that carries virtap's record")
	cmd.Flags().BoolVar(&f.dryRun, "dry-run", false, "with --domain or --all: print a diff of what would change; change nothing")
}

func (f *redefineFlags) active() bool { return len(f.domains) > 0 || f.all }

// check refuses mixed forms: a file with --domain/--all, or both.
func (f *redefineFlags) check(a []string) error {
	switch {
	case f.active() && len(a) > 0:
		return usageError{errors.New("give GUEST.xml or --domain/--all, not both")}
	case len(f.domains) > 0 && f.all:
		return usageError{errors.New("give --domain NAME or --all, not both")}
	case !f.active() && f.dryRun:
		return usageError{errors.New("--dry-run goes with --domain or --all (for a file: virtap provision --diff)")}
	case !f.active() && len(a) != 1:
		return usageError{fmt.Errorf("accepts 1 arg (GUEST.xml or -), received %d", len(a))}
	}
	return nil
}

// redefine re-provisions defined domains from their persistent XML
// against the current policy and defines the result (or, dry, prints the
// diff). It says which running guests need a restart.
func (g *globals) redefine(cmd *cobra.Command, f *redefineFlags, uri, hostName string) error {
	pol, err := g.loadPolicy()
	if err != nil {
		return err
	}
	c, err := virt.Connect(uri)
	if err != nil {
		return err
	}
	defer c.Close()
	names := f.domains
	if f.all {
		if names, err = c.DefinedNames(); err != nil {
			return err
		}
	}
	h, local := pol.ResolveHost(hostName)
	opts := provision.Options{Policy: pol, Host: h, Local: local, ParentMAC: netdev.LinkMAC}
	var cl *fleet.Client
	if !f.dryRun && pol.Fleet != nil {
		if cl, err = g.openFleet(pol, h, fleetTimeout); err != nil {
			return err
		}
		defer cl.Close()
	}
	out := cmd.OutOrStdout()
	var errs []error
	var restart []string
	changed, same := 0, 0
	for _, name := range names {
		d, err := c.Lookup(name, true)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rd := redefinition{g: g, c: c, out: out, dry: f.dryRun, opts: opts, fleet: cl, explicit: !f.all}
		did, err := rd.one(d)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("domain %s: %w", d.Name, err))
		case did:
			changed++
			if d.Running {
				restart = append(restart, d.Name)
			}
		case rd.managed:
			same++
		}
	}
	verb := "redefined"
	if f.dryRun {
		verb = "would redefine"
	}
	fmt.Fprintf(out, "%s %d domain(s); %d already match the policy\n", verb, changed, same)
	for _, n := range restart {
		what := "runs with its old interfaces until it is restarted"
		if f.dryRun {
			what = "would need a restart for the change to take effect"
		}
		fmt.Fprintf(out, "%s %s (virsh shutdown %s; virsh start %s)\n", n, what, n, n)
	}
	return errors.Join(errs...)
}

// redefinition is the work on one domain.
type redefinition struct {
	g        *globals
	c        *virt.Conn
	out      io.Writer
	dry      bool
	opts     provision.Options
	fleet    *fleet.Client
	explicit bool // named with --domain (not found by --all)
	managed  bool // carries virtap's record
}

// one re-provisions one domain; did says whether it changes (or would).
func (rd *redefinition) one(d virt.Definitions) (did bool, err error) {
	if !d.Persistent {
		return false, errors.New("transient: it has no persistent definition to re-provision")
	}
	doc, err := domain.Parse([]byte(d.Config))
	if err != nil {
		return false, err
	}
	rd.managed = doc.Record != nil
	if !rd.managed && !rd.explicit {
		return false, nil // --all: only what virtap provisioned
	}
	opts := rd.opts
	if rd.fleet != nil {
		if opts.Fleet, err = fleetProvision(rd.fleet, doc); err != nil {
			return false, err
		}
	}
	rp, err := provision.Reprovision(doc, opts)
	if err != nil {
		return false, err
	}
	if len(rp.Changes) == 0 {
		fmt.Fprintf(rd.out, "%s: matches the policy\n", d.Name)
		return false, nil
	}
	for _, ch := range rp.Changes {
		fmt.Fprintf(rd.out, "%s: %s\n", d.Name, ch)
	}
	if rd.dry {
		fmt.Fprint(rd.out, udiff.Diff(d.Name+" (defined)", d.Name+" (provisioned)", d.Config, string(rp.XML), 3))
		return true, nil
	}
	if err := ensureHostdevNetworks(rd.c, rd.out, rp.Plans); err != nil {
		return false, err
	}
	if _, _, err := rd.c.Define(string(rp.XML)); err != nil {
		return false, fmt.Errorf("define: %w", err)
	}
	return true, nil
}

// ensureHostdevNetworks defines libvirt's network of each hostdev pool
// the plans use.
func ensureHostdevNetworks(c *virt.Conn, out io.Writer, plans []provision.Plan) error {
	for _, p := range plans {
		if p.Backend != "network" || p.Network.Kind != policy.KindPassthrough {
			continue
		}
		xml, err := provision.HostdevNetworkXML(p.Network)
		if err != nil {
			return err
		}
		created, err := c.EnsureNetwork(provision.HostdevNetwork(p.Network.Name), xml)
		if err != nil {
			return err
		}
		if created {
			fmt.Fprintf(out, "defined libvirt network %s (hostdev pool of %s)\n", provision.HostdevNetwork(p.Network.Name), p.Network.PF)
		}
	}
	return nil
}
