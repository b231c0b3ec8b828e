package main

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/virtap/virtap/host"
	"github.com/virtap/virtap/internal/fsutil"
	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/internal/udiff"
	"github.com/virtap/virtap/provision"
	"github.com/virtap/virtap/provision/domain"
)

type provisionFlags struct {
	host      string
	out       string
	diff      bool
	cloudInit string
	check     checkFlags
}

// checkFlags are the flags of the commands that provision.
type checkFlags struct {
	strict bool
	uri    string
}

func provisionCmd(g *globals) *cobra.Command {
	f := &provisionFlags{}
	cmd := &cobra.Command{
		Use:   "provision [flags] GUEST.xml|-",
		Short: "Print the domain XML with its policy networks made concrete",
		Long: `Rewrite every <interface type='network'><source network='N'/> whose N is a policy
network into a concrete interface (direct, ethernet with managed='no', or bridge) and
record it in virtap's <metadata> element. Everything else in the document is kept.
Provisioning virtap's own output again changes nothing.`,
		Example: `  virtap provision --policy examples/macvtap-bridge/policy.toml examples/macvtap-bridge/guest.xml
  virtap provision --host node2 --diff guest.xml
  virsh dumpxml web1 | virtap provision - -o web1.xml`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if f.diff && (f.out != "" || f.cloudInit != "") {
				return usageError{fmt.Errorf("--diff changes nothing and writes no file; drop -o/--output and --cloud-init, or --diff")}
			}
			if f.cloudInit != "" && g.stateDir == "" {
				return usageError{fmt.Errorf("--cloud-init leases addresses in the state directory that the hook uses: give it with --state-dir (or VIRTAP_STATE_DIR), e.g. --state-dir %s", DefaultStateDir)}
			}
			res, in, err := g.provision(a[0], f.host, f.diff, f.check)
			if err != nil {
				return err
			}
			if f.cloudInit != "" {
				if err := g.writeCloudInit(res, f.cloudInit); err != nil {
					return err
				}
			}
			switch {
			case f.diff:
				name := a[0]
				if name == "-" {
					name = "stdin"
				}
				if bytes.Equal(in, res.XML) {
					return nil
				}
				fmt.Fprint(cmd.OutOrStdout(), udiff.Diff(name, name+" (provisioned)", string(in), string(res.XML), 3))
				return exitError{1} // like diff(1): 1 when the texts differ
			case f.out != "":
				return fsutil.WriteAtomic(f.out, res.XML, 0o644)
			default:
				_, err := cmd.OutOrStdout().Write(res.XML)
				return err
			}
		},
	}
	cmd.Flags().StringVar(&f.host, "host", "", "provision for this host's policy section (default: this machine's name)")
	cmd.Flags().StringVarP(&f.out, "output", "o", "", "write the XML to this file instead of stdout")
	cmd.Flags().BoolVar(&f.diff, "diff", false, "print a unified diff of what would change and change nothing; exit 1 when something would change (like diff(1))")
	cmd.Flags().StringVar(&f.cloudInit, "cloud-init", "", "also lease the guest's addresses in --state-dir (required with it) and write a cloud-init NoCloud seed (meta-data, network-config) to this directory")
	f.check.register(cmd)
	completeHosts(g, cmd)
	return cmd
}

func (c *checkFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&c.strict, "strict", false, "fail (exit 1) on what is otherwise a warning: an unknown network, a --host without a section")
	if cmd.Flags().Lookup("connect") == nil {
		connectFlag(cmd, &c.uri)
	}
}

// provision provisions the document at path (or stdin, "-") and reports
// what may be a mistake (warnings, or errors under --strict).
func (g *globals) provision(path, host string, dry bool, check checkFlags) (*provision.Result, []byte, error) {
	p, err := g.loadPolicy()
	if err != nil {
		return nil, nil, err
	}
	in, err := readInput(path)
	if err != nil {
		return nil, nil, err
	}
	name := path
	if path == "-" {
		name = "stdin"
	}
	h, local := p.ResolveHost(host)
	res, err := g.provisionIn(p, in, provision.Options{Policy: p, Host: h, Local: local, ParentMAC: netdev.LinkMAC}, dry)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	w := &warnings{strict: check.strict}
	w.checkHost(p, host)
	w.checkNetworks(name, res, check.uri)
	if err := w.flush(); err != nil {
		return nil, nil, err
	}
	return res, in, nil
}

func readInput(path string) ([]byte, error) {
	var r io.Reader
	if path == "-" {
		r = os.Stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, domain.MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > domain.MaxSize {
		return nil, fmt.Errorf("%s: larger than %d bytes; is it a domain XML?", path, domain.MaxSize)
	}
	return data, nil
}

// writeCloudInit leases the domain's pool addresses in this host's state
// (the hook's later lease for the same domain and MAC returns the same
// address; in a fleet the address leased at provisioning is used) and
// writes a NoCloud seed.
func (g *globals) writeCloudInit(res *provision.Result, dir string) error {
	pol, err := g.loadPolicy()
	if err != nil {
		return err
	}
	st, err := store.Open(g.state(pol), store.Options{Logger: g.log})
	if err != nil {
		return err
	}
	defer st.Close()
	files, err := provision.CloudInit(res, func(p provision.Plan) (netip.Addr, error) {
		if p.Leased != "" {
			return netip.ParseAddr(p.Leased) // leased fleet-wide, in the record
		}
		pool, err := host.ParsePool(p.Network.Addresses, p.Network.Range, p.Network.Gateway)
		if err != nil {
			return netip.Addr{}, err
		}
		return host.LeaseFor(st, p.Network.Name, pool, p.Address, store.Holder{UUID: res.Doc.UUID, MAC: p.MAC, Name: res.Doc.Name})
	})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, data := range files {
		if err := fsutil.WriteAtomic(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
