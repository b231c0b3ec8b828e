package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/virtap/virtap/hooks"
	"github.com/virtap/virtap/internal/virt"
	"github.com/virtap/virtap/provision/policy"
)

func hookCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hook",
		Short: "Run the libvirt hook by hand (the installed hook is virtap-hook)",
	}
	var host string
	qemu := &cobra.Command{
		Use:     "qemu DOMAIN OP SUBOP EXTRA",
		Short:   "Run the qemu hook for one lifecycle event; the domain XML comes on stdin",
		Example: "  virsh dumpxml web1 | virtap hook qemu web1 prepare begin -",
		Args:    args(cobra.ExactArgs(4)),
		RunE: func(cmd *cobra.Command, a []string) error {
			req, err := hooks.ParseArgs(a)
			if err != nil {
				return usageError{err}
			}
			cfg := hooks.Config{Log: g.log, PolicyPath: g.policyPath, StateDir: g.stateDir, Host: host, Stdout: cmd.OutOrStdout()}
			if cfg.StateDir == "" {
				cfg.StateDir = DefaultStateDir
				if p, err := g.loadPolicy(); err == nil {
					cfg.StateDir = g.state(p)
				}
			}
			return hooks.Run(cfg, req, os.Stdin)
		},
	}
	qemu.Flags().StringVar(&host, "host", "", "this host's name in the policy (default: the machine's name)")
	cmd.AddCommand(qemu)
	return cmd
}

func hooksCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "hooks", Short: "Install or remove virtap's libvirt qemu hook"}
	var dir, binary, host string
	install := &cobra.Command{
		Use:   "install",
		Short: "Install virtap-hook as DIR/qemu.d/virtap",
		Long: `Copy the virtap-hook binary to DIR/qemu.d/virtap and write DIR/virtap-hook.toml with
the policy path and state directory it must use (libvirt runs hooks with a bare
environment). A file there that is not virtap's hook is never replaced.
libvirtd reads its hooks only when it starts: restart it afterwards.`,
		Example: "  virtap hooks install\n  virtap hooks install --hooks-dir /etc/libvirt/hooks --policy /etc/virtap/policy.toml",
		Args:    args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if binary == "" {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				binary = filepath.Join(filepath.Dir(exe), "virtap-hook")
			}
			// libvirtd runs hooks from /: relative paths would point elsewhere.
			pol, err := filepath.Abs(g.policyPath)
			if err != nil {
				return err
			}
			p, err := policy.Load(pol)
			if err != nil {
				return fmt.Errorf("%w\nnot installed: the hook would fail every guest start with this policy; fix it (virtap policy check %s) or give --policy", err, pol)
			}
			state := g.state(p)
			if state, err = filepath.Abs(state); err != nil {
				return err
			}
			path, err := hooks.Install(hooks.InstallOptions{HooksDir: dir, Binary: binary,
				HookConfig: hooks.HookConfig{Policy: pol, StateDir: state, LogLevel: "info", LogTarget: "auto", Host: host}})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "installed %s (policy %s, state %s)\n%s so that it sees the hook: it reads hooks only when it starts\n", path, pol, state, virt.Restart)
			return nil
		},
	}
	install.Flags().StringVar(&dir, "hooks-dir", hooks.DefaultHooksDir, "libvirt's hooks directory")
	install.Flags().StringVar(&binary, "hook-binary", "", "the virtap-hook binary (default: beside this virtap)")
	install.Flags().StringVar(&host, "host", "", "this host's name in the policy (default: the machine's name)")
	completeHosts(g, install)
	uninstall := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove DIR/qemu.d/virtap (only if it is virtap's hook)",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := hooks.Uninstall(dir)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n%s so that it forgets the hook\n", path, virt.Restart)
			return nil
		},
	}
	uninstall.Flags().StringVar(&dir, "hooks-dir", hooks.DefaultHooksDir, "libvirt's hooks directory")
	cmd.AddCommand(install, uninstall)
	return cmd
}
