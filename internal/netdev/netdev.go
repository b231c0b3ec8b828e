// Package netdev creates, finds and deletes the host links virtap owns
// (macvtap, macvlan, ipvtap, ipvlan) through netlink, in a given network
// namespace.
//
// Ownership: every device virtap creates carries a Tag in its alias
// (IFLA_IFALIAS). Delete and DeleteTagged touch only tagged devices; a device
// of the same name without virtap's tag makes Create and Delete fail with
// ErrNotOurs.
//
// Atomicity of the tag: Linux ignores IFLA_IFALIAS in RTM_NEWLINK (the alias
// is applied only by RTM_SETLINK; checked on 6.18, TestAliasAtCreation
// logs it). So Create adds the link with the alias
// attribute anyway (a future kernel may honour it) and then sets the alias
// with a second request. Between the two requests a device with virtap's
// deterministic name exists untagged; if the process dies in that window the
// device is left untagged and a re-run refuses it with ErrNotOurs, and gc will
// not remove it. Operators remove such a device by hand (ip link del NAME);
// Create's error says so.
package netdev

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/virtap/virtap/internal/ifname"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Errors callers can test with errors.Is.
var (
	// ErrNotOurs: a device exists but is not tagged as virtap's, or is
	// tagged for another owner. Nothing was changed.
	ErrNotOurs = errors.New("device is not virtap's")
	// ErrMismatch: a device with our tag exists but its kind or parent
	// differs from the spec. Nothing was changed.
	ErrMismatch = errors.New("device exists with a different configuration")
	// ErrInvalidSpec: the spec cannot be realised as given.
	ErrInvalidSpec = errors.New("invalid device spec")
	// ErrNoParent: the parent (lower) device does not exist.
	ErrNoParent = errors.New("parent device not found")
)

// MaxNameLen is the longest interface name Linux accepts (IFNAMSIZ-1).
const MaxNameLen = ifname.MaxLen

// Kinds of devices this package manages.
const (
	KindMacvtap = "macvtap"
	KindMacvlan = "macvlan"
	KindIPvtap  = "ipvtap"
	KindIPvlan  = "ipvlan"
)

// Spec describes a device to create.
type Spec struct {
	Name   string // at most 15 characters
	Kind   string // "macvtap" | "macvlan" | "ipvtap" | "ipvlan"
	Parent string // lower device
	// Mode: macvtap/macvlan "bridge"|"vepa"|"private"|"passthrough";
	// ipvtap/ipvlan "l2"|"l3"|"l3s". Required: no kernel default is used.
	Mode string
	// Flag: ipvtap/ipvlan only, "bridge" (default)|"private"|"vepa".
	Flag   string
	MAC    net.HardwareAddr // optional; macvtap/macvlan only
	MTU    int              // 0: inherit
	TxQLen int              // 0: kernel default
	Tag    Tag              // required
	Up     bool
	// Index optionally asks for this interface index (0: kernel picks).
	// Mainly for tests: /dev/tap<index> lives in the global devtmpfs, so
	// macvtaps in different namespaces with equal indexes collide there.
	Index int
}

// Device is a link as read back from the kernel.
type Device struct {
	Name   string
	Index  int
	Kind   string // link type as the kernel reports it ("macvtap", "veth", ...)
	Parent string // lower device name, "" if none or not in this namespace
	Mode   string // in the spelling of Spec.Mode ("passthrough", not "passthru")
	Flag   string // ipvlan/ipvtap only
	MAC    net.HardwareAddr
	MTU    int
	Tag    Tag // zero if not virtap's
	Up     bool
	// TapPath is /dev/tap<Index> for macvtap and ipvtap, "" otherwise.
	TapPath string
}

// Ours reports whether the device carries a virtap tag.
func (d Device) Ours() bool { return !d.Tag.IsZero() }

var macvlanModes = map[string]netlink.MacvlanMode{
	"bridge":      netlink.MACVLAN_MODE_BRIDGE,
	"vepa":        netlink.MACVLAN_MODE_VEPA,
	"private":     netlink.MACVLAN_MODE_PRIVATE,
	"passthrough": netlink.MACVLAN_MODE_PASSTHRU, // the kernel's "passthru"
}

