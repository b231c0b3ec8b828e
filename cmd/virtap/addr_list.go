package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/internal/virt"
	"github.com/virtap/virtap/provision/domain"
)

// extraView is one extra address as addr list and status show it.
type extraView struct {
	Domain  string `json:"domain,omitempty"`
	UUID    string `json:"uuid"`
	MAC     string `json:"mac"`
	Network string `json:"network"`
	Address string `json:"address"`
	Source  string `json:"source"` // policy | added
}

func addrListCmd(g *globals, uri *string) *cobra.Command {
	var of outputFlags
	cmd := &cobra.Command{
		Use:   "list [DOMAIN]",
		Short: "List extra addresses: from the policy and added at run time",
		Args:  args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			format, err := of.resolve(cmd)
			if err != nil {
				return err
			}
			var doms []virt.Domain
			var lverr error
			if c, err := virt.ConnectReadOnly(*uri); err != nil {
				lverr = err
			} else {
				doms, lverr = c.Domains()
				c.Close()
			}
			pol, err := g.stateDirPolicy()
			if err != nil {
				return err
			}
			st, err := store.Open(g.state(pol), store.Options{ReadOnly: true, Logger: g.log})
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			var es []store.Extra
			if st != nil {
				es, err = st.AllExtras()
				st.Close()
				if err != nil {
					return err
				}
			}
			rows := extraRows(doms, es)
			if len(a) == 1 {
				rows = filterRows(rows, a[0])
				if len(rows) == 0 && !knownDomain(doms, a[0]) && lverr == nil {
					return fmt.Errorf("%q: no such domain (virsh list --all lists the domains)", a[0])
				}
			}
			if lverr != nil {
				g.log.Warn("libvirt not reachable; showing the state only", "error", lverr)
			}
			if format != formatTable {
				if rows == nil {
					rows = []extraView{}
				}
				return writeData(cmd.OutOrStdout(), format, rows)
			}
			printExtras(cmd.OutOrStdout(), rows)
			return nil
		},
	}
	of.register(cmd)
	return cmd
}

// extraRows merges the policy's extras (records) with the store's.
func extraRows(doms []virt.Domain, es []store.Extra) []extraView {
	names := map[string]string{}
	var rows []extraView
	for _, d := range doms {
		names[d.UUID.String()] = d.Name
		rec, _, err := domain.ParseRecord([]byte(d.XML))
		if err != nil || rec == nil {
			continue
		}
		for _, ir := range rec.Interfaces {
			for _, a := range strings.Fields(ir.Extra) {
				rows = append(rows, extraView{Domain: d.Name, UUID: d.UUID.String(), MAC: strings.ToLower(ir.MAC), Network: ir.Network, Address: a, Source: "policy"})
			}
		}
	}
	for _, e := range es {
		name := names[e.UUID]
		if name == "" {
			name = e.Name
		}
		for _, p := range e.Prefixes {
			rows = append(rows, extraView{Domain: name, UUID: e.UUID, MAC: e.MAC, Network: e.Network, Address: p, Source: "added"})
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].Domain != rows[j].Domain {
			return rows[i].Domain < rows[j].Domain
		}
		return rows[i].Network < rows[j].Network
	})
	return rows
}

func filterRows(rows []extraView, dom string) []extraView {
	var out []extraView
	for _, r := range rows {
		if r.Domain == dom || strings.EqualFold(r.UUID, dom) {
			out = append(out, r)
		}
	}
	return out
}

func knownDomain(doms []virt.Domain, dom string) bool {
	for _, d := range doms {
		if d.Name == dom || strings.EqualFold(d.UUID.String(), dom) {
			return true
		}
	}
	return false
}

func printExtras(out io.Writer, rows []extraView) {
	if len(rows) == 0 {
		fmt.Fprintln(out, "no extra addresses")
		return
	}
	table(out, "DOMAIN\tNETWORK\tMAC\tADDRESS\tSOURCE", func(tw io.Writer) {
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Domain, r.Network, r.MAC, r.Address, r.Source)
		}
	})
}
