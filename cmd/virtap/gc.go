package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/virtap/virtap/host"
	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/internal/virt"
	"github.com/virtap/virtap/provision"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

func gcCmd(g *globals) *cobra.Command {
	var dryRun, noLibvirt bool
	var of outputFlags
	var uri string
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Remove what virtap owns and nothing uses any more",
		Long: `Remove host devices tagged as virtap's whose guest is not running, the records,
pool reservations and anti-spoofing tables of such guests, address leases of
guests that are no longer defined, unused host-access shims and leftover probe
devices. Put back the anti-spoofing filter of every untrusted interface of a
running guest that lost it (nft flush ruleset, a firewall reload). A device without virtap's tag is never touched, whatever its name.
gc asks libvirt which guests run; run it at boot (virtap-gc.service), because
release never runs after a host crash. Without libvirt (--no-libvirt) only
what a previous boot left is removed (records carry the boot id). A damaged
state database is moved aside and rebuilt from the device tags.`,
		Example: "  virtap gc --dry-run\n  virtap gc --no-libvirt   # at boot, before libvirtd starts: nothing runs",
		Args:    args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := of.resolve(cmd)
			if err != nil {
				return err
			}
			pol, err := g.stateDirPolicy()
			if err != nil {
				return err
			}
			nd := netdev.New(g.log, nil)
			sopts := store.Options{Logger: g.log}
			query := func() (host.Snapshot, error) {
				if noLibvirt {
					st, err := store.Open(g.state(pol), sopts)
					if err != nil {
						return host.Snapshot{}, err
					}
					defer st.Close()
					return host.ThisBoot(st, nd, g.log)
				}
				return libvirtSnapshot(uri, pol)
			}
			run := host.GCRun{Log: g.log, Net: nd, StateDir: g.state(pol), Store: sopts, Query: query, DryRun: dryRun}
			if pol != nil && pol.Fleet != nil {
				run.After = func(r *host.Realiser, snap host.Snapshot) ([]host.GCAction, error) {
					return g.gcFleet(pol, r, snap.Defined, dryRun)
				}
			}
			acts, gcErr := run.Run()
			if errors.Is(gcErr, store.ErrCorrupt) && !dryRun {
				acts, gcErr = rebuildState(g, run, gcErr)
			}
			out := cmd.OutOrStdout()
			if format != formatTable {
				if err := writeData(out, format, map[string]any{"schema_version": SchemaVersion, "dry_run": dryRun, "actions": acts}); err != nil {
					return err
				}
				return gcErr
			}
			verb := "removed"
			if dryRun {
				verb = "would remove"
			}
			if len(acts) == 0 {
				fmt.Fprintln(out, "nothing to remove")
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			for _, a := range acts {
				v := verb
				if strings.HasPrefix(a.Reason, "restored") {
					v = map[bool]string{true: "would restore", false: "restored"}[dryRun]
				}
				fmt.Fprintf(tw, "%s %s\t%s\t(%s)\n", v, a.What, a.Name, a.Reason)
			}
			tw.Flush()
			return gcErr
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be removed; remove nothing")
	cmd.Flags().BoolVar(&noLibvirt, "no-libvirt", false, "do not ask libvirt: remove only what a previous boot left (at boot, before libvirtd starts)")
	of.register(cmd)
	connectFlag(cmd, &uri)
	return cmd
}

// libvirtSnapshot asks libvirt which domains run and which are defined.
func libvirtSnapshot(uri string, pol *policy.Policy) (host.Snapshot, error) {
	c, err := virt.ConnectReadOnly(uri)
	if err != nil {
		return host.Snapshot{}, fmt.Errorf("%w; if no guest can be running (at boot), use --no-libvirt", err)
	}
	doms, err := c.Domains()
	c.Close()
	if err != nil {
		return host.Snapshot{}, err
	}
	known, running := map[uuid.UUID]bool{}, map[uuid.UUID]bool{}
	var live []*host.Guest // running guests with their live XML
	for _, d := range doms {
		known[d.UUID] = true
		running[d.UUID] = d.Running
		if d.Running {
			if g, err := liveGuest(d.XML, pol); err == nil && g != nil {
				live = append(live, g)
			}
		}
	}
	return host.Snapshot{Running: func(u uuid.UUID) bool { return running[u] }, Defined: func(u uuid.UUID) bool { return known[u] }, Live: live}, nil
}

// liveGuest reads a running domain's live XML; nil when virtap does not
// manage it. As in the hook, the record's values come from the policy
// (provision.FromPolicy); without one that backs it, every interface
// counts as untrusted (its filter is restored).
func liveGuest(xml string, pol *policy.Policy) (*host.Guest, error) {
	doc, err := domain.Parse([]byte(xml))
	if err != nil || doc.Record == nil {
		return nil, err
	}
	var rec *domain.Record
	if pol != nil {
		h, _ := pol.ResolveHost("")
		rec, err = provision.FromPolicy(doc, pol, h)
	}
	if pol != nil && err == nil {
		doc.Record = rec
	} else {
		for i := range doc.Record.Interfaces {
			doc.Record.Interfaces[i].Trust = policy.TrustUntrusted
		}
	}
	return host.NewGuest(doc)
}

// rebuildState recovers from a damaged state database: it moves the file
// aside (kept for inspection), and runs gc again on a new one, rebuilt
// from the tags on virtap's devices (host.Rebuild).
func rebuildState(g *globals, run host.GCRun, cause error) ([]host.GCAction, error) {
	moved, err := store.MoveAside(run.StateDir, 0)
	if err != nil {
		return nil, errors.Join(cause, err)
	}
	g.log.Warn("state database was damaged; moved aside and rebuilt from device tags", "moved_to", moved, "error", cause)
	st, err := store.Open(run.StateDir, run.Store)
	if err != nil {
		return nil, err
	}
	n, err := host.New(g.log, run.Net, st, run.Roots).Rebuild()
	st.Close()
	if err != nil {
		return nil, err
	}
	acts, err := run.Run()
	return append([]host.GCAction{{What: "state", Name: moved, Reason: fmt.Sprintf("damaged; moved aside, %d interface records rebuilt from device tags", n)}}, acts...), err
}
