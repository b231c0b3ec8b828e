package doctor

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"libvirt.org/go/libvirtxml"

	"github.com/virtap/virtap/hooks"
	"github.com/virtap/virtap/passthrough"
	"github.com/virtap/virtap/provision"
	"github.com/virtap/virtap/provision/policy"
)

// poolCheck counts the free devices of a passthrough pool, as the hook
// will see them (passthrough.Pool discovery, passthrough.LinkUsage): members
// (the devices list, or the PF's VFs under SysfsRoot) that have a netdev
// in this namespace, that nothing outside virtap uses (a macvlan/macvtap
// child, a master, a dead lower layer), and that the store has not
// reserved. A pool no guest can use fails; a full or nearly exhausted one
// (a quarter or less free) warns.
func (r *run) poolCheck(n *policy.Network) {
	name := n.PF
	if name == "" {
		name = strings.Join(n.Devices, ",")
	}
	res := func(st Status, detail, advice string) {
		r.rep.add(Result{Check: CheckVFHeadroom, Network: n.Name, Device: name, Status: st, Detail: detail, Advice: advice})
	}
	pool := &passthrough.Pool{Name: n.Name, SysfsRoot: r.env.sysfsRoot(), PF: n.PF, Devices: n.Devices, Log: r.log}
	members, err := pool.Members()
	if err != nil {
		advice := "list the pool's devices correctly"
		if n.PF != "" {
			advice = "enable VFs on " + n.PF + " (echo N > /sys/class/net/" + n.PF + "/device/sriov_numvfs) or fix pf"
		}
		res(Fail, err.Error(), advice)
		return
	}
	inUse, err := passthrough.LinkUsage(r.env.Net.Handle())
	if err != nil {
		res(Skip, err.Error(), "")
		return
	}
	reserved := map[string]bool{}
	for _, rv := range r.pools[n.Name] {
		reserved[rv.Device] = true
	}
	var free, missing, busy, held, stale []string
	isMember := map[string]bool{}
	for _, m := range members {
		label := m.Netdev
		if label == "" {
			label = m.Key()
		}
		isMember[m.Key()] = true
		switch {
		case reserved[m.Key()]:
			held = append(held, label)
		case m.Missing:
			missing = append(missing, label)
		default:
			info, err := r.env.Net.ParentStatus(m.Netdev)
			switch {
			case err != nil || !info.Exists:
				missing = append(missing, label)
			case inUse(m.Netdev):
				busy = append(busy, label)
			default:
				free = append(free, label)
			}
		}
	}
	for k := range reserved {
		if !isMember[k] {
			stale = append(stale, k)
		}
	}
	sort.Strings(stale)
	detail := fmt.Sprintf("%d of %d devices free", len(free), len(members))
	for _, part := range []struct {
		what string
		devs []string
	}{{"reserved", held}, {"used outside virtap", busy}, {"missing", missing}, {"reserved but no longer members", stale}} {
		if len(part.devs) > 0 {
			detail += fmt.Sprintf("; %s: %s", part.what, strings.Join(part.devs, " "))
		}
	}
	switch {
	case len(free) == 0 && len(held) == 0:
		res(Fail, detail+": no guest of this pool can start", "add VFs, or free the devices used outside virtap")
	case len(free) == 0:
		// Every usable device runs a guest: the pool works as sized, but
		// the next guest will not start.
		res(Warn, detail+": the pool is full, the next guest on it cannot start", "add VFs, or stop a guest that holds one")
	case len(free)*4 <= len(members):
		res(Warn, detail+": the pool is nearly exhausted", "add VFs before more guests of this pool start")
	case len(missing) > 0 || len(stale) > 0:
		res(Warn, detail, "bring missing devices back or remove them from the pool")
	default:
		res(OK, detail, "")
	}
}

// vhostCheck compares the network's vhost setting with DevRoot/vhost-net.
func (r *run) vhostCheck(n *policy.Network) {
	path := filepath.Join(r.env.devRoot(), "vhost-net")
	res := func(st Status, detail, advice string) {
		r.rep.add(Result{Check: CheckVhostNet, Network: n.Name, Device: path, Status: st, Detail: detail, Advice: advice})
	}
	if n.Model != "virtio" {
		res(Skip, "model "+n.Model+" does not use vhost-net", "")
		return
	}
	fi, err := os.Stat(path)
	have := err == nil && fi.Mode()&fs.ModeCharDevice != 0
	why := ""
	switch {
	case err != nil:
		why = path + " does not exist"
	case !have:
		why = path + " is not a character device"
	}
	switch n.Vhost {
	case "on":
		if have {
			res(OK, "vhost = on and "+path+" exists", "")
		} else {
			res(Fail, "vhost = on but "+why+": QEMU cannot start the guest's network", "load it (modprobe vhost_net) or set vhost = \"auto\"")
		}
	case "auto":
		if have {
			res(OK, "vhost = auto: guests use "+path, "")
		} else {
			res(OK, "vhost = auto and "+why+": guests use QEMU's userspace virtio-net (slower)", "")
		}
	default:
		res(OK, "vhost = off: guests use QEMU's userspace virtio-net", "")
	}
}

