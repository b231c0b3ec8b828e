package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/virtap/virtap/host"
	"github.com/virtap/virtap/internal/paths"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/test/internal/run"
)

// HooksDir is libvirt's hooks directory, where InstallHooks puts virtap's
// hook (libvirtd has no option to look elsewhere).
const HooksDir = paths.HooksDir

// Virtap runs the virtap binaries (built by BuildVirtap, or `make build`'s)
// against one state directory.
type Virtap struct {
	Bin      string // the virtap CLI
	Hook     string // the virtap-hook binary
	StateDir string // --state-dir of every call and of the installed hook
	Policy   string // the policy the installed hook reads (migrate, restore)
	HooksDir string // where InstallHooks installed the hook; "" if it did not

	madeDirs []string // hook directories InstallHooks created

	pubMu     sync.Mutex
	published map[string]string // PublishPolicy: key -> policy text
}

// PublishPolicy makes the installed hook's policy file hold text under key
// (one topology's networks, hosts and guests) beside every other key's. The
// hook takes every security-relevant value from the current policy, as on
// a real host, so the policy it reads must know every network that a
// running test uses; tests prefix their names, so the union is one valid
// policy. The file is replaced atomically: a hook never reads half of it.
func (v *Virtap) PublishPolicy(key, text string) error {
	v.pubMu.Lock()
	defer v.pubMu.Unlock()
	if v.Policy == "" {
		return nil
	}
	if v.published == nil {
		v.published = map[string]string{}
	}
	v.published[key] = text
	keys := make([]string, 0, len(v.published))
	for k := range v.published {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# virtap tests: the installed hook's policy, the union of every running test's\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "\n# ---- %s\n%s\n", k, v.published[k])
	}
	tmp := v.Policy + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, v.Policy)
}

// BuildVirtap builds bin/virtap and bin/virtap-hook (CGO_ENABLED=0) from
// the repository into dir. stateDir is the state directory the returned
// Virtap passes to every command.
func BuildVirtap(dir, stateDir string) (*Virtap, error) {
	root, err := run.RepoRoot()
	if err != nil {
		return nil, err
	}
	v := &Virtap{Bin: filepath.Join(dir, "virtap"), Hook: filepath.Join(dir, "virtap-hook"), StateDir: stateDir}
	env := []string{"GOFLAGS=-mod=mod"}
	if _, err := run.In(root, env, nil, 5*time.Minute, "go", "build", "-o", v.Bin, "./cmd/virtap"); err != nil {
		return nil, err
	}
	if _, err := run.In(root, append(env, "CGO_ENABLED=0"), nil, 5*time.Minute, "go", "build", "-o", v.Hook, "./cmd/virtap-hook"); err != nil {
		return nil, err
	}
	return v, nil
}

// Run runs virtap with the state directory and args, stdin as its
// standard input (nil: none). It returns standard output and standard
// error apart; err is non-nil on a non-zero exit and then carries stderr.
func (v *Virtap) Run(stdin []byte, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	full := append([]string{"--state-dir", v.StateDir}, args...)
	cmd := exec.CommandContext(ctx, v.Bin, full...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.WaitDelay = 2 * time.Second
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("virtap %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(e.String()))
	}
	return o.String(), e.String(), err
}

// Provision runs `virtap provision --policy policy [--host host] -` on xml.
func (v *Virtap) Provision(policy, host, xml string) (string, error) {
	args := []string{"--policy", policy, "provision"}
	if host != "" {
		args = append(args, "--host", host)
	}
	out, _, err := v.Run([]byte(xml), append(args, "-")...)
	return out, err
}

// InstallHooks runs `virtap hooks install` into HooksDir with policy,
// v.StateDir and extra flags (e.g. --host H). libvirtd sees the hook only
// after a restart.
func (v *Virtap) InstallHooks(policy string, extra ...string) error {
	for _, d := range []string{HooksDir, filepath.Join(HooksDir, "qemu.d")} {
		if _, err := os.Stat(d); os.IsNotExist(err) {
			if err := os.Mkdir(d, 0o755); err != nil {
				return err
			}
			v.madeDirs = append(v.madeDirs, d)
		}
	}
	args := append([]string{"--policy", policy, "hooks", "install", "--hooks-dir", HooksDir, "--hook-binary", v.Hook}, extra...)
	if _, _, err := v.Run(nil, args...); err != nil {
		return err
	}
	v.Policy, v.HooksDir = policy, HooksDir
	return nil
}

// UninstallHooks runs `virtap hooks uninstall` and removes the hook
// directories InstallHooks created (when empty). libvirtd forgets the hook
// only after a restart.
func (v *Virtap) UninstallHooks() error {
	if v.HooksDir == "" {
		return nil
	}
	var errs []error
	if _, _, err := v.Run(nil, "hooks", "uninstall", "--hooks-dir", v.HooksDir); err != nil {
		errs = append(errs, err)
	}
	for i := len(v.madeDirs) - 1; i >= 0; i-- {
		if err := os.Remove(v.madeDirs[i]); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
		}
	}
	v.madeDirs, v.HooksDir = nil, ""
	return errors.Join(errs...)
}

