// Package doctor is virtap's preflight: it looks at the host that a policy
// is about to be used on and reports, per network and for the host as a
// whole, what will keep guests from starting or from talking to each other.
//
// Every check yields Results with a Status: ok, warn (works, but something
// is degraded or at its limit), fail (a guest will fail to start, or will
// silently lose traffic) and skip (the check could not run, e.g. its
// parent is missing, or it was turned off). A Report fails when any Result
// fails.
//
// Everything the checks read comes through Env, so tests run them against
// a throwaway network namespace, a fake /dev, a fake sysfs tree, a temporary
// hooks directory and state store, a given libvirt version and given domain
// XML documents.
package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"

	"github.com/virtap/virtap/hooks"
	"github.com/virtap/virtap/internal/fleet"
	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/paths"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/provision/policy"
	"github.com/virtap/virtap/vepa"
)

// Status of one check.
type Status string

// Statuses, from good to bad (skip: not run).
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
	Skip Status = "skip"
)

// Names of the checks (Result.Check).
const (
	CheckPolicy      = "policy"          // the policy loads and resolves for this host
	CheckState       = "state"           // the state store can be read (only reported when it cannot)
	CheckParent      = "parent"          // the lower device (parent, bridge, PF) exists and suits the kind
	CheckLinkUp      = "link-up"         // it is administratively up
	CheckCarrier     = "carrier"         // it has carrier
	CheckMTU         = "mtu"             // the network's mtu fits the lower device's
	CheckPromisc     = "promisc"         // the parent is not in promiscuous mode
	CheckMACBudget   = "mac-budget"      // MACs on the parent vs max_macs
	CheckHairpin     = "hairpin"         // the switch reflects frames for VEPA (probe)
	CheckVFHeadroom  = "vf-headroom"     // free devices in a passthrough pool
	CheckVhostNet    = "vhost-net"       // /dev/vhost-net against the vhost setting
	CheckHooks       = "hooks"           // virtap's hook is installed in qemu.d
	CheckLibvirt     = "libvirt-version" // libvirt runs qemu.d hooks (6.5.0 or later)
	CheckDirectMode  = "direct-mode"     // defined direct interfaces name a mode
	CheckVirtualPort = "virtualport"     // defined 802.1Qbg/Qbh virtual ports are valid
)

// Result is the outcome of one check for one network (or parent, pool,
// domain interface; Network is "" for host-wide checks).
type Result struct {
	Check   string `json:"check"`
	Network string `json:"network,omitempty"` // a network, or several joined by ","
	Device  string `json:"device,omitempty"`  // the device, pool or domain it is about
	Status  Status `json:"status"`
	Detail  string `json:"detail"`
	Advice  string `json:"advice,omitempty"`
}

// Summary counts Results by Status.
type Summary struct {
	OK   int `json:"ok"`
	Warn int `json:"warn"`
	Fail int `json:"fail"`
	Skip int `json:"skip"`
}

// Report is everything doctor found.
type Report struct {
	Host    string   `json:"host"`
	Policy  string   `json:"policy,omitempty"`
	Failed  bool     `json:"failed"`
	Summary Summary  `json:"summary"`
	Results []Result `json:"results"`
}

func (r *Report) add(res Result) {
	r.Results = append(r.Results, res)
	switch res.Status {
	case OK:
		r.Summary.OK++
	case Warn:
		r.Summary.Warn++
	case Fail:
		r.Summary.Fail++
		r.Failed = true
	default:
		r.Summary.Skip++
	}
}

// Find returns the results of one check (for one network when network is
// not empty; a joined Network field matches each of its names).
func (r *Report) Find(check, network string) []Result {
	var out []Result
	for _, res := range r.Results {
		if res.Check != check {
			continue
		}
		if network != "" && !containsName(res.Network, network) {
			continue
		}
		out = append(out, res)
	}
	return out
}

func containsName(joined, name string) bool {
	for _, n := range strings.Split(joined, ",") {
		if n == name {
			return true
		}
	}
	return false
}

