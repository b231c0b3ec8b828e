// Command deb builds virtap's Debian package with nfpm (used as a library):
// the CLI, the qemu hook owned by the package, the gc unit, man pages,
// completions, an example policy as a conffile, copyright and changelog.
//
//	go run ./hack/deb -virtap bin/deb/virtap -hook bin/deb/virtap-hook -out .
//
// 'make deb' builds the binaries (PIE) and runs it.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
)

func main() {
	var o options
	flag.StringVar(&o.Virtap, "virtap", "bin/deb/virtap", "the virtap binary")
	flag.StringVar(&o.Hook, "hook", "bin/deb/virtap-hook", "the virtap-hook binary")
	flag.StringVar(&o.Root, "root", ".", "the source tree (README.md, contrib/)")
	flag.StringVar(&o.Out, "out", ".", "where the .deb goes")
	flag.StringVar(&o.Version, "version", "", "package version (default: the top entry of contrib/debian/changelog)")
	flag.Parse()
	path, err := build(o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "deb: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(path)
}

type options struct {
	Virtap, Hook, Root, Out, Version string
}

// build writes OUT/virtap_VERSION_amd64.deb and returns its path.
func build(o options) (string, error) {
	stage, err := os.MkdirTemp("", "virtap-deb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(stage)
	info, err := packageInfo(o, stage)
	if err != nil {
		return "", err
	}
	info = nfpm.WithDefaults(info)
	if err := info.Validate(); err != nil {
		return "", err
	}
	path := filepath.Join(o.Out, fmt.Sprintf("virtap_%s_amd64.deb", info.Version))
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return "", err
	}
	if err := deb.Default.Package(info, f); err != nil {
		f.Close()
		os.Remove(tmp)
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return path, os.Rename(tmp, path)
}
