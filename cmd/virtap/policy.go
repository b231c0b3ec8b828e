package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/virtap/virtap/provision"
	"github.com/virtap/virtap/provision/policy"
)

func policyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Work with the host policy"}
	var host string
	var asJSON bool
	check := &cobra.Command{
		Use:     "check [FILE]",
		Short:   "Validate a policy and print its networks as a host sees them",
		Example: "  virtap policy check /etc/virtap/policy.toml\n  virtap policy check --host node2 fleet.toml",
		Args:    args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			path := g.policyPath
			if len(a) == 1 {
				path = a[0]
			}
			p, err := policy.Load(path)
			if err != nil {
				return err
			}
			h, _ := p.ResolveHost(host)
			nets, err := p.Networks(h)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"file": path, "host": h, "networks": nets})
			}
			fmt.Fprintf(out, "%s: ok, %d network(s) for host %s\n", path, len(nets), h)
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NETWORK\tKIND\tLOWER\tMODE\tVHOST\tQUEUES\tTRUST")
			for _, n := range nets {
				lower := n.Parent
				switch n.Kind {
				case policy.KindBridge:
					lower = n.Bridge
				case policy.KindPassthrough:
					lower = "pf:" + n.PF
					if n.PF == "" {
						lower = strings.Join(n.Devices, ",")
					}
				}
				mode := n.Mode
				if n.Flag != "" {
					mode += "/" + n.Flag
				}
				if mode == "" {
					mode = "-"
				}
				q := "auto"
				if n.Queues > 0 {
					q = fmt.Sprint(n.Queues)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Kind, lower, mode, n.Vhost, q, n.Trust)
			}
			return tw.Flush()
		},
	}
	check.Flags().StringVar(&host, "host", "", "show the networks as this host sees them (default: this machine's name)")
	check.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	netxml := &cobra.Command{
		Use:   "netxml NETWORK",
		Short: "Print the libvirt network XML of a hostdev pool (mode = \"hostdev\")",
		Long: `A passthrough network with mode = "hostdev" hands its VF pool to a libvirt network
named virtap-NETWORK: libvirt gives each starting guest a whole VF and takes it back at
stop. 'virtap define' creates that network; with virsh, define it yourself:
  virtap policy netxml fast > net.xml && virsh net-define net.xml && virsh net-start virtap-fast`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			p, err := g.loadPolicy()
			if err != nil {
				return err
			}
			h, _ := p.ResolveHost(host)
			n, ok, err := p.Network(h, a[0])
			if err != nil {
				return err
			}
			if !ok || n.Kind != policy.KindPassthrough || n.Mode != policy.PoolModeHostdev {
				return fmt.Errorf("%s: host %s has no passthrough network %q with mode = \"hostdev\"", p.File, h, a[0])
			}
			xml, err := provision.HostdevNetworkXML(n)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), xml)
			return nil
		},
	}
	netxml.Flags().StringVar(&host, "host", "", "as this host sees the policy (default: this machine's name)")
	cmd.AddCommand(check, netxml)
	return cmd
}
