package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/virtap/virtap/internal/virt"
	"github.com/virtap/virtap/provision"
)

func defineCmd(g *globals) *cobra.Command {
	var host string
	var check checkFlags
	cmd := &cobra.Command{
		Use:   "define [flags] GUEST.xml|-",
		Short: "Provision a domain and define it through the libvirt API (schema validation on)",
		Example: `  virtap define examples/macvtap-bridge/guest.xml
  virtap define --connect qemu+ssh://node2/system --host node2 guest.xml`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			res, _, err := g.provision(a[0], host, false, check)
			if err != nil {
				return err
			}
			c, err := virt.Connect(check.uri)
			if err != nil {
				return err
			}
			defer c.Close()
			for _, p := range res.Plans {
				if p.Backend != "network" {
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
					fmt.Fprintf(cmd.OutOrStdout(), "defined libvirt network %s (hostdev pool of %s)\n", provision.HostdevNetwork(p.Network.Name), p.Network.PF)
				}
			}
			name, id, err := c.Define(string(res.XML))
			if err != nil {
				return fmt.Errorf("define: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "defined %s (%s) with %d virtap interface(s)\n", name, id, len(res.Plans))
			return nil
		},
	}
	check.register(cmd)
	completeHosts(g, cmd)
	cmd.Flags().StringVar(&host, "host", "", "provision for this host's policy section (default: this machine's name)")
	return cmd
}
