// Package nft installs virtap's anti-spoofing rules for untrusted guest
// interfaces: nftables in the netdev family, through netlink
// (github.com/google/nftables), never the nft binary.
//
// Where the rules sit (measured on a 6.18 kernel, see SECURITY.md): a frame
// the guest writes to /dev/tapN is handed to dev_queue_xmit on the guest's
// own macvtap (or ipvtap) device, so it passes the netfilter egress hook of
// THAT device before macvlan decides anything: it is seen there whether it
// then leaves by the parent, is forwarded to a sibling macvtap in bridge
// mode, or is flooded to both. The ingress hook of the guest's device never
// sees the guest's frames. One base chain on the egress hook of the guest's
// device therefore filters everything the guest sends, and every frame on
// that hook comes from that guest, so no rule needs to guess whose frame it
// is.
//
// Layout: one table per domain, "virtap-<uuid>" (family netdev), so that a
// release removes all of a domain's rules in one step and no name a guest
// owner chooses reaches nftables. Per interface, chains named from the MAC
// only ("g525400123456" and its "-arp", "-ip4", "-ip6", "-nd" helpers).
// Every drop rule has a counter and a comment "virtap:<reason>"; Counters
// reads them back.
package nft

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/virtap/virtap/internal/netdev"
)

// TablePrefix starts the name of every nftables table virtap owns.
const TablePrefix = "virtap-"

// Reasons a frame is dropped; each names one counter per interface.
const (
	ReasonSeen        = "seen"        // not a drop: every frame the guest sent
	ReasonMAC         = "mac"         // Ethernet source is not the guest's MAC
	ReasonEtherType   = "ethertype"   // not IPv4, ARP or IPv6 (VLAN tags, LLDP, ...)
	ReasonARPFormat   = "arp-format"  // ARP that is not Ethernet/IPv4
	ReasonARPMAC      = "arp-mac"     // ARP sender hardware address is not the guest's
	ReasonARPIP       = "arp-ip"      // ARP sender IP is not one of the guest's
	ReasonIPv4Source  = "ip4-source"  // IPv4 source is not one of the guest's
	ReasonDHCPServer  = "dhcp-server" // DHCP/DHCPv6 server messages: to port 68/546, from 67/547, BOOTREPLY
	ReasonRA          = "ra"          // IPv6 router advertisement from a guest
	ReasonRedirect    = "redirect"    // ICMP or ICMPv6 redirect from a guest
	ReasonRenumbering = "renumbering" // ICMPv6 router renumbering from a guest
	ReasonIPv6Frag    = "ip6-frag"    // IPv6 fragment of ICMPv6, or whose header chain cannot be followed
	ReasonIPv6Source  = "ip6-source"  // IPv6 source is not one of the guest's
	ReasonNDTarget    = "nd-target"   // NA (or DAD NS) for an address that is not the guest's
	ReasonNDLLAddr    = "nd-lladdr"   // NS/NA whose link-layer address option is not the guest's MAC
	ReasonLearned     = "learned"     // not a drop: DHCPACKs toward the guest that bound an address
)

// How an interface's addresses are known (the network's learn key).
const (
	// LearnDHCP: the fixed addresses plus what the LAN's DHCP server acks
	// to the guest's MAC, for the lease time (DHCP snooping, learn.go).
	LearnDHCP = "dhcp"
	// LearnNone: only the fixed addresses (and, for IPv6, the addresses
	// derived from the MAC). The zero value of Spec.Learn means this.
	LearnNone = "none"
	// LearnOpen: source addresses are not bound at all; the MAC, ARP and
	// ND link-layer addresses and the DHCP and router guards still apply.
	LearnOpen = "open"
)

// LearnValues lists the allowed values of Spec.Learn (and the policy key).
var LearnValues = []string{LearnDHCP, LearnNone, LearnOpen}

// Spec is one untrusted guest interface's filter.
type Spec struct {
	Domain uuid.UUID
	MAC    net.HardwareAddr
	// Device is the host-side device whose egress carries the guest's
	// frames: its macvtap or ipvtap.
	Device string
	// Addresses the guest may use as source (fixed, or leased by
	// virtap). Besides these, a guest may use: 0.0.0.0 toward a DHCP
	// server, :: for ICMPv6 (duplicate address detection, MLD), any IPv6
	// address whose interface ID is the EUI-64 of its MAC (its link-local
	// and SLAAC addresses), and with Learn = LearnDHCP what DHCP bound.
	Addresses []netip.Addr
	// Learn is LearnDHCP, LearnNone ("" means the same) or LearnOpen.
	Learn string
	// Extras are addresses the guest may use besides these (containers it
	// runs on ipvlan, extra.go): the elements of the interface's sets,
	// which AddExtras and DelExtras change at run time. Apply makes the
	// sets hold exactly these.
	Extras []netip.Addr
}

