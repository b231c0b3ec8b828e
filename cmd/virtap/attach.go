package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/virtap/virtap/host"
	"github.com/virtap/virtap/hotplug"
	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/paths"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/internal/virt"
	"github.com/virtap/virtap/provision"
	"github.com/virtap/virtap/provision/domain"
)

// hotplugLibvirt is hotplug.Libvirt over internal/virt.
type hotplugLibvirt struct{ c *virt.Conn }

var _ hotplug.Libvirt = hotplugLibvirt{}

func (h hotplugLibvirt) Lookup(name string) (hotplug.Dom, error) {
	d, err := h.c.Lookup(name, false)
	return hotplug.Dom{Name: d.Name, Running: d.Running, Persistent: d.Persistent, Live: d.Live, Config: d.Config}, err
}

func (h hotplugLibvirt) AttachDevice(name, xml string, w hotplug.Where) error {
	return h.c.AttachDevice(name, xml, w.Live, w.Config)
}

func (h hotplugLibvirt) DetachDevice(name, xml string, w hotplug.Where) error {
	return h.c.DetachDevice(name, xml, w.Live, w.Config)
}

func (h hotplugLibvirt) UpdateDevice(name, xml string, w hotplug.Where) error {
	return h.c.UpdateDevice(name, xml, w.Live, w.Config)
}

func (h hotplugLibvirt) SetMetadata(name, element string, w hotplug.Where) error {
	return h.c.SetMetadata(name, element, domain.Prefix, domain.Namespace, w.Live, w.Config)
}

type hotplugFlags struct {
	uri, mac, model string
	live, config    bool
	out             outputFlags
}

// hotplugEnv connects to libvirt and loads the policy for attach/detach.
func (g *globals) hotplugEnv(f *hotplugFlags) (*hotplug.Env, func(), error) {
	pol, err := g.loadPolicy()
	if err != nil {
		return nil, nil, err
	}
	c, err := virt.Connect(f.uri)
	if err != nil {
		return nil, nil, err
	}
	h, local := pol.ResolveHost("")
	env := &hotplug.Env{
		Log: g.log, Libvirt: hotplugLibvirt{c}, Policy: pol, Host: h,
		Provision: provision.Options{Policy: pol, Host: h, Local: local, ParentMAC: netdev.LinkMAC},
		Realiser: func() (*host.Realiser, func(), error) {
			st, err := store.Open(g.state(pol), store.Options{Timeout: 30 * time.Second, Logger: g.log})
			if err != nil {
				return nil, nil, err
			}
			return host.New(g.log, netdev.New(g.log, nil), st, paths.Roots{}), func() { _ = st.Close() }, nil
		},
	}
	closeAll := c.Close
	if pol.Fleet != nil {
		cl, err := g.openFleet(pol, h, fleetTimeout)
		if err != nil {
			c.Close()
			return nil, nil, err
		}
		env.Fleet = func(d *domain.Doc) (*provision.Fleet, error) { return fleetProvision(cl, d) }
		closeAll = func() { cl.Close(); c.Close() }
	}
	return env, closeAll, nil
}

func (f *hotplugFlags) bind(cmd *cobra.Command) {
	fl := cmd.Flags()
	connectFlag(cmd, &f.uri)
	fl.BoolVar(&f.live, "live", false, "change the running guest (default: the running guest and its persistent definition, whichever it has)")
	fl.BoolVar(&f.config, "config", false, "change the persistent definition")
	f.out.register(cmd)
}

func (f *hotplugFlags) where() hotplug.Where { return hotplug.Where{Live: f.live, Config: f.config} }

// hotplugDoc is attach's and detach's JSON/YAML document.
type hotplugDoc struct {
	SchemaVersion int `json:"schema_version"`
	Result        any `json:"result"`
}