// DomainXML is one defined domain's XML and where it came from.
type DomainXML struct {
	Source string // a file name or domain name, for messages
	XML    []byte
}

// Env is what the checks look at.
type Env struct {
	Log hclog.Logger
	// Net reads links in the namespace of the parents (required).
	Net *netdev.Manager
	// DevRoot holds vhost-net ("/dev" if empty).
	DevRoot string
	// SysfsRoot is where VF pools are discovered ("/sys" if empty).
	SysfsRoot string
	// HooksDir is libvirt's hooks directory (hooks.DefaultHooksDir if empty).
	HooksDir string
	// StateDir holds virtap's store; "" or a directory without a store
	// means no records (a fresh host).
	StateDir string
	// LibvirtVersion returns libvirt's version text, e.g. "libvirtd
	// (libvirt) 9.0.0" or "9.0.0". nil skips the check.
	LibvirtVersion func() (string, error)
	// Domains returns the defined domains' XML. nil skips the checks of
	// defined domains and leaves them out of the MAC budget.
	Domains func() ([]DomainXML, error)
	// Running returns the running domains' live XML. nil skips the
	// anti-spoofing check.
	Running func() ([]DomainXML, error)
	// Probe runs the reflective-relay probe on the parents of VEPA
	// networks (it creates two temporary macvtaps and sends one frame type
	// to the switch).
	Probe bool
	// ProbeTimeout bounds each probe (1 s if zero).
	ProbeTimeout time.Duration
	// Prober replaces vepa.Probe (nil: vepa.Probe through Net's handle).
	Prober func(ctx context.Context, parent string) (vepa.ProbeResult, error)
	// ModulesDir is /lib/modules/<release> (from uname if empty): the
	// 802.1Q check reads modules.builtin and the module files there.
	ModulesDir string
	// Fleet asks the fleet's etcd members for their status ([fleet] in the
	// policy); nil skips the check.
	Fleet func() ([]fleet.EndpointStatus, bool)
}

func (e *Env) devRoot() string   { return paths.Roots{Dev: e.DevRoot}.DevRoot() }
func (e *Env) sysfsRoot() string { return paths.Roots{Sys: e.SysfsRoot}.SysRoot() }
func (e *Env) hooksDir() string  { return or(e.HooksDir, hooks.DefaultHooksDir) }

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// run holds what one Run gathered once and shares between checks.
type run struct {
	env     *Env
	log     hclog.Logger
	rep     *Report
	records []store.Domain                 // interface records of the store
	pools   map[string][]store.Reservation // pool -> reservations
	domains []parsedDomain
	domErrs []Result
	// reflects: parent -> probe verdict, for parents that were probed.
	reflects map[string]bool
}

// PolicyFailure is the report for a policy that does not load: one failed
// "policy" result followed by the host-wide checks.
func PolicyFailure(env Env, path, host string, err error) *Report {
	rep := &Report{Host: host, Policy: path}
	rep.add(Result{Check: CheckPolicy, Status: Fail, Detail: err.Error(),
		Advice: "fix the policy (virtap policy check " + path + ")"})
	r := newRun(&env, rep)
	r.hostChecks()
	return rep
}

func newRun(env *Env, rep *Report) *run {
	log := env.Log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &run{env: env, log: log.Named("doctor"), rep: rep, pools: map[string][]store.Reservation{}, reflects: map[string]bool{}}
}

// Run checks every network of the policy as host sees it, then the host
// itself. The error is non-nil only when ctx was cancelled or a signal
// interrupted a probe; the report then holds what was checked so far.
func Run(ctx context.Context, env Env, p *policy.Policy, host string) (*Report, error) {
	if env.Net == nil {
		return nil, errors.New("doctor: Env.Net is required")
	}
	rep := &Report{Host: host, Policy: p.File}
	r := newRun(&env, rep)
	nets, err := p.Networks(host)
	if err != nil {
		rep.add(Result{Check: CheckPolicy, Status: Fail, Detail: err.Error(), Advice: "fix the policy (virtap policy check " + p.File + ")"})
		r.hostChecks()
		return rep, ctx.Err()
	}
	rep.add(Result{Check: CheckPolicy, Status: OK, Detail: fmt.Sprintf("%s: %d network(s) for host %s", p.File, len(nets), host)})
	r.readState()
	r.readDomains()
	if err := r.networkChecks(ctx, nets); err != nil {
		return rep, err
	}
	r.hostChecks()
	r.driftCheck(p, host)
	return rep, nil
}