// Validate checks a spec before anything is sent to the kernel.
func (s Spec) Validate() error {
	if s.Domain == uuid.Nil {
		return errors.New("filter: no domain uuid")
	}
	if len(s.MAC) != 6 {
		return fmt.Errorf("filter: MAC %q is not a 6-byte Ethernet address", s.MAC.String())
	}
	if s.MAC[0]&1 == 1 {
		return fmt.Errorf("filter: MAC %s is a multicast address", s.MAC)
	}
	if err := netdev.ValidateName(s.Device); err != nil {
		return fmt.Errorf("filter: device: %w", err)
	}
	switch s.Learn {
	case "", LearnDHCP, LearnNone, LearnOpen:
	default:
		return fmt.Errorf("filter: learn %q is not one of %s", s.Learn, strings.Join(LearnValues, ", "))
	}
	for _, a := range s.Addresses {
		if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || a.Zone() != "" {
			return fmt.Errorf("filter: address %v cannot be a guest's source address", a)
		}
	}
	return checkExtras(s.Extras)
}

func (s Spec) learn() string {
	if s.Learn == "" {
		return LearnNone
	}
	return s.Learn
}

// TableName is the nftables table that holds a domain's filters.
func TableName(domain uuid.UUID) string { return TablePrefix + domain.String() }

// ChainName is the base chain of one guest interface (from its MAC only).
func ChainName(mac net.HardwareAddr) string { return "g" + hex.EncodeToString(mac) }

// Manager applies and removes filters in one network namespace.
type Manager struct {
	log  hclog.Logger
	opts []nftables.ConnOption
}

// New returns a manager for the network namespace of the calling thread.
func New(log hclog.Logger) *Manager {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Manager{log: log.Named("filter")}
}

// NewAt returns a manager for the network namespace ns (tests, tools).
func NewAt(log hclog.Logger, ns netns.NsHandle) *Manager {
	m := New(log)
	m.opts = []nftables.ConnOption{nftables.WithNetNSFd(int(ns))}
	return m
}

func (m *Manager) conn() (*nftables.Conn, error) {
	// A filter with DHCP snooping is about 150 rules in one transaction:
	// the kernel's acknowledgements overflow the default receive buffer.
	opts := append([]nftables.ConnOption{nftables.WithSockOptions(func(c *netlink.Conn) error {
		return c.SetReadBuffer(1 << 20)
	})}, m.opts...)
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return c, nil
}

func table(domain uuid.UUID) *nftables.Table {
	return &nftables.Table{Name: TableName(domain), Family: nftables.TableFamilyNetdev}
}

// chainsOf lists the chains of a domain's table that belong to the
// interface with chain name base (base itself and base-*); nil if the table
// does not exist.
func chainsOf(c *nftables.Conn, t *nftables.Table, base string) ([]*nftables.Chain, error) {
	all, err := c.ListChainsOfTableFamily(nftables.TableFamilyNetdev)
	if err != nil {
		return nil, fmt.Errorf("nftables: list chains: %w", err)
	}
	var out []*nftables.Chain
	for _, ch := range all {
		if ch.Table == nil || ch.Table.Name != t.Name {
			continue
		}
		if base == "" || ch.Name == base || strings.HasPrefix(ch.Name, base+"-") {
			out = append(out, ch)
		}
	}
	return out, nil
}

// delChains queues the removal of chains: flush all first, so that no jump
// into a chain that is deleted remains in the same transaction.
func delChains(c *nftables.Conn, t *nftables.Table, chains []*nftables.Chain) {
	for _, ch := range chains {
		c.FlushChain(&nftables.Chain{Name: ch.Name, Table: t})
	}
	// Base chains (the only ones that jump) go last.
	sort.SliceStable(chains, func(i, j int) bool {
		return strings.Contains(chains[i].Name, "-") && !strings.Contains(chains[j].Name, "-")
	})
	for _, ch := range chains {
		c.DelChain(&nftables.Chain{Name: ch.Name, Table: t})
	}
}