func attachCmd(g *globals) *cobra.Command {
	f := &hotplugFlags{}
	cmd := &cobra.Command{
		Use:   "attach DOMAIN NETWORK",
		Short: "Give a guest a new interface on a policy network, with virtap's host-side work (hot-plug)",
		Long: `Provision one interface on a policy network against the current policy (a
deterministic MAC unless --mac gives one), do at once what the hook does at prepare
and start (devices, VF reservation, anti-spoofing filter, host shim, address lease),
record it in virtap's metadata and attach it through the libvirt API: to a running
persistent guest live and in its definition (as virsh attach-interface --live
--config), to a stopped guest in its definition. An untrusted interface on a macvtap
network is attached with its link down until its filter is on libvirt's device. Any
failure undoes every step. The guest needs <features><acpi/></features> for hot-plug.`,
		Example: "  virtap attach web1 lan\n  virtap attach web1 dmz --mac 52:54:00:12:34:56 --model virtio --live",
		Args:    args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, a []string) error {
			format, err := f.out.resolve(cmd)
			if err != nil {
				return err
			}
			env, done, err := g.hotplugEnv(f)
			if err != nil {
				return err
			}
			defer done()
			res, err := hotplug.Attach(env, a[0], provision.AttachRequest{Network: a[1], MAC: f.mac, Model: f.model}, f.where())
			if err != nil {
				return err
			}
			if format != formatTable {
				return writeData(cmd.OutOrStdout(), format, hotplugDoc{SchemaVersion, res})
			}
			ir := res.Record
			fmt.Fprintf(cmd.OutOrStdout(), "attached %s to %s (%s) on network %s (%s %s)", ir.MAC, res.Domain, res.Where, ir.Network, ir.Kind, ir.Mode)
			if res.Device != "" {
				fmt.Fprintf(cmd.OutOrStdout(), ", host device %s", res.Device)
			}
			if res.Filter {
				fmt.Fprint(cmd.OutOrStdout(), ", anti-spoofing on")
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return nil
		},
	}
	noHost := ""
	cmd.ValidArgsFunction = func(cmd *cobra.Command, a []string, prefix string) ([]string, cobra.ShellCompDirective) {
		if len(a) != 1 { // DOMAIN: libvirt's, not completed here
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return completeNetworks(g, &noHost)(cmd, nil, prefix)
	}
	f.bind(cmd)
	cmd.Flags().StringVar(&f.mac, "mac", "", "the interface's MAC (default: derived from the domain's UUID and the interface's position)")
	cmd.Flags().StringVar(&f.model, "model", "", "the NIC model (default: the network's model)")
	return cmd
}

func detachCmd(g *globals) *cobra.Command {
	f := &hotplugFlags{}
	cmd := &cobra.Command{
		Use:   "detach DOMAIN MAC",
		Short: "Take a virtap interface out of a guest and remove its host-side state",
		Long: `Detach the interface with MAC through the libvirt API (from the running guest
and/or its persistent definition, wherever it is unless --live or --config say),
wait until the guest gave it back, drop it from virtap's metadata, then remove its
host side: devices, VF reservation (VF settings restored), anti-spoofing filter,
address lease, state record and an unused host shim.`,
		Example: "  virtap detach web1 52:54:00:12:34:56",
		Args:    args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, a []string) error {
			format, err := f.out.resolve(cmd)
			if err != nil {
				return err
			}
			env, done, err := g.hotplugEnv(f)
			if err != nil {
				return err
			}
			defer done()
			res, err := hotplug.Detach(env, a[0], a[1], f.where())
			if err != nil {
				return err
			}
			if format != formatTable {
				return writeData(cmd.OutOrStdout(), format, hotplugDoc{SchemaVersion, res})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "detached %s from %s (%s)", res.Record.MAC, res.Domain, res.Where)
			if res.Released {
				fmt.Fprint(cmd.OutOrStdout(), "; host side removed")
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return nil
		},
	}
	f.bind(cmd)
	return cmd
}