var ipvlanModes = map[string]netlink.IPVlanMode{
	"l2": netlink.IPVLAN_MODE_L2, "l3": netlink.IPVLAN_MODE_L3, "l3s": netlink.IPVLAN_MODE_L3S,
}

var ipvlanFlags = map[string]netlink.IPVlanFlag{
	"bridge": netlink.IPVLAN_FLAG_BRIDGE, "private": netlink.IPVLAN_FLAG_PRIVATE, "vepa": netlink.IPVLAN_FLAG_VEPA,
}

// ValidateName checks a Linux interface name (ifname.Validate); the error
// wraps ErrInvalidSpec.
func ValidateName(name string) error {
	if err := ifname.Validate(name); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidSpec, err)
	}
	return nil
}

// Validate checks the spec without touching the system.
func (s Spec) Validate() error {
	if err := ValidateName(s.Name); err != nil {
		return err
	}
	if err := ValidateName(s.Parent); err != nil {
		return fmt.Errorf("parent: %w", err)
	}
	if err := s.Tag.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidSpec, err)
	}
	switch s.Kind {
	case KindMacvtap, KindMacvlan:
		if _, ok := macvlanModes[s.Mode]; !ok {
			return fmt.Errorf("%w: %s mode %q: want bridge, vepa, private or passthrough", ErrInvalidSpec, s.Kind, s.Mode)
		}
		if s.Flag != "" {
			return fmt.Errorf("%w: flag %q is for ipvtap/ipvlan only", ErrInvalidSpec, s.Flag)
		}
		if s.MAC != nil && (len(s.MAC) != 6 || s.MAC[0]&1 == 1) {
			return fmt.Errorf("%w: MAC %s is not a unicast Ethernet address", ErrInvalidSpec, s.MAC)
		}
	case KindIPvtap, KindIPvlan:
		if _, ok := ipvlanModes[s.Mode]; !ok {
			return fmt.Errorf("%w: %s mode %q: want l2, l3 or l3s", ErrInvalidSpec, s.Kind, s.Mode)
		}
		if _, ok := ipvlanFlags[s.Flag]; s.Flag != "" && !ok {
			return fmt.Errorf("%w: %s flag %q: want bridge, private or vepa", ErrInvalidSpec, s.Kind, s.Flag)
		}
		if s.MAC != nil {
			return fmt.Errorf("%w: %s shares its parent's MAC; MAC must be empty", ErrInvalidSpec, s.Kind)
		}
	default:
		return fmt.Errorf("%w: kind %q: want macvtap, macvlan, ipvtap or ipvlan", ErrInvalidSpec, s.Kind)
	}
	if s.MTU < 0 || s.TxQLen < 0 || s.Index < 0 {
		return fmt.Errorf("%w: negative MTU, txqlen or index", ErrInvalidSpec)
	}
	return nil
}

// Manager does the work in one network namespace.
type Manager struct {
	log hclog.Logger
	h   *netlink.Handle
	// ns is the namespace of h when known (NewAt, or nil handle): parallel
	// workers open their own handles there.
	ns      netns.NsHandle
	hasNS   bool
	current bool // h was nil: use the calling thread's namespace
	// TapWait bounds the wait for /dev/tapN to appear after creation.
	TapWait time.Duration
	// afterAdd, if set (tests), runs right after the link was added and
	// read back; an error makes Create fail and revert.
	afterAdd func(netlink.Link) error

	mu      sync.Mutex
	parents map[string]netlink.Link // parent lookups, for many creates on one parent
}

// parent looks a lower device up once per Manager.
func (m *Manager) parent(name string) (netlink.Link, error) {
	m.mu.Lock()
	l, ok := m.parents[name]
	m.mu.Unlock()
	if ok {
		return l, nil
	}
	l, err := m.h.LinkByName(name)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	if m.parents == nil {
		m.parents = map[string]netlink.Link{}
	}
	m.parents[name] = l
	m.mu.Unlock()
	return l, nil
}