// Apply installs (or replaces, atomically) the filter of one interface.
// Running it again with the same spec is safe; with another device or
// addresses it replaces the old rules in the same transaction.
func (m *Manager) Apply(s Spec) error {
	if err := s.Validate(); err != nil {
		return err
	}
	c, err := m.conn()
	if err != nil {
		return err
	}
	t := table(s.Domain)
	base := ChainName(s.MAC)
	old, err := chainsOf(c, t, base)
	if err != nil {
		return err
	}
	have, err := setNames(c, t)
	if err != nil {
		return err
	}
	want := seenComment(s)
	if len(old) > 0 && m.current(c, t, base) == want {
		// Same device, MAC and addresses: keep the rules and their
		// counters; only the extra addresses are made to match.
		if _, _, err := extraSets(c, t, base, have, s.Extras); err != nil {
			return err
		}
		if err := c.Flush(); err != nil {
			return fmt.Errorf("nftables: extra addresses of %s: %w", s.MAC, err)
		}
		m.log.Debug("filter unchanged", "domain", s.Domain.String(), "mac", s.MAC.String(), "device", s.Device, "extras", len(s.Extras))
		return nil
	}
	c.AddTable(t)
	delChains(c, t, old)
	learn, err := m.learnedSet(c, t, base, s.learn() == LearnDHCP)
	if err != nil {
		return err
	}
	x4, x6, err := extraSets(c, t, base, have, s.Extras)
	if err != nil {
		return err
	}
	buildChains(c, t, s, learn, x4, x6)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: install filter for %s on %s: %w", s.MAC, s.Device, err)
	}
	m.log.Info("filter installed", "uuid", s.Domain.String(), "mac", s.MAC.String(), "device", s.Device,
		"addresses", len(s.Addresses), "extras", len(s.Extras), "replaced", len(old) > 0)
	return nil
}

// learnedSet queues what an interface's learned set needs: kept (with the
// addresses it holds) when it exists and is wanted, made when wanted and
// missing, deleted when no longer wanted. nil when not wanted.
func (m *Manager) learnedSet(c *nftables.Conn, t *nftables.Table, base string, want bool) (*nftables.Set, error) {
	var have *nftables.Set
	var sets []*nftables.Set
	if _, err := c.ListTableOfFamily(t.Name, t.Family); err == nil {
		if sets, err = c.GetSets(t); err != nil {
			return nil, fmt.Errorf("nftables: list sets of %s: %w", t.Name, err)
		}
	} else if !errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("nftables: look up table %s: %w", t.Name, err)
	}
	for _, st := range sets {
		if st.Name == LearnedSetName(base) {
			have = st
		}
	}
	switch {
	case want && have != nil:
		return &nftables.Set{Table: t, Name: have.Name}, nil
	case want:
		st := newLearnedSet(t, base)
		if err := c.AddSet(st, nil); err != nil {
			return nil, fmt.Errorf("nftables: learned set: %w", err)
		}
		return st, nil
	case have != nil:
		c.DelSet(&nftables.Set{Table: t, Name: have.Name})
	}
	return nil, nil
}

// seenComment is the comment of the first rule of an interface's base
// chain: it names the device and a fingerprint of the whole spec, so that
// re-applying an unchanged spec keeps the counters.
func seenComment(s Spec) string {
	h := sha256.New()
	fmt.Fprintf(h, "v3\x00%s\x00%s\x00%s\x00%s", s.Domain, s.MAC, s.Device, s.learn())
	as := append([]netip.Addr(nil), s.Addresses...)
	sort.Slice(as, func(i, j int) bool { return as[i].Less(as[j]) })
	for _, a := range as {
		fmt.Fprintf(h, "\x00%s", a.Unmap())
	}
	return ReasonSeen + ":" + s.Device + ":" + hex.EncodeToString(h.Sum(nil))[:16]
}

// current is the seen comment of an installed interface ("" if none).
func (m *Manager) current(c *nftables.Conn, t *nftables.Table, base string) string {
	rules, err := c.GetRules(t, &nftables.Chain{Name: base, Table: t})
	if err != nil || len(rules) == 0 {
		return ""
	}
	got, _ := userdata.GetString(rules[0].UserData, userdata.TypeComment)
	return strings.TrimPrefix(got, "virtap:")
}

// RemoveInterface removes the filter of one interface; absent is success.
func (m *Manager) RemoveInterface(domain uuid.UUID, mac net.HardwareAddr) error {
	c, err := m.conn()
	if err != nil {
		return err
	}
	t := table(domain)
	old, err := chainsOf(c, t, ChainName(mac))
	if err != nil || len(old) == 0 {
		return err
	}
	delChains(c, t, old)
	if _, err := m.learnedSet(c, t, ChainName(mac), false); err != nil {
		return err
	}
	have, err := setNames(c, t)
	if err != nil {
		return err
	}
	delExtraSets(c, t, ChainName(mac), have)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: remove filter for %s: %w", mac, err)
	}
	return nil
}

