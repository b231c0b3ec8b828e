package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/virtap/virtap/doctor"
	"github.com/virtap/virtap/hooks"
	"github.com/virtap/virtap/internal/fleet"
	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/virt"
)

func doctorCmd(g *globals) *cobra.Command {
	var (
		of              outputFlags
		noProbe, strict bool
		host, hooksDir  string
		domainsDir, uri string
		probeTimeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Preflight: parents, MAC budget, VEPA hairpin, VF headroom, vhost-net, hooks",
		Long: `Check this host against the policy before guests start: for each network, that its
parent (bridge, PF) exists, is up, has carrier and fits the MTU; the unicast MAC budget of
each parent against max_macs and its promiscuity; for VEPA networks, whether the switch
reflects frames (a probe with two temporary macvtaps; --no-probe turns it off); free
devices of VF pools; /dev/vhost-net against vhost. For the host: virtap's hook in
HOOKS/qemu.d, a libvirt that runs qemu.d hooks, and defined direct interfaces without a
mode (libvirt's default is VEPA).
Exit 1 when a check fails; warnings alone exit 0.`,
		Example: "  virtap doctor\n  virtap doctor --json --no-probe",
		Args:    args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := of.resolve(cmd)
			if err != nil {
				return err
			}
			env := doctor.Env{
				Log: g.log, Net: netdev.New(g.log, nil), HooksDir: hooksDir,
				LibvirtVersion: libvirtVersion,
				Domains:        doctor.DomainsFromDir(domainsDir),
				Running:        func() ([]doctor.DomainXML, error) { return runningDomains(uri) },
				Probe:          !noProbe, ProbeTimeout: probeTimeout,
			}
			var rep *doctor.Report
			var runErr error
			p, err := g.loadPolicy()
			if err != nil {
				h := host
				if h == "" {
					h, _ = os.Hostname()
				}
				env.StateDir = g.state(nil)
				rep = doctor.PolicyFailure(env, g.policyPath, h, err)
			} else {
				w := &warnings{strict: strict}
				w.checkHost(p, host)
				if err := w.flush(); err != nil {
					return err
				}
				h, _ := p.ResolveHost(host)
				env.StateDir = g.state(p)
				if cl, err := g.openFleet(p, h, 2*time.Second); err != nil {
					env.Fleet = func() ([]fleet.EndpointStatus, bool) {
						return []fleet.EndpointStatus{{Endpoint: "[fleet]", Error: err.Error()}}, false
					}
				} else if cl != nil {
					defer cl.Close()
					env.Fleet = cl.Health
				}
				rep, runErr = doctor.Run(cmd.Context(), env, p, h)
			}
			if rep != nil {
				out := cmd.OutOrStdout()
				if format != formatTable {
					err = writeData(out, format, struct {
						SchemaVersion int `json:"schema_version"`
						*doctor.Report
					}{SchemaVersion, rep})
				} else {
					err = rep.WriteTable(out, out == os.Stdout && colourTerminal())
				}
				if err != nil {
					return err
				}
			}
			if runErr != nil {
				return runErr
			}
			if rep.Failed {
				return exitError{1}
			}
			return nil
		},
	}
	f := cmd.Flags()
	of.register(cmd)
	completeHosts(g, cmd)
	f.BoolVar(&strict, "strict", false, "fail (exit 1) when --host names a host the policy has no section for")
	f.BoolVar(&noProbe, "no-probe", false, "do not probe the switch behind VEPA parents for reflective relay (hairpin)")
	f.StringVar(&host, "host", "", "this host's name in the policy (default: the machine's name)")
	f.StringVar(&hooksDir, "hooks-dir", hooks.DefaultHooksDir, "libvirt's hooks directory")
	f.StringVar(&domainsDir, "domains-dir", DomainsDir, "libvirt's persistent domain configs, read for direct interfaces without a mode and the MAC budget")
	f.DurationVar(&probeTimeout, "probe-timeout", ProbeTimeout, "how long the hairpin probe waits for its frame to come back")
	connectFlag(cmd, &uri)
	return cmd
}

// Defaults of doctor's settings.
const (
	// DomainsDir holds libvirt's persistent domain configs.
	DomainsDir = "/etc/libvirt/qemu"
	// ProbeTimeout bounds each reflective-relay probe.
	ProbeTimeout = time.Second
)

// colourTerminal says whether stdout is a terminal and NO_COLOR is unset.
func colourTerminal() bool {
	if os.Getenv("NO_COLOR") != "" {
		return false
	}
	_, err := unix.IoctlGetTermios(int(os.Stdout.Fd()), unix.TCGETS)
	return err == nil
}

// libvirtVersion asks libvirtd (else virsh) for its version; neither needs
// a running daemon.
func libvirtVersion() (string, error) {
	var errs []error
	for _, bin := range []string{"libvirtd", "virsh"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err := exec.CommandContext(ctx, bin, "--version").Output()
		cancel()
		if err == nil && strings.TrimSpace(string(out)) != "" {
			return string(out), nil
		}
		errs = append(errs, fmt.Errorf("%s --version: %w", bin, err))
	}
	return "", errors.Join(errs...)
}

// runningDomains reads the running domains' live XML from libvirt.
func runningDomains(uri string) ([]doctor.DomainXML, error) {
	c, err := virt.ConnectReadOnly(uri)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	doms, err := c.Domains()
	if err != nil {
		return nil, err
	}
	var out []doctor.DomainXML
	for _, d := range doms {
		if d.Running {
			out = append(out, doctor.DomainXML{Source: d.Name, XML: []byte(d.XML)})
		}
	}
	return out, nil
}
