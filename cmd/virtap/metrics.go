package main

import (
	"errors"
	"io/fs"

	"github.com/spf13/cobra"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/paths"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/metrics"
)

func metricsCmd(g *globals) *cobra.Command {
	var textfile, host string
	cmd := &cobra.Command{
		Use:   "metrics",
		Short: "Print Prometheus metrics: pools, leases, MAC budgets, anti-spoofing drops, guests",
		Long: `Print what virtap holds on this host in Prometheus' text format: anti-spoofing
frames seen and dropped (by guest, interface and reason), passthrough pool size,
free, held and busy devices, address pool size and leases, MACs per parent
against max_macs, managed guests and build info. With --textfile DIR the output
replaces DIR/virtap.prom atomically, for node_exporter's textfile collector
(contrib/systemd/virtap-metrics.timer runs that every minute). It never asks
libvirt and changes nothing.`,
		Example: "  virtap metrics\n  virtap metrics --textfile /var/lib/prometheus/node-exporter",
		Args:    args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			pol, err := g.loadPolicy()
			if errors.Is(err, fs.ErrNotExist) {
				g.log.Warn("no policy; pools and MAC budgets are left out", "policy", g.policyPath)
				pol = nil
			} else if err != nil {
				return err
			}
			// A read-only open: the hooks' own lock is shared, never held long.
			st, err := store.Open(g.state(pol), store.Options{ReadOnly: true, Logger: g.log})
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			if st != nil {
				defer st.Close()
			}
			snap, err := metrics.Gather(metrics.Source{Policy: pol, Host: host, Store: st, Net: netdev.New(g.log, nil), SysfsRoot: paths.Sys, Version: version})
			if err != nil {
				return err
			}
			reg, err := snap.Registry()
			if err != nil {
				return err
			}
			if textfile == "" {
				return metrics.Encode(cmd.OutOrStdout(), reg)
			}
			path, err := metrics.WriteTextfile(textfile, reg)
			if err != nil {
				return err
			}
			g.log.Info("metrics written", "path", path)
			return nil
		},
	}
	cmd.Flags().StringVar(&textfile, "textfile", "", "write DIR/"+metrics.TextfileName+" atomically instead of printing (node_exporter's textfile directory)")
	cmd.Flags().StringVar(&host, "host", "", "this host's name in the policy (default: the machine's name)")
	return cmd
}