// hooksCheck looks for virtap's hook in HooksDir/qemu.d.
func (r *run) hooksCheck() {
	path := hooks.HookPath(r.env.hooksDir())
	res := func(st Status, detail, advice string) {
		r.rep.add(Result{Check: CheckHooks, Device: path, Status: st, Detail: detail, Advice: advice})
	}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		res(Fail, "no hook at "+path+": libvirt will not run virtap when guests start and stop", "virtap hooks install, then restart libvirtd (or virtqemud on modular hosts)")
		return
	case err != nil:
		res(Fail, fmt.Sprintf("cannot read %s: %v", path, err), "")
		return
	case fi.Mode()&fs.ModeSymlink != 0:
		// The Debian package links qemu.d/virtap to /usr/libexec/virtap/virtap-hook.
		if fi, err = os.Stat(path); err != nil || !fi.Mode().IsRegular() {
			res(Fail, path+" is a symlink to nothing usable", "reinstall the virtap package, or remove the link and run virtap hooks install")
			return
		}
	case !fi.Mode().IsRegular():
		res(Fail, path+" is not a regular file", "move it away, then virtap hooks install")
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		res(Fail, fmt.Sprintf("cannot read %s: %v", path, err), "")
		return
	}
	if !bytes.Contains(data, []byte(hooks.BinaryMarker)) {
		res(Fail, path+" is not virtap's hook", "move it away, then virtap hooks install")
		return
	}
	if fi.Mode().Perm()&0o111 == 0 {
		res(Fail, path+" is not executable: libvirt skips it", "chmod 0755 "+path)
		return
	}
	res(OK, "virtap's hook is installed at "+path+" (libvirtd reads hooks when it starts)", "")
}

// MinLibvirtQemuD is the first libvirt that runs the scripts in
// HOOKS/qemu.d/ (6.5.0).
var MinLibvirtQemuD = [3]int{6, 5, 0}

var versionRE = regexp.MustCompile(`(\d+)\.(\d+)(?:\.(\d+))?`)

// ParseLibvirtVersion finds the first "MAJOR.MINOR[.MICRO]" in text such as
// "libvirtd (libvirt) 9.0.0" or virsh's "9.0.0".
func ParseLibvirtVersion(text string) ([3]int, error) {
	m := versionRE.FindStringSubmatch(text)
	if m == nil {
		return [3]int{}, fmt.Errorf("no version number in %q", strings.TrimSpace(text))
	}
	var v [3]int
	for i := 0; i < 3; i++ {
		if m[i+1] != "" {
			n, err := strconv.Atoi(m[i+1])
			if err != nil {
				return [3]int{}, fmt.Errorf("version %q: %v", m[0], err)
			}
			v[i] = n
		}
	}
	return v, nil
}

func less(a, b [3]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

func (r *run) libvirtCheck() {
	res := func(st Status, detail, advice string) {
		r.rep.add(Result{Check: CheckLibvirt, Device: "libvirt", Status: st, Detail: detail, Advice: advice})
	}
	if r.env.LibvirtVersion == nil {
		res(Skip, "no way to ask libvirt for its version", "")
		return
	}
	text, err := r.env.LibvirtVersion()
	if err != nil {
		res(Warn, fmt.Sprintf("cannot tell libvirt's version: %v", err), "is libvirt installed (libvirtd on PATH)?")
		return
	}
	v, err := ParseLibvirtVersion(text)
	if err != nil {
		res(Warn, fmt.Sprintf("cannot tell libvirt's version: %v", err), "")
		return
	}
	vs := fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2])
	min := MinLibvirtQemuD
	if less(v, min) {
		res(Fail, fmt.Sprintf("libvirt %s runs only HOOKS/qemu, not the scripts in HOOKS/qemu.d/ (needs %d.%d.%d or later): virtap's hook would never run", vs, min[0], min[1], min[2]),
			"upgrade libvirt, or make "+filepath.Join(r.env.hooksDir(), "qemu")+" exec "+hooks.HookPath(r.env.hooksDir())+" with the same arguments and stdin")
		return
	}
	res(OK, fmt.Sprintf("libvirt %s runs qemu.d hooks", vs), "")
}

// parsedDomain is what the checks need from one defined domain.
type parsedDomain struct {
	source string
	name   string
	direct []directIface
}

type directIface struct {
	mac    string // lower-case, "" if the XML has none
	dev    string
	mode   string
	vport  *libvirtxml.DomainInterfaceVirtualPort
	ifaceN int
}

