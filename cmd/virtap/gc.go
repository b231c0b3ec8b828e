package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/virtap/virtap/host"
	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/paths"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/internal/virt"
	"github.com/virtap/virtap/provision/domain"
)

func gcCmd(g *globals) *cobra.Command {
	var dryRun, noLibvirt, asJSON bool
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
release never runs after a host crash.`,
		Example: "  virtap gc --dry-run\n  virtap gc --no-libvirt   # at boot, before libvirtd starts: nothing runs",
		Args:    args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			running := map[uuid.UUID]string{}
			var live []*host.Guest           // running guests with their live XML
			var defined func(uuid.UUID) bool // nil: unknown, keep leases
			if !noLibvirt {
				c, err := virt.Connect(uri)
				if err != nil {
					return fmt.Errorf("%w; if no guest can be running (at boot), use --no-libvirt", err)
				}
				doms, err := c.Domains()
				c.Close()
				if err != nil {
					return err
				}
				known := map[uuid.UUID]bool{}
				for _, d := range doms {
					known[d.UUID] = true
					if d.Running {
						running[d.UUID] = d.Name
						if g, err := liveGuest(d.XML); err == nil && g != nil {
							live = append(live, g)
						}
					}
				}
				defined = func(u uuid.UUID) bool { return known[u] }
			}
			pol, err := g.stateDirPolicy()
			if err != nil {
				return err
			}
			st, err := store.Open(g.state(pol), store.Options{Logger: g.log})
			if err != nil {
				return err
			}
			defer st.Close()
			r := host.New(g.log, netdev.New(g.log, nil), st, paths.Roots{})
			acts, gcErr := r.GC(func(u uuid.UUID) bool { _, ok := running[u]; return ok }, defined, dryRun)
			restored, err := r.RestoreFilters(live, dryRun)
			acts, gcErr = append(acts, restored...), errors.Join(gcErr, err)
			if pol != nil && pol.Fleet != nil {
				fa, err := g.gcFleet(pol, r, defined, dryRun)
				acts, gcErr = append(acts, fa...), errors.Join(gcErr, err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(map[string]any{"dry_run": dryRun, "actions": acts}); err != nil {
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
	cmd.Flags().BoolVar(&noLibvirt, "no-libvirt", false, "assume no guest is running (at boot, before libvirtd starts)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringVarP(&uri, "connect", "c", virt.DefaultURI, "libvirt connection URI")
	return cmd
}

// liveGuest reads a running domain's live XML; nil when virtap does not
// manage it.
func liveGuest(xml string) (*host.Guest, error) {
	doc, err := domain.Parse([]byte(xml))
	if err != nil || doc.Record == nil {
		return nil, err
	}
	return host.NewGuest(doc)
}