func (m *Manager) forgetParent(name string) {
	m.mu.Lock()
	delete(m.parents, name)
	m.mu.Unlock()
}

// New returns a Manager working through h. A nil h means the namespace of
// the calling thread at each call (netlink's package handle). With a non-nil
// h whose namespace is unknown, DeleteTagged works serially; use NewAt for
// parallel deletion in another namespace.
func New(log hclog.Logger, h *netlink.Handle) *Manager {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	m := &Manager{log: log.Named("netdev"), h: h, TapWait: 2 * time.Second}
	if h == nil {
		m.h = &netlink.Handle{}
		m.current = true
	}
	return m
}

// NewAt returns a Manager for the namespace ns (it duplicates nothing: keep
// ns open while the Manager is used). Close releases its netlink handle.
func NewAt(log hclog.Logger, ns netns.NsHandle) (*Manager, error) {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in netns: %w", err)
	}
	m := New(log, h)
	m.ns, m.hasNS = ns, true
	return m, nil
}

// Close releases the netlink sockets of a Manager made by NewAt.
func (m *Manager) Close() {
	if m.hasNS {
		m.h.Close()
	}
}

func isNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, unix.ENODEV)
}

// Find returns the device called name. ok is false if there is none.
func (m *Manager) Find(name string) (Device, bool, error) {
	l, err := m.h.LinkByName(name)
	if err != nil {
		if isNotFound(err) {
			return Device{}, false, nil
		}
		return Device{}, false, fmt.Errorf("look up %s: %w", name, err)
	}
	return m.device(l, nil), true, nil
}

// device converts a link; names maps index -> name to resolve parents
// (nil: look up).
func (m *Manager) device(l netlink.Link, names map[int]string) Device {
	a := l.Attrs()
	d := Device{
		Name: a.Name, Index: a.Index, Kind: l.Type(), MAC: a.HardwareAddr, MTU: a.MTU,
		Up: a.Flags&net.FlagUp != 0,
	}
	if t, ok := ParseTag(a.Alias); ok {
		d.Tag = t
	}
	if a.ParentIndex > 0 && a.ParentIndex != a.Index {
		if names != nil {
			d.Parent = names[a.ParentIndex]
		} else if p, err := m.h.LinkByIndex(a.ParentIndex); err == nil {
			d.Parent = p.Attrs().Name
		}
	}
	switch v := l.(type) {
	case *netlink.Macvtap:
		d.Mode = macvlanModeName(v.Mode)
		d.TapPath = tapPath(a.Index)
	case *netlink.Macvlan:
		d.Mode = macvlanModeName(v.Mode)
	case *netlink.IPVtap:
		d.Mode, d.Flag = ipvlanModeName(v.Mode), ipvlanFlagName(v.Flag)
		d.TapPath = tapPath(a.Index)
	case *netlink.IPVlan:
		d.Mode, d.Flag = ipvlanModeName(v.Mode), ipvlanFlagName(v.Flag)
	}
	return d
}

func tapPath(index int) string { return fmt.Sprintf("/dev/tap%d", index) }

func macvlanModeName(m netlink.MacvlanMode) string {
	for k, v := range macvlanModes {
		if v == m {
			return k
		}
	}
	if m == netlink.MACVLAN_MODE_SOURCE {
		return "source"
	}
	return ""
}

func ipvlanModeName(m netlink.IPVlanMode) string {
	for k, v := range ipvlanModes {
		if v == m {
			return k
		}
	}
	return ""
}

func ipvlanFlagName(f netlink.IPVlanFlag) string {
	for k, v := range ipvlanFlags {
		if v == f {
			return k
		}
	}
	return ""
}