// readState loads interface records and reservations, read-only.
func (r *run) readState() {
	if r.env.StateDir == "" {
		return
	}
	s, err := store.Open(r.env.StateDir, store.Options{ReadOnly: true, Timeout: 3 * time.Second, Logger: r.log})
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			r.log.Debug("no state store yet", "state_dir", r.env.StateDir)
			return
		}
		r.rep.add(Result{Check: CheckState, Device: r.env.StateDir, Status: Warn,
			Detail: fmt.Sprintf("cannot read the state store: %v; MAC budget and pool headroom leave its records out", err)})
		return
	}
	defer s.Close()
	if r.records, err = s.Domains(); err != nil {
		r.rep.add(Result{Check: CheckState, Device: r.env.StateDir, Status: Warn, Detail: fmt.Sprintf("cannot read interface records: %v", err)})
	}
	pools, err := s.Pools()
	if err != nil {
		r.rep.add(Result{Check: CheckState, Device: r.env.StateDir, Status: Warn, Detail: fmt.Sprintf("cannot read pools: %v", err)})
		return
	}
	for _, p := range pools {
		res, err := s.Reservations(p)
		if err != nil {
			r.rep.add(Result{Check: CheckState, Device: r.env.StateDir, Status: Warn, Detail: fmt.Sprintf("cannot read reservations of pool %s: %v", p, err)})
			continue
		}
		r.pools[p] = res
	}
}

// lower is a device that networks sit on, with the networks that use it.
type lower struct {
	name string
	kind string // policy kind of the first network: macvtap, ipvtap, bridge, passthrough
	nets []*policy.Network
}

func (l *lower) names() string {
	s := make([]string, len(l.nets))
	for i, n := range l.nets {
		s[i] = n.Name
	}
	return strings.Join(s, ",")
}

func lowerOf(n *policy.Network) string {
	switch n.Kind {
	case policy.KindBridge:
		return n.Bridge
	case policy.KindPassthrough:
		return n.PF // "" for a devices pool
	default:
		return n.Parent
	}
}

func (r *run) networkChecks(ctx context.Context, nets []*policy.Network) error {
	byName := map[string]*lower{}
	for _, n := range nets {
		name := lowerOf(n)
		if name == "" {
			continue
		}
		l := byName[name]
		if l == nil {
			l = &lower{name: name, kind: n.Kind}
			byName[name] = l
		}
		l.nets = append(l.nets, n)
	}
	if r.env.Probe && r.env.Prober == nil {
		removed, err := r.env.Net.DeleteStaleProbes()
		if err != nil {
			r.log.Warn("cannot remove stale probe devices", "error", err)
		} else if len(removed) > 0 {
			r.log.Info("removed stale probe devices", "devices", strings.Join(removed, ","))
		}
	}
	// Each lower device's checks come before those of the first network
	// on it, so that the table reads network by network.
	done := map[string]bool{}
	for _, n := range nets {
		if name := lowerOf(n); name != "" && !done[name] {
			done[name] = true
			if err := r.lowerChecks(ctx, byName[name]); err != nil {
				return err
			}
		}
		if n.Kind == policy.KindPassthrough {
			r.poolCheck(n)
		}
		r.vhostCheck(n)
		r.vlanCheck(n)
	}
	return nil
}

func (r *run) hostChecks() {
	r.hooksCheck()
	r.libvirtCheck()
	r.fleetCheck()
	if r.domains == nil && r.domErrs == nil {
		r.readDomains()
	}
	r.domainChecks()
	r.filtersCheck()
}

// link reads a link for attributes netdev does not report (promiscuity).
func (r *run) link(name string) (netlink.Link, error) {
	return r.env.Net.Handle().LinkByName(name)
}
