package main

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/virtap/virtap/hooks"
	"github.com/virtap/virtap/internal/virt"
)

// versionView is what 'virtap version' reports.
type versionView struct {
	SchemaVersion int         `json:"schema_version"`
	Virtap        binaryInfo  `json:"virtap"`
	Hook          binaryInfo  `json:"hook"`
	Libvirt       libvirtInfo `json:"libvirt"`
}

type binaryInfo struct {
	Path     string `json:"path,omitempty"`
	Version  string `json:"version"`
	Go       string `json:"go,omitempty"`
	Revision string `json:"revision,omitempty"`
	Error    string `json:"error,omitempty"`
}

type libvirtInfo struct {
	Library    string `json:"library"`              // the libvirt this virtap loaded
	URI        string `json:"uri,omitempty"`        // the connection asked
	Daemon     string `json:"daemon,omitempty"`     // the libvirt the daemon runs
	Hypervisor string `json:"hypervisor,omitempty"` // QEMU's version, from the daemon
	Error      string `json:"error,omitempty"`      // why the daemon was not asked
}

func versionCmd(g *globals) *cobra.Command {
	var of outputFlags
	var uri, hooksDir string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the versions of virtap, the installed hook and libvirt (library and daemon)",
		Long: `Print the versions of this virtap, of the hook installed in HOOKS/qemu.d/virtap
(it runs with --version; a file that is not virtap's hook is not run), of the libvirt
library virtap loaded and, when it answers, of the libvirt daemon and its QEMU.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := of.resolve(cmd)
			if err != nil {
				return err
			}
			v := versionView{SchemaVersion: SchemaVersion, Virtap: selfInfo(), Hook: hookInfo(hooks.HookPath(hooksDir)), Libvirt: libvirtInfoOf(uri)}
			out := cmd.OutOrStdout()
			if format != formatTable {
				return writeData(out, format, v)
			}
			printVersions(out, v)
			return nil
		},
	}
	of.register(cmd)
	connectFlag(cmd, &uri)
	cmd.Flags().StringVar(&hooksDir, "hooks-dir", hooks.DefaultHooksDir, "libvirt's hooks directory")
	return cmd
}

func printVersions(out io.Writer, v versionView) {
	table(out, "COMPONENT\tVERSION\tDETAIL", func(tw io.Writer) {
		fmt.Fprintf(tw, "virtap\t%s\t%s %s\n", v.Virtap.Version, v.Virtap.Go, v.Virtap.Revision)
		h := v.Hook
		if h.Error != "" {
			fmt.Fprintf(tw, "hook\t-\t%s\n", h.Error)
		} else {
			fmt.Fprintf(tw, "hook\t%s\t%s %s\n", h.Version, h.Path, h.Go)
		}
		fmt.Fprintf(tw, "libvirt library\t%s\t\n", v.Libvirt.Library)
		if v.Libvirt.Error != "" {
			fmt.Fprintf(tw, "libvirt daemon\t-\t%s\n", v.Libvirt.Error)
		} else {
			fmt.Fprintf(tw, "libvirt daemon\t%s\t%s\n", v.Libvirt.Daemon, v.Libvirt.URI)
			fmt.Fprintf(tw, "hypervisor\t%s\t\n", v.Libvirt.Hypervisor)
		}
	})
}

func selfInfo() binaryInfo {
	b := binaryInfo{Version: version, Go: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		b.Revision = revision(bi)
	}
	if exe, err := os.Executable(); err == nil {
		b.Path = exe
	}
	return b
}

func revision(bi *debug.BuildInfo) string {
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return s.Value[:12]
		}
	}
	return ""
}

// hookInfo reads the installed hook's Go build info and asks it for its
// version, if it is virtap's hook.
func hookInfo(path string) binaryInfo {
	b := binaryInfo{Path: path}
	data, err := os.ReadFile(path)
	if err != nil {
		b.Error = fmt.Sprintf("no hook: %v (virtap hooks install)", err)
		return b
	}
	if !bytes.Contains(data, []byte(hooks.BinaryMarker)) {
		b.Error = path + " is not virtap's hook"
		return b
	}
	if bi, err := buildinfo.Read(bytes.NewReader(data)); err == nil {
		b.Go, b.Revision = bi.GoVersion, revision(bi)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		b.Error = fmt.Sprintf("%s --version: %v", path, err)
		return b
	}
	// "virtap-hook VERSION (MARKER)"
	f := strings.Fields(string(out))
	if len(f) < 2 || f[0] != "virtap-hook" {
		b.Error = fmt.Sprintf("%s --version printed %q", path, strings.TrimSpace(string(out)))
		return b
	}
	b.Version = f[1]
	return b
}

func libvirtInfoOf(uri string) libvirtInfo {
	var l libvirtInfo
	var err error
	if l.Library, err = virt.LibVersion(); err != nil {
		l.Error = err.Error()
		return l
	}
	c, err := virt.ConnectReadOnly(uri)
	if err != nil {
		l.Error = err.Error()
		return l
	}
	defer c.Close()
	l.URI = c.URI()
	if l.Daemon, l.Hypervisor, err = c.Versions(); err != nil {
		l.Error = err.Error()
	}
	return l
}