// Status is `virtap status --json`.
type Status struct {
	Guests []StatusGuest `json:"guests"`
	host.Status
	Libvirt string `json:"libvirt,omitempty"`
}

// StatusGuest is one libvirt domain that carries virtap's record.
type StatusGuest struct {
	Name       string               `json:"name"`
	UUID       string               `json:"uuid"`
	State      string               `json:"state"`
	Interfaces []domain.IfaceRecord `json:"interfaces"`
}

// Status runs `virtap status --json`, alone: no Virsh call of this
// process runs meanwhile, and no libvirtd restart.
//
// Why alone: `virtap status` keeps the state store open (a shared flock)
// while it lists libvirt's domains. A hook that libvirtd runs inside a job
// (destroy: stopped, release) waits for that flock while holding the
// domain, and listing domains waits for the domain: both stall until the
// hook's lock timeout (10 s), and the release then fails, leaving records
// behind. Seen in this suite; TestVirtapStatusDuringDestroy shows it.
func (v *Virtap) Status() (*Status, error) {
	libvirtGate.Lock()
	defer libvirtGate.Unlock()
	out, _, err := v.Run(nil, "status", "--json")
	if err != nil {
		return nil, err
	}
	var s Status
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		return nil, fmt.Errorf("virtap status --json: %w\n%s", err, out)
	}
	return &s, nil
}

// FilterSeen returns what virtap's anti-spoofing filter on host device
// dev counted (`virtap status`), and whether dev has one.
func (v *Virtap) FilterSeen(dev string) (uint64, bool, error) {
	st, err := v.Status()
	if err != nil {
		return 0, false, err
	}
	for _, f := range st.Filters {
		if f.Device == dev {
			return f.Seen, true, nil
		}
	}
	return 0, false, nil
}

// Mentions lists what of status belongs to the domain with that UUID:
// libvirt guests, state records, reservations, leases.
func (s *Status) Mentions(uuid string) []string {
	var out []string
	u := strings.ToLower(uuid)
	for _, g := range s.Guests {
		if strings.ToLower(g.UUID) == u {
			out = append(out, fmt.Sprintf("guest %s (%s)", g.Name, g.State))
		}
	}
	for _, d := range s.Domains {
		if strings.ToLower(d.UUID) == u {
			out = append(out, fmt.Sprintf("record of %s with %d interface(s) %+v, updated %s", d.Name, len(d.Interfaces), d.Interfaces, d.Updated.Format(time.RFC3339Nano)))
		}
	}
	for _, r := range s.Reservations {
		if strings.ToLower(r.Holder.UUID) == u {
			out = append(out, fmt.Sprintf("reservation of %s in pool %s", r.Device, r.Pool))
		}
	}
	for _, l := range s.Leases {
		if strings.ToLower(l.Holder.UUID) == u {
			out = append(out, fmt.Sprintf("lease of %s in %s", l.Addr, l.Network))
		}
	}
	return out
}

// Running reports (as an error) which of the guests status does not show
// running with a hook record for every interface of its metadata.
func (s *Status) Running(guests ...*Guest) error {
	var bad []string
	for _, g := range guests {
		u := strings.ToLower(g.UUID)
		var sg *StatusGuest
		for i := range s.Guests {
			if strings.ToLower(s.Guests[i].UUID) == u {
				sg = &s.Guests[i]
			}
		}
		if sg == nil || sg.State != "running" || len(sg.Interfaces) == 0 {
			bad = append(bad, fmt.Sprintf("%s: libvirt guest with virtap metadata not running (%+v)", g.Name, sg))
			continue
		}
		recorded := map[string]bool{}
		for _, d := range s.Domains {
			if strings.ToLower(d.UUID) == u {
				for _, i := range d.Interfaces {
					recorded[strings.ToLower(i.MAC)] = true
				}
			}
		}
		for _, i := range sg.Interfaces {
			if !recorded[strings.ToLower(i.MAC)] {
				bad = append(bad, fmt.Sprintf("%s: no hook record for interface %s (network %s)", g.Name, i.MAC, i.Network))
			}
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("virtap status: %s", strings.Join(bad, "; "))
	}
	return nil
}

// TaggedLink is a link of the init netns whose alias is a virtap tag.
type TaggedLink struct {
	Name, Type, Alias string
	Parent            int // index of the lower device, 0 if none
}

// TaggedLinks lists the links of the init netns whose alias starts with
// "virtap:" (what `ip -d link` shows as alias), i.e. devices virtap made.
func TaggedLinks() ([]TaggedLink, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	var out []TaggedLink
	for _, l := range links {
		a := l.Attrs()
		if strings.HasPrefix(a.Alias, "virtap:") {
			out = append(out, TaggedLink{Name: a.Name, Type: l.Type(), Alias: a.Alias, Parent: a.ParentIndex})
		}
	}
	return out, nil
}