// Remove deletes a domain's table and every rule in it; a domain without
// filters is success.
func (m *Manager) Remove(domain uuid.UUID) error {
	c, err := m.conn()
	if err != nil {
		return err
	}
	t := table(domain)
	if _, err := c.ListTableOfFamily(t.Name, t.Family); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("nftables: look up table %s: %w", t.Name, err)
	}
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil // removed by a concurrent run
		}
		return fmt.Errorf("nftables: delete table %s: %w", t.Name, err)
	}
	m.log.Debug("filters removed", "domain", domain.String())
	return nil
}

// Domains lists the domains that have a filter table here (for gc and
// status). Tables whose names are not "virtap-<uuid>" are not virtap's and
// are never listed.
func (m *Manager) Domains() ([]uuid.UUID, error) {
	c, err := m.conn()
	if err != nil {
		return nil, err
	}
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyNetdev)
	if err != nil {
		return nil, fmt.Errorf("nftables: list tables: %w", err)
	}
	var out []uuid.UUID
	for _, t := range ts {
		if u, ok := domainOf(t.Name); ok {
			out = append(out, u)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, nil
}

func domainOf(table string) (uuid.UUID, bool) {
	rest, ok := strings.CutPrefix(table, TablePrefix)
	if !ok || len(rest) != 36 {
		return uuid.Nil, false
	}
	u, err := uuid.Parse(rest)
	return u, err == nil && u.String() == rest
}

// Counter is one counter of one interface's filter.
type Counter struct {
	MAC     string // lowercase colon form
	Device  string // from the "seen" rule
	Reason  string
	Packets uint64
	Bytes   uint64
}

// Counters reads a domain's counters, sorted by MAC and reason; none if the
// domain has no filters. Counters of one reason in several rules are summed.
func (m *Manager) Counters(domain uuid.UUID) ([]Counter, error) {
	c, err := m.conn()
	if err != nil {
		return nil, err
	}
	t := table(domain)
	chains, err := chainsOf(c, t, "")
	if err != nil {
		return nil, err
	}
	type key struct{ mac, reason string }
	sum := map[key]*Counter{}
	devs := map[string]string{}
	for _, ch := range chains {
		name, _, _ := strings.Cut(ch.Name, "-")
		b, err := hex.DecodeString(strings.TrimPrefix(name, "g"))
		if err != nil || len(b) != 6 {
			continue
		}
		mac := net.HardwareAddr(b).String()
		rules, err := c.GetRules(t, &nftables.Chain{Name: ch.Name, Table: t})
		if err != nil {
			return nil, fmt.Errorf("nftables: rules of %s: %w", ch.Name, err)
		}
		for _, r := range rules {
			comment, ok := userdata.GetString(r.UserData, userdata.TypeComment)
			if !ok || !strings.HasPrefix(comment, "virtap:") {
				continue
			}
			parts := strings.SplitN(comment, ":", 4)
			reason := parts[1]
			if reason == ReasonSeen && len(parts) >= 3 {
				devs[mac] = parts[2]
			}
			for _, e := range r.Exprs {
				if ce, ok := e.(*expr.Counter); ok {
					k := key{mac, reason}
					if sum[k] == nil {
						sum[k] = &Counter{MAC: mac, Reason: reason}
					}
					sum[k].Packets += ce.Packets
					sum[k].Bytes += ce.Bytes
				}
			}
		}
	}
	out := make([]Counter, 0, len(sum))
	for _, v := range sum {
		v.Device = devs[v.MAC]
		out = append(out, *v)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].MAC != out[j].MAC {
			return out[i].MAC < out[j].MAC
		}
		return out[i].Reason < out[j].Reason
	})
	return out, nil
}

// Dropped sums the drop counters of one interface (everything but "seen"
// and "learned").
func Dropped(cs []Counter, mac net.HardwareAddr) map[string]uint64 {
	out := map[string]uint64{}
	for _, c := range cs {
		if c.MAC == strings.ToLower(mac.String()) && c.Reason != ReasonSeen && c.Reason != ReasonLearned {
			out[c.Reason] += c.Packets
		}
	}
	return out
}

// Installed maps the MAC (lowercase colon form) of every interface of a
// domain that has a filter to the device it is bound to.
func (m *Manager) Installed(domain uuid.UUID) (map[string]string, error) {
	cs, err := m.Counters(domain)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, c := range cs {
		if c.Reason == ReasonSeen {
			out[c.MAC] = c.Device
		}
	}
	return out, nil
}
