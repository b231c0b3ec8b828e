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
	// KindVLAN is an 802.1Q VLAN device (module 8021q) on a parent.
	KindVLAN = "vlan"
)

// Device is a link as read back from the kernel.
type Device struct {
	Name   string
	Index  int
	Kind   string // link type as the kernel reports it ("macvtap", "veth", ...)
	Parent string // lower device name, "" if none or not in this namespace
	Mode   string // in the spelling of Spec.Mode ("passthrough", not "passthru")
	Flag   string // ipvlan/ipvtap only
	VLANID int    // vlan only
	MAC    net.HardwareAddr
	MTU    int
	Tag    Tag // zero if not virtap's
	Up     bool
	// TapPath is /dev/tap<Index> for macvtap and ipvtap, "" otherwise.
	TapPath string
}

// Ours reports whether the device carries a virtap tag.
func (d Device) Ours() bool { return !d.Tag.IsZero() }

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
	case *netlink.Vlan:
		d.VLANID = v.VlanId
	}
	return d
}

func tapPath(index int) string { return fmt.Sprintf("/dev/tap%d", index) }

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
