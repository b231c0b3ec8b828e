package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/virtap/virtap/internal/virt"
)

func defineCmd(g *globals) *cobra.Command {
	var host string
	var check checkFlags
	rf := &redefineFlags{}
	cmd := &cobra.Command{
		Use:   "define [flags] GUEST.xml|- | --domain NAME | --all",
		Short: "Provision a domain and define it through the libvirt API (schema validation on)",
		Long: `Provision GUEST.xml and define it through the libvirt API, with libvirt's schema
validation on. With --domain NAME (or --all: every defined domain that carries virtap's
record) re-provision defined domains from their persistent XML against the current
policy, e.g. after a policy change; only interfaces that change are rewritten, and
--dry-run prints a diff and changes nothing. Running guests keep their old interfaces
until they are restarted: the command names them.`,
		Example: `  virtap define examples/macvtap-bridge/guest.xml
  virtap define --connect qemu+ssh://node2/system --host node2 guest.xml
  virtap define --all --dry-run
  virtap define --domain web1`,
		Args: args(cobra.ArbitraryArgs),
		RunE: func(cmd *cobra.Command, a []string) error {
			if err := rf.check(a); err != nil {
				return err
			}
			if rf.active() {
				return g.redefine(cmd, rf, check.uri, host)
			}
			res, _, err := g.provision(a[0], host, false, check)
			if err != nil {
				return err
			}
			c, err := virt.Connect(check.uri)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := ensureHostdevNetworks(c, cmd.OutOrStdout(), res.Plans); err != nil {
				return err
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
	rf.bind(cmd)
	return cmd
}