// checkExisting decides what to do with a device that already has the
// spec's name: return it (ours, same shape) or refuse.
func (m *Manager) checkExisting(s Spec, d Device) (Device, error) {
	if d.Tag != s.Tag {
		if d.Ours() {
			return Device{}, fmt.Errorf("%w: %s exists, tagged %q, want %q", ErrNotOurs, s.Name, d.Tag, s.Tag)
		}
		return Device{}, fmt.Errorf("%w: %s exists without virtap's tag; remove it by hand if it is a leftover (ip link del %s)", ErrNotOurs, s.Name, s.Name)
	}
	if d.Kind != s.Kind || d.Parent != s.Parent || d.Mode != s.Mode {
		return Device{}, fmt.Errorf("%w: %s is %s on %s mode %s, want %s on %s mode %s",
			ErrMismatch, s.Name, d.Kind, d.Parent, d.Mode, s.Kind, s.Parent, s.Mode)
	}
	if s.Up && !d.Up {
		l, err := m.h.LinkByIndex(d.Index)
		if err == nil {
			err = m.h.LinkSetUp(l)
		}
		if err != nil {
			return Device{}, fmt.Errorf("set %s up: %w", s.Name, err)
		}
		d.Up = true
	}
	m.log.Debug("device exists with our tag", "name", d.Name, "index", d.Index, "tag", d.Tag.String())
	return d, nil
}

func (m *Manager) buildLink(s Spec, parent netlink.Link) netlink.Link {
	la := netlink.NewLinkAttrs() // TxQLen -1: a 0 here would really set txqlen 0
	la.Name = s.Name
	la.ParentIndex = parent.Attrs().Index
	la.Alias = s.Tag.String()
	la.MTU = s.MTU
	la.Index = s.Index
	if s.TxQLen > 0 {
		la.TxQLen = s.TxQLen
	}
	if s.MAC != nil {
		la.HardwareAddr = s.MAC
	}
	switch s.Kind {
	case KindMacvtap:
		// Always an explicit mode: MACVLAN_MODE_DEFAULT sends none and the
		// kernel then picks VEPA.
		return &netlink.Macvtap{Macvlan: netlink.Macvlan{LinkAttrs: la, Mode: macvlanModes[s.Mode]}}
	case KindMacvlan:
		return &netlink.Macvlan{LinkAttrs: la, Mode: macvlanModes[s.Mode]}
	case KindIPvtap:
		return &netlink.IPVtap{IPVlan: netlink.IPVlan{LinkAttrs: la, Mode: ipvlanModes[s.Mode], Flag: ipvlanFlags[s.Flag]}}
	default:
		return &netlink.IPVlan{LinkAttrs: la, Mode: ipvlanModes[s.Mode], Flag: ipvlanFlags[s.Flag]}
	}
}