func (r *run) readDomains() {
	if r.env.Domains == nil {
		return
	}
	r.domains = []parsedDomain{}
	docs, err := r.env.Domains()
	if err != nil {
		r.domErrs = append(r.domErrs, Result{Check: CheckDirectMode, Status: Warn, Detail: fmt.Sprintf("cannot read defined domains: %v", err)})
		return
	}
	for _, d := range docs {
		var dom libvirtxml.Domain
		if err := xml.Unmarshal(d.XML, &dom); err != nil {
			r.domErrs = append(r.domErrs, Result{Check: CheckDirectMode, Device: d.Source, Status: Warn, Detail: fmt.Sprintf("cannot parse %s: %v", d.Source, err)})
			continue
		}
		pd := parsedDomain{source: d.Source, name: dom.Name}
		if pd.name == "" {
			pd.name = d.Source
		}
		if dom.Devices != nil {
			for i, ifc := range dom.Devices.Interfaces {
				if ifc.Source == nil || ifc.Source.Direct == nil {
					continue
				}
				di := directIface{dev: ifc.Source.Direct.Dev, mode: ifc.Source.Direct.Mode, vport: ifc.VirtualPort, ifaceN: i}
				if ifc.MAC != nil {
					di.mac = strings.ToLower(ifc.MAC.Address)
				}
				pd.direct = append(pd.direct, di)
			}
		}
		r.domains = append(r.domains, pd)
	}
}

func (di directIface) label(d parsedDomain) string {
	if di.mac != "" {
		return fmt.Sprintf("domain %s interface %s", d.name, di.mac)
	}
	return fmt.Sprintf("domain %s interface #%d", d.name, di.ifaceN+1)
}

// domainChecks looks at the direct interfaces of defined domains: one
// without a mode gets libvirt's default, VEPA (warn; fail when the probe
// found that its parent's switch does not reflect), and 802.1Qbg/Qbh
// virtual ports must be valid.
func (r *run) domainChecks() {
	for _, e := range r.domErrs {
		r.rep.add(e)
	}
	if r.env.Domains == nil {
		r.rep.add(Result{Check: CheckDirectMode, Status: Skip, Detail: "no source of defined domains"})
		return
	}
	total, bad := 0, 0
	for _, d := range r.domains {
		for _, di := range d.direct {
			total++
			if di.mode == "" {
				bad++
				rr := Result{Check: CheckDirectMode, Device: d.name, Status: Warn,
					Detail: fmt.Sprintf("%s: <source dev='%s'/> names no mode, so libvirt uses VEPA: guests on %s reach each other only if the switch reflects frames", di.label(d), di.dev, di.dev),
					Advice: "add mode='bridge' to its <source> (or provision the domain with virtap)"}
				if refl, probed := r.reflects[di.dev]; probed && !refl {
					rr.Status = Fail
					rr.Detail = fmt.Sprintf("%s: <source dev='%s'/> names no mode, so libvirt uses VEPA, and the switch behind %s does not reflect: this guest cannot reach other guests on %s", di.label(d), di.dev, di.dev, di.dev)
				}
				r.rep.add(rr)
			}
			if di.vport != nil {
				r.vportCheck(d, di)
			}
		}
	}
	if bad == 0 {
		r.rep.add(Result{Check: CheckDirectMode, Status: OK, Detail: fmt.Sprintf("%d direct interface(s) in %d defined domain(s), every one names its mode", total, len(r.domains))})
	}
}

func (r *run) vportCheck(d parsedDomain, di directIface) {
	rr := Result{Check: CheckVirtualPort, Device: d.name}
	if di.vport.Params != nil && (di.vport.Params.OpenVSwitch != nil || di.vport.Params.MidoNet != nil || di.vport.Params.Any != nil) {
		return // not 802.1Qbg/Qbh: not ours to judge
	}
	vp, err := provision.VirtualPortOf(di.vport)
	if err == nil {
		var msgs []string
		for _, p := range vp.Check(or(di.mode, "vepa")) {
			msgs = append(msgs, "virtualport."+p.Key+": "+p.Msg)
		}
		if len(msgs) > 0 {
			err = errors.New(strings.Join(msgs, "; "))
		}
	}
	if err != nil {
		rr.Status, rr.Detail = Fail, fmt.Sprintf("%s: %v", di.label(d), err)
		rr.Advice = fmt.Sprintf("fix the <virtualport> element (managerid 0-%d, typeid 0-%d, typeidversion 0-%d, instanceid a UUID; profileid 1-%d characters)",
			policy.MaxManagerID, policy.MaxTypeID, policy.MaxTypeIDVersion, policy.MaxProfileIDLen)
	} else {
		rr.Status, rr.Detail = OK, fmt.Sprintf("%s: %s virtual port is valid", di.label(d), vp.Type)
	}
	r.rep.add(rr)
}

// DomainsFromDir returns a Domains source that reads DIR/*.xml, libvirt's
// persistent domain configs (/etc/libvirt/qemu). A missing directory
// means no domains.
func DomainsFromDir(dir string) func() ([]DomainXML, error) {
	return func() ([]DomainXML, error) {
		files, err := filepath.Glob(filepath.Join(dir, "*.xml"))
		if err != nil {
			return nil, err
		}
		var out []DomainXML
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return nil, err
			}
			out = append(out, DomainXML{Source: f, XML: data})
		}
		return out, nil
	}
}
