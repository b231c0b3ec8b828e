package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/virtap/virtap/provision"
	"github.com/virtap/virtap/provision/policy"
)

func policyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Work with the host policy"}
	check := policyCheckCmd(g)
	var host string
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
	completeHosts(g, netxml)
	netxml.ValidArgsFunction = completeNetworks(g, &host)
	cmd.AddCommand(check, netxml)
	return cmd
}

// policyCheckCmd is "virtap policy check".
func policyCheckCmd(g *globals) *cobra.Command {
	var host string
	var strict bool
	var of outputFlags
	check := &cobra.Command{
		Use:     "check [FILE|-]",
		Short:   "Validate a policy (FILE, or - for stdin) and print its networks as a host sees them",
		Example: "  virtap policy check /etc/virtap/policy.toml\n  virtap policy check --host node2 fleet.toml\n  ssh node2 cat /etc/virtap/policy.toml | virtap policy check -",
		Args:    args(cobra.MaximumNArgs(1)),
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return []string{"toml"}, cobra.ShellCompDirectiveFilterFileExt
		},
		RunE: func(cmd *cobra.Command, a []string) error {
			format, err := of.resolve(cmd)
			if err != nil {
				return err
			}
			path := g.policyPath
			if len(a) == 1 {
				path = a[0]
			}
			p, err := loadPolicyArg(path)
			if err != nil {
				return err
			}
			w := &warnings{strict: strict}
			w.checkHost(p, host)
			if err := w.flush(); err != nil {
				return err
			}
			h, _ := p.ResolveHost(host)
			nets, err := p.Networks(h)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if format != formatTable {
				views := make([]networkView, len(nets))
				for i, n := range nets {
					views[i] = networkView{Network: n, Queues: queuesOf(n)}
				}
				return writeData(out, format, policyView{SchemaVersion, p.File, h, views})
			}
			fmt.Fprintf(out, "%s: ok, %d network(s) for host %s\n", p.File, len(nets), h)
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
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\t%s\n", n.Name, n.Kind, lower, mode, n.Vhost, queuesOf(n), n.Trust)
			}
			return tw.Flush()
		},
	}
	check.Flags().StringVar(&host, "host", "", "show the networks as this host sees them (default: this machine's name)")
	of.register(check)
	check.Flags().BoolVar(&strict, "strict", false, "fail (exit 1) when --host names a host the policy has no section for")
	completeHosts(g, check)
	return check
}

// policyView is policy check's JSON and YAML document.
type policyView struct {
	SchemaVersion int           `json:"schema_version"`
	File          string        `json:"file"`
	Host          string        `json:"host"`
	Networks      []networkView `json:"networks"`
}

// networkView is a network with queues as the policy says it: "auto" or
// a number.
type networkView struct {
	*policy.Network
	Queues any `json:"queues"`
}

func queuesOf(n *policy.Network) any {
	if n.Queues == 0 {
		return "auto"
	}
	return n.Queues
}

// loadPolicyArg loads the policy at path, or from stdin for "-".
func loadPolicyArg(path string) (*policy.Policy, error) {
	if path != "-" {
		return policy.Load(path)
	}
	data, err := io.ReadAll(io.LimitReader(os.Stdin, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("policy from stdin: %w", err)
	}
	return policy.Parse("stdin", data)
}