// Create makes the device described by s, tagged with s.Tag. It is safe to
// re-run: if a device of that name exists with the same tag (and kind,
// parent, mode) it is returned unchanged (set up if s.Up). A device of that
// name without the tag gives ErrNotOurs and is not touched. If anything
// fails after the link was added, the link is deleted again.
func (m *Manager) Create(s Spec) (dev Device, err error) {
	if s.Kind == KindIPvtap || s.Kind == KindIPvlan {
		if s.Flag == "" {
			s.Flag = "bridge"
		}
	}
	if err := s.Validate(); err != nil {
		return Device{}, err
	}
	log := m.log.With("name", s.Name, "kind", s.Kind, "parent", s.Parent, "mode", s.Mode)
	// Round trips are the cost here (RTNL serialises creation): no lookup
	// of the name first (EEXIST says it exists), up at creation, and the
	// index from LinkAdd's own read-back.
	parent, err := m.parent(s.Parent)
	if err != nil {
		if isNotFound(err) {
			if d, ok, ferr := m.Find(s.Name); ferr == nil && ok {
				return m.checkExisting(s, d)
			}
			return Device{}, fmt.Errorf("%w: %s (for %s)", ErrNoParent, s.Parent, s.Name)
		}
		return Device{}, fmt.Errorf("look up parent %s: %w", s.Parent, err)
	}
	link := m.buildLink(s, parent)
	if s.Up {
		link.Attrs().Flags |= net.FlagUp
	}
	err = m.h.LinkAdd(link)
	if err != nil && errors.Is(err, unix.ENODEV) {
		// The cached parent went away or changed: look it up once more.
		m.forgetParent(s.Parent)
		if parent, err = m.parent(s.Parent); err == nil {
			link = m.buildLink(s, parent)
			if s.Up {
				link.Attrs().Flags |= net.FlagUp
			}
			err = m.h.LinkAdd(link)
		}
	}
	if err != nil {
		if errors.Is(err, unix.EEXIST) {
			// The name exists: ours from an earlier run, or not ours.
			if d, ok, ferr := m.Find(s.Name); ferr == nil && ok {
				return m.checkExisting(s, d)
			}
		}
		return Device{}, m.explainAddError(s, parent, err)
	}
	// From here on, any failure removes the link again (revert).
	created := link
	if created.Attrs().Index == 0 { // LinkAdd could not read it back
		if created, err = m.h.LinkByName(s.Name); err != nil {
			if derr := m.h.LinkDel(link); derr != nil && !isNotFound(derr) {
				log.Error("cannot remove half-made device", "error", derr)
			}
			return Device{}, fmt.Errorf("read back %s: %w", s.Name, err)
		}
	}
	defer func() {
		if err != nil {
			if derr := m.h.LinkDel(created); derr != nil && !isNotFound(derr) {
				log.Error("cannot remove half-made device", "error", derr)
				err = errors.Join(err, fmt.Errorf("remove half-made %s: %w", s.Name, derr))
			}
		}
	}()
	if m.afterAdd != nil {
		if err = m.afterAdd(created); err != nil {
			return Device{}, err
		}
	}
	// The kernel ignores IFLA_IFALIAS in RTM_NEWLINK: tag now.
	if err = m.h.LinkSetAlias(created, s.Tag.String()); err != nil {
		return Device{}, fmt.Errorf("tag %s: %w", s.Name, err)
	}
	if created, err = m.h.LinkByIndex(created.Attrs().Index); err != nil {
		return Device{}, fmt.Errorf("read back %s: %w", s.Name, err)
	}
	dev = m.device(created, nil)
	if dev.Tag != s.Tag || dev.Mode != s.Mode || (s.Flag != "" && dev.Flag != s.Flag) {
		err = fmt.Errorf("%s: kernel reports tag %q mode %q flag %q, asked for %q %q %q",
			s.Name, dev.Tag, dev.Mode, dev.Flag, s.Tag, s.Mode, s.Flag)
		return Device{}, err
	}
	if dev.TapPath != "" {
		if err = waitCharDev(dev.TapPath, m.TapWait); err != nil {
			return Device{}, err
		}
	}
	log.Info("created device", "index", dev.Index, "mac", dev.MAC.String(), "tap", dev.TapPath)
	return dev, nil
}

// explainAddError turns the kernel's terse answers into something a user
// can act on.
func (m *Manager) explainAddError(s Spec, parent netlink.Link, err error) error {
	switch {
	case errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTSUP):
		return fmt.Errorf("create %s %s: kernel lacks %s support (module not loaded?): %w", s.Kind, s.Name, s.Kind, err)
	case (s.Kind == KindMacvtap || s.Kind == KindMacvlan) && errors.Is(err, unix.EINVAL):
		if kids, kerr := m.MacvlanChildren(s.Parent); kerr == nil && len(kids) > 0 {
			for _, k := range kids {
				if k.Mode == "passthrough" {
					return fmt.Errorf("create %s on %s: %s already holds the parent in passthrough mode (one device per parent): %w", s.Name, s.Parent, k.Name, err)
				}
			}
			if s.Mode == "passthrough" {
				return fmt.Errorf("create %s on %s in passthrough mode: the parent already has %d macvlan/macvtap devices (passthrough needs it alone): %w", s.Name, s.Parent, len(kids), err)
			}
		}
	case errors.Is(err, unix.EADDRINUSE) || errors.Is(err, unix.EBUSY):
		return fmt.Errorf("create %s on %s: MAC %s already in use on the parent: %w", s.Name, s.Parent, s.MAC, err)
	}
	_ = parent
	return fmt.Errorf("create %s %s on %s mode %s: %w", s.Kind, s.Name, s.Parent, s.Mode, err)
}

