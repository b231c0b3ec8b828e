// Command virtap gives libvirt/QEMU guests macvtap and ipvtap interfaces
// from one host policy. This package holds flags and output only.
package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/virtap/virtap/internal/paths"
	"github.com/virtap/virtap/internal/virt"
	"github.com/virtap/virtap/provision/policy"
)

// Defaults of the global flags.
const (
	DefaultPolicy   = paths.Policy
	DefaultStateDir = paths.StateDir
)

// version is set by the linker (-X main.version=...).
var version = "dev"

type globals struct {
	policyPath string
	stateDir   string
	logLevel   string
	log        hclog.Logger
}

// usageError marks bad usage: exit code 2.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }

// exitError carries an exit code without a message of its own (the command
// has already printed what the user needs).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	root := newRoot()
	root.SetArgs(args)
	err := root.Execute()
	var ee exitError
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue), strings.HasPrefix(err.Error(), "unknown command"):
		fmt.Fprintf(os.Stderr, "virtap: %v\nRun 'virtap --help' for usage.\n", err)
		return 2
	default:
		fmt.Fprintf(os.Stderr, "virtap: %v\n", err)
		return 1
	}
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "virtap",
		Short: "macvtap and ipvtap networking for libvirt/QEMU guests from one host policy",
		Long: `virtap gives libvirt/QEMU guests direct access to the host's network with macvtap
and ipvtap (bridge, VEPA, private, passthrough; ipvtap l2/l3) instead of a Linux
bridge and NAT. It rewrites domain XML from a TOML host policy and runs as a libvirt
qemu hook so host-side work follows each guest's lifecycle. The policy file is
described in virtap-policy.toml(5).`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			lvl := hclog.LevelFromString(g.logLevel)
			if lvl == hclog.NoLevel {
				return usageError{fmt.Errorf("--log-level %q: allowed: trace, debug, info, warn, error", g.logLevel)}
			}
			g.log = hclog.New(&hclog.LoggerOptions{Name: "virtap", Level: lvl, Output: os.Stderr})
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&g.policyPath, "policy", envOr("VIRTAP_POLICY", DefaultPolicy), "host policy file (env VIRTAP_POLICY)")
	pf.StringVar(&g.stateDir, "state-dir", os.Getenv("VIRTAP_STATE_DIR"), "state directory (env VIRTAP_STATE_DIR; default: the policy's state_dir, else "+DefaultStateDir+")")
	pf.StringVar(&g.logLevel, "log-level", envOr("VIRTAP_LOG_LEVEL", "warn"), "trace, debug, info, warn or error")
	root.AddCommand(
		provisionCmd(g),
		defineCmd(g),
		attachCmd(g),
		detachCmd(g),
		policyCmd(g),
		hookCmd(g),
		hooksCmd(g),
		statusCmd(g),
		gcCmd(g),
		doctorCmd(g),
		metricsCmd(g),
		versionCmd(g),
		addrCmd(g),
		genDocsCmd(),
	)
	return root
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// args wraps a cobra argument check so that its errors are usage errors.
func args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := check(cmd, a); err != nil {
			return usageError{err}
		}
		return nil
	}
}

func (g *globals) loadPolicy() (*policy.Policy, error) {
	return policy.Load(g.policyPath)
}

// stateDirPolicy loads the policy for commands that need it only for the
// state directory and what it names (gc, status): a missing file means the
// defaults. A policy that does not load is an error, unless --state-dir (or
// VIRTAP_STATE_DIR) says where the state is; then it is a warning.
func (g *globals) stateDirPolicy() (*policy.Policy, error) {
	p, err := g.loadPolicy()
	switch {
	case err == nil:
		return p, nil
	case errors.Is(err, fs.ErrNotExist):
		g.log.Debug("no policy; using the defaults", "policy", g.policyPath)
		return nil, nil
	case g.stateDir != "":
		g.log.Warn("policy does not load; using --state-dir", "error", err)
		return nil, nil
	}
	return nil, err
}

// state returns the state directory: flag or env, else the policy's, else the default.
func (g *globals) state(p *policy.Policy) string {
	if g.stateDir != "" {
		return g.stateDir
	}
	if p != nil && p.StateDir != "" {
		return p.StateDir
	}
	return DefaultStateDir
}

// connectFlag adds --connect/-c: empty by default, so that libvirt picks
// the URI as virsh does (LIBVIRT_DEFAULT_URI, uri_default in libvirt.conf).
func connectFlag(cmd *cobra.Command, uri *string) {
	cmd.Flags().StringVarP(uri, "connect", "c", virt.DefaultURI,
		"libvirt URI (default: LIBVIRT_DEFAULT_URI, else uri_default in libvirt.conf, else libvirt's choice: qemu:///system for root)")
}
