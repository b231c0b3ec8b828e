// Command virtap-hook is the libvirt qemu hook, installed as
// /etc/libvirt/hooks/qemu.d/virtap. libvirtd execs it with DOMAIN OP SUBOP
// EXTRA and the domain XML on standard input. It is pure Go (CGO_ENABLED=0)
// and links no libvirt binding: it runs on every guest start and stop.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/virtap/virtap/hooks"
	"github.com/virtap/virtap/internal/logsink"
	"github.com/virtap/virtap/internal/paths"
)

var version = "dev"

func main() {
	args := os.Args[1:]
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-v") {
		fmt.Printf("virtap-hook %s (%s)\n", version, hooks.BinaryMarker)
		return
	}
	req, err := hooks.ParseArgs(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "virtap-hook: %v\nusage: virtap-hook DOMAIN OP SUBOP EXTRA < domain.xml\n", err)
		os.Exit(2)
	}
	input, err := hooks.ReadInput(os.Stdin)
	if err != nil {
		if hooks.MayFail(req.Op) {
			fmt.Fprintf(os.Stderr, "virtap: %v\n", err)
			os.Exit(1)
		}
		if errors.Is(err, hooks.ErrTooLarge) && hooks.Releases(req.Op) {
			// Too large to parse, yet the guest's devices, VF and filter
			// must still be freed: release by the UUID in the head.
			_ = hooks.ReleaseOversize(config(), req, input)
		}
		return
	}
	// Most calls are for domains virtap does not manage: exit before
	// reading settings or building a logger.
	if !hooks.Manages(req.Op, input) {
		return
	}
	if err := hooks.RunInput(config(), req, input); err != nil {
		fmt.Fprintf(os.Stderr, "virtap: %v\n", err)
		os.Exit(1)
	}
}

// config: environment first (manual runs, tests), then the settings file
// that 'virtap hooks install' wrote beside the hook, then the defaults.
func config() hooks.Config {
	var hc hooks.HookConfig
	if exe, err := hookPath(); err == nil {
		c, err := hooks.LoadHookConfig(exe)
		if err != nil {
			fmt.Fprintf(os.Stderr, "virtap-hook: %v (using defaults)\n", err)
		}
		hc = c
	}
	pick := func(env, file, def string) string {
		if v := os.Getenv(env); v != "" {
			return v
		}
		if file != "" {
			return file
		}
		return def
	}
	level := hclog.LevelFromString(pick("VIRTAP_LOG_LEVEL", hc.LogLevel, "info"))
	if level == hclog.NoLevel {
		fmt.Fprintf(os.Stderr, "virtap-hook: log_level %q: allowed: trace, debug, info, warn, error (using info)\n", hc.LogLevel)
		level = hclog.Info
	}
	// The journal when there is one, else syslog, else stderr (which
	// libvirtd keeps only in debug mode). The sockets open lazily: a run
	// that logs nothing never touches them.
	sink := &logsink.Sink{
		Target:  pick("VIRTAP_LOG_TARGET", hc.LogTarget, logsink.TargetAuto),
		Journal: os.Getenv("VIRTAP_JOURNAL_SOCKET"),
		Syslog:  os.Getenv("VIRTAP_SYSLOG_SOCKET"),
	}
	if !slices.Contains(logsink.Targets(), sink.Target) {
		fmt.Fprintf(os.Stderr, "virtap-hook: log_target %q: allowed: %s (using auto)\n", sink.Target, strings.Join(logsink.Targets(), ", "))
		sink.Target = logsink.TargetAuto
	}
	return hooks.Config{
		Log:        logsink.New("virtap", level, sink),
		PolicyPath: pick("VIRTAP_POLICY", hc.Policy, paths.Policy),
		StateDir:   pick("VIRTAP_STATE_DIR", hc.StateDir, paths.StateDir),
		Host:       pick("VIRTAP_HOST", hc.Host, ""),
	}
}

// hookPath is where libvirt found the hook: argv[0], which libvirt sets to
// HOOKS/qemu.d/virtap. The package installs that as a symlink to
// /usr/libexec/virtap/virtap-hook, and os.Executable would resolve it, so
// the settings beside the link would not be found.
func hookPath() (string, error) {
	if len(os.Args) > 0 && filepath.IsAbs(os.Args[0]) {
		return os.Args[0], nil
	}
	return os.Executable()
}