// waitCharDev waits until path exists and is a character device (devtmpfs
// creates /dev/tapN asynchronously with the link).
func waitCharDev(path string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	pause := 50 * time.Microsecond
	for {
		fi, err := os.Stat(path)
		if err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("not a character device")
			}
			return fmt.Errorf("%s did not appear within %v (is /dev a devtmpfs?): %w", path, limit, err)
		}
		// devtmpfs usually has the node by now: poll fast, then back off.
		time.Sleep(pause)
		if pause < 2*time.Millisecond {
			pause *= 2
		}
	}
}

// Delete removes the device called name if it carries a virtap tag. A device
// that is already gone is success; an untagged one gives ErrNotOurs.
func (m *Manager) Delete(name string) error {
	l, err := m.h.LinkByName(name)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("look up %s: %w", name, err)
	}
	return m.deleteLink(m.h, l)
}

func (m *Manager) deleteLink(h *netlink.Handle, l netlink.Link) error {
	a := l.Attrs()
	if _, ok := ParseTag(a.Alias); !ok {
		return fmt.Errorf("%w: refusing to delete %s (alias %q)", ErrNotOurs, a.Name, a.Alias)
	}
	// LinkDel addresses the link by index: the very device we checked.
	if err := h.LinkDel(l); err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("delete %s: %w", a.Name, err)
	}
	m.log.Info("deleted device", "name", a.Name, "index", a.Index, "tag", a.Alias)
	return nil
}

// List returns every virtap-tagged device in the namespace.
func (m *Manager) List() ([]Device, error) {
	links, err := m.h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	names := make(map[int]string, len(links))
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	var out []Device
	for _, l := range links {
		if _, ok := ParseTag(l.Attrs().Alias); ok {
			out = append(out, m.device(l, names))
		}
	}
	return out, nil
}

// DeleteTagged deletes every virtap-tagged device whose tag filter accepts
// (nil: all), with up to workers parallel netlink sockets: each link
// deletion waits for an RCU grace period, so parallel requests overlap those
// waits. It returns the names deleted; err joins the failures.
func (m *Manager) DeleteTagged(filter func(Tag) bool, workers int) (deleted []string, err error) {
	links, err := m.h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var todo []netlink.Link
	for _, l := range links {
		t, ok := ParseTag(l.Attrs().Alias)
		if ok && (filter == nil || filter(t)) {
			todo = append(todo, l)
		}
	}
	if len(todo) == 0 {
		return nil, nil
	}
	if workers < 1 {
		workers = 1
	}
	if workers > len(todo) {
		workers = len(todo)
	}
	// Handles for workers: in the Manager's namespace. Without a known
	// namespace (New with a non-nil handle) work serially through m.h.
	// A Manager of the calling thread's namespace (New(log, nil)) always
	// needs handles bound to that namespace: its zero Handle opens sockets
	// in whatever namespace the worker goroutine's thread is in.
	handles := []*netlink.Handle{m.h}
	if (workers > 1 && m.hasNS) || m.current {
		ns := m.ns
		if m.current {
			if ns, err = netns.Get(); err != nil {
				return nil, fmt.Errorf("current netns: %w", err)
			}
			defer ns.Close()
		}
		handles = handles[:0]
		for i := 0; i < workers; i++ {
			h, herr := netlink.NewHandleAt(ns)
			if herr != nil {
				m.log.Warn("fewer delete workers", "workers", i, "error", herr)
				break
			}
			defer h.Close()
			handles = append(handles, h)
		}
		if len(handles) == 0 {
			handles = []*netlink.Handle{m.h}
		}
	}
	jobs := make(chan netlink.Link)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, h := range handles {
		wg.Add(1)
		go func(h *netlink.Handle) {
			defer wg.Done()
			for l := range jobs {
				derr := m.deleteLink(h, l)
				mu.Lock()
				if derr != nil {
					errs = append(errs, derr)
				} else {
					deleted = append(deleted, l.Attrs().Name)
				}
				mu.Unlock()
			}
		}(h)
	}
	for _, l := range todo {
		jobs <- l
	}
	close(jobs)
	wg.Wait()
	m.log.Debug("deleted tagged devices", "count", len(deleted), "workers", len(handles), "failed", len(errs))
	return deleted, errors.Join(errs...)
}
