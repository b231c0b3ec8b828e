package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/files"
	"github.com/virtap/virtap/internal/paths"
)

// Paths in the package: where virtap looks by default (internal/paths),
// and where the package puts the hook binary that the link points to.
const (
	HookTarget  = "/usr/libexec/virtap/virtap-hook"
	HookLink    = paths.HooksDir + "/" + paths.Hook
	HookConfig  = paths.HooksDir + "/" + paths.HookConfig
	PolicyFile  = paths.Policy
	UnitDir     = "/lib/systemd/system"
	DocDir      = "/usr/share/doc/virtap"
	Maintainer  = "virtap maintainers <maintainers@virtap.invalid>"
	description = `macvtap and ipvtap networking for libvirt/QEMU guests
 virtap puts libvirt/QEMU guests straight onto the host's physical network
 with macvtap and ipvtap, with no Linux bridge and no NAT in between. One
 TOML host policy says which network each guest interface joins; virtap
 rewrites the domain XML and runs as a libvirt qemu hook so that its work
 on the host starts and stops with each guest.`
)

// packageInfo stages generated files (man pages, completions, changelog)
// in stage and returns what goes into the package.
func packageInfo(o options, stage string) (*nfpm.Info, error) {
	debian := filepath.Join(o.Root, "contrib", "debian")
	version, when, err := changelogTop(filepath.Join(debian, "changelog"))
	if err != nil {
		return nil, err
	}
	if o.Version != "" {
		version = o.Version
	}
	gen, err := generate(o, stage, when)
	if err != nil {
		return nil, err
	}
	depends, err := elfDepends(o.Virtap)
	if err != nil {
		return nil, err
	}
	contents := files.Contents{
		file(o.Virtap, "/usr/bin/virtap", 0o755),
		file(o.Hook, HookTarget, 0o755),
		{Source: HookTarget, Destination: HookLink, Type: files.TypeSymlink},
		conf(filepath.Join(debian, "virtap-hook.toml"), HookConfig),
		conf(filepath.Join(debian, "policy.toml"), PolicyFile),
		file(filepath.Join(debian, "copyright"), DocDir+"/copyright", 0o644),
	}
	contents = append(contents, gen...)
	for _, unit := range []string{"virtap-gc.service", "virtap-metrics.service", "virtap-metrics.timer"} {
		src, err := unitFile(filepath.Join(o.Root, "contrib", "systemd", unit), stage)
		if err != nil {
			return nil, err
		}
		contents = append(contents, file(src, UnitDir+"/"+unit, 0o644))
	}
	return &nfpm.Info{
		Name:          "virtap",
		Arch:          "amd64",
		Platform:      "linux",
		Version:       version,
		VersionSchema: "none",
		Section:       "net",
		Priority:      "optional",
		Maintainer:    Maintainer,
		Description:   description,
		Homepage:      "https://github.com/virtap/virtap",
		License:       "virtap-undecided",
		MTime:         when,
		Overridables: nfpm.Overridables{
			Depends:    depends,
			Recommends: []string{"libvirt-daemon-driver-qemu | libvirt-daemon-system"},
			Suggests:   []string{"prometheus-node-exporter"},
			Contents:   contents,
			Scripts: nfpm.Scripts{
				PostInstall: filepath.Join(debian, "postinst"),
				PostRemove:  filepath.Join(debian, "postrm"),
			},
		},
	}, nil
}

func file(src, dst string, mode os.FileMode) *files.Content {
	return &files.Content{Source: src, Destination: dst, FileInfo: &files.ContentFileInfo{Mode: mode}}
}

func conf(src, dst string) *files.Content {
	return &files.Content{Source: src, Destination: dst, Type: files.TypeConfigNoReplace, FileInfo: &files.ContentFileInfo{Mode: 0o644}}
}

// unitFile copies a unit into stage with the packaged binary's path
// (contrib/systemd is written for a tarball install under /usr/local).
func unitFile(src, stage string) (string, error) {
	b, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	dst := filepath.Join(stage, "units", filepath.Base(src))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	return dst, os.WriteFile(dst, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/virtap", "/usr/bin/virtap")), 0o644)
}

// changelogTop reads the version and date of the newest entry of a Debian
// changelog: "virtap (0.1.0) unstable; ..." and " -- NAME <MAIL>  DATE".
func changelogTop(path string) (string, time.Time, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", time.Time{}, err
	}
	lines := strings.Split(string(b), "\n")
	var version string
	if _, err := fmt.Sscanf(lines[0], "virtap (%s", &version); err != nil || !strings.HasSuffix(version, ")") {
		return "", time.Time{}, fmt.Errorf("%s:1: want \"virtap (VERSION) unstable; urgency=...\"", path)
	}
	version = strings.TrimSuffix(version, ")")
	for i, l := range lines {
		if strings.HasPrefix(l, " -- ") {
			_, date, ok := strings.Cut(l, ">  ")
			t, err := time.Parse(time.RFC1123Z, strings.TrimSpace(date))
			if !ok || err != nil {
				return "", time.Time{}, fmt.Errorf("%s:%d: want \" -- NAME <MAIL>  RFC 2822 DATE\"", path, i+1)
			}
			return version, t, nil
		}
	}
	return "", time.Time{}, fmt.Errorf("%s: no trailer line \" -- NAME <MAIL>  DATE\"", path)
}
