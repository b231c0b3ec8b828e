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
	"encoding/binary"
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
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/virtap/virtap/internal/netdev"
)

// TablePrefix starts the name of every nftables table virtap owns.
const TablePrefix = "virtap-"

// Reasons a frame is dropped; each names one counter per interface.
const (
	ReasonSeen       = "seen"        // not a drop: every frame the guest sent
	ReasonMAC        = "mac"         // Ethernet source is not the guest's MAC
	ReasonEtherType  = "ethertype"   // not IPv4, ARP or IPv6 (VLAN tags, LLDP, ...)
	ReasonARPFormat  = "arp-format"  // ARP that is not Ethernet/IPv4
	ReasonARPMAC     = "arp-mac"     // ARP sender hardware address is not the guest's
	ReasonARPIP      = "arp-ip"      // ARP sender IP is not one of the guest's
	ReasonIPv4Source = "ip4-source"  // IPv4 source is not one of the guest's
	ReasonDHCPServer = "dhcp-server" // DHCP/DHCPv6 server replies from a guest
	ReasonRA         = "ra"          // IPv6 router advertisement from a guest
	ReasonIPv6Source = "ip6-source"  // IPv6 source is not one of the guest's
	ReasonNDTarget   = "nd-target"   // neighbour advertisement for a foreign address
	ReasonNDLLAddr   = "nd-lladdr"   // neighbour advertisement with a foreign link-layer address
)

// Spec is one untrusted guest interface's filter.
type Spec struct {
	Domain uuid.UUID
	MAC    net.HardwareAddr
	// Device is the host-side device whose egress carries the guest's
	// frames: its macvtap or ipvtap.
	Device string
	// Addresses the guest may use as source. Empty for a family means
	// "unknown": that family's source address is not checked (the MAC is).
	// IPv6 link-local sources (fe80::/10) and the unspecified address (for
	// DHCP and duplicate address detection) are always allowed.
	Addresses []netip.Addr
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
	for _, a := range s.Addresses {
		if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || a.Zone() != "" {
			return fmt.Errorf("filter: address %v cannot be a guest's source address", a)
		}
	}
	return nil
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
	c, err := nftables.New(m.opts...)
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
	want := seenComment(s)
	if len(old) > 0 && m.current(c, t, base) == want {
		// Same device, MAC and addresses: keep the rules and their counters.
		m.log.Debug("filter unchanged", "domain", s.Domain.String(), "mac", s.MAC.String(), "device", s.Device)
		return nil
	}
	c.AddTable(t)
	delChains(c, t, old)
	buildChains(c, t, s)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: install filter for %s on %s: %w", s.MAC, s.Device, err)
	}
	m.log.Info("filter installed", "uuid", s.Domain.String(), "mac", s.MAC.String(), "device", s.Device,
		"addresses", len(s.Addresses), "replaced", len(old) > 0)
	return nil
}

// seenComment is the comment of the first rule of an interface's base
// chain: it names the device and a fingerprint of the whole spec, so that
// re-applying an unchanged spec keeps the counters.
func seenComment(s Spec) string {
	h := sha256.New()
	fmt.Fprintf(h, "v1\x00%s\x00%s\x00%s", s.Domain, s.MAC, s.Device)
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

// Dropped sums the drop counters of one interface (everything but "seen").
func Dropped(cs []Counter, mac net.HardwareAddr) map[string]uint64 {
	out := map[string]uint64{}
	for _, c := range cs {
		if c.MAC == strings.ToLower(mac.String()) && c.Reason != ReasonSeen {
			out[c.Reason] += c.Packets
		}
	}
	return out
}

// ---- rule building ----

const (
	ethPIPv4 = 0x0800
	ethPARP  = 0x0806
	ethPIPv6 = 0x86dd
)

func be16(v uint16) []byte { b := make([]byte, 2); binary.BigEndian.PutUint16(b, v); return b }

func comment(reason string) []byte {
	return userdata.AppendString(nil, userdata.TypeComment, "virtap:"+reason)
}

func ll(off, n uint32) expr.Any {
	return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: off, Len: n}
}
func nh(off, n uint32) expr.Any {
	return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}
}
func th(off, n uint32) expr.Any {
	return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: n}
}
func eq(b []byte) expr.Any  { return &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b} }
func neq(b []byte) expr.Any { return &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: b} }
func proto() expr.Any       { return &expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1} }
func l4proto() expr.Any     { return &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1} }

// rule is one rule's expressions and comment.
type rule struct {
	exprs []expr.Any
	ud    []byte
}

func drop(reason string, match ...expr.Any) rule {
	return rule{append(match, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}), comment(reason)}
}
func accept(match ...expr.Any) rule {
	return rule{exprs: append(match, &expr.Verdict{Kind: expr.VerdictAccept})}
}
func jump(chain string, match ...expr.Any) rule {
	return rule{exprs: append(match, &expr.Verdict{Kind: expr.VerdictJump, Chain: chain})}
}

// buildChains queues the chains and rules of one interface.
func buildChains(c *nftables.Conn, t *nftables.Table, s Spec) {
	base := ChainName(s.MAC)
	var v4, v6 [][]byte
	for _, a := range s.Addresses {
		a = a.Unmap()
		if a.Is4() {
			b := a.As4()
			v4 = append(v4, b[:])
		} else {
			b := a.As16()
			v6 = append(v6, b[:])
		}
	}
	mac := []byte(s.MAC)
	add := func(ch *nftables.Chain, r rule) {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: r.exprs, UserData: r.ud})
	}
	sub := func(suffix string) *nftables.Chain {
		return c.AddChain(&nftables.Chain{Name: base + "-" + suffix, Table: t})
	}

	// ARP: Ethernet/IPv4 only, sender hardware address is the guest's MAC,
	// sender IP one of its addresses (0.0.0.0 for probes) when known.
	arp := sub("arp")
	add(arp, drop(ReasonARPFormat, ll(14, 2), neq(be16(1)))) // htype Ethernet
	add(arp, drop(ReasonARPFormat, ll(16, 4), neq([]byte{0x08, 0x00, 6, 4})))
	add(arp, drop(ReasonARPMAC, ll(22, 6), neq(mac)))
	if len(v4) > 0 {
		for _, a := range append([][]byte{{0, 0, 0, 0}}, v4...) {
			add(arp, accept(ll(28, 4), eq(a)))
		}
		add(arp, drop(ReasonARPIP))
	}

	// IPv4: no DHCP server replies; sources from the known set, or 0.0.0.0
	// for a DHCP client's discover/request.
	ip4 := sub("ip4")
	add(ip4, drop(ReasonDHCPServer, l4proto(), eq([]byte{unix.IPPROTO_UDP}), th(0, 2), eq(be16(67))))
	if len(v4) > 0 {
		for _, a := range v4 {
			add(ip4, accept(nh(12, 4), eq(a)))
		}
		add(ip4, accept(nh(12, 4), eq([]byte{0, 0, 0, 0}), l4proto(), eq([]byte{unix.IPPROTO_UDP}), th(2, 2), eq(be16(67))))
		add(ip4, drop(ReasonIPv4Source))
	}

	// Neighbour advertisements: the target is one of the guest's addresses
	// (or link-local) when known; a first option "target link-layer
	// address" must carry the guest's MAC.
	nd := sub("nd")
	add(nd, drop(ReasonNDLLAddr, th(24, 1), eq([]byte{2}), th(26, 6), neq(mac)))
	if len(v6) > 0 {
		for _, a := range v6 {
			add(nd, accept(th(8, 16), eq(a)))
		}
		add(nd, accept(th(8, 16), linkLocal(), eq(llPrefix)))
		add(nd, drop(ReasonNDTarget))
	}

	// IPv6: no router advertisements, no DHCPv6 server replies; neighbour
	// advertisements checked; sources from the known set, link-local, or
	// :: (duplicate address detection).
	ip6 := sub("ip6")
	add(ip6, drop(ReasonRA, l4proto(), eq([]byte{unix.IPPROTO_ICMPV6}), th(0, 1), eq([]byte{134})))
	add(ip6, drop(ReasonDHCPServer, l4proto(), eq([]byte{unix.IPPROTO_UDP}), th(0, 2), eq(be16(547))))
	add(ip6, jump(nd.Name, l4proto(), eq([]byte{unix.IPPROTO_ICMPV6}), th(0, 1), eq([]byte{136})))
	if len(v6) > 0 {
		for _, a := range v6 {
			add(ip6, accept(nh(8, 16), eq(a)))
		}
		add(ip6, accept(nh(8, 16), linkLocal(), eq(llPrefix)))
		add(ip6, accept(nh(8, 16), eq(make([]byte, 16))))
		add(ip6, drop(ReasonIPv6Source))
	}

	// The base chain on the egress hook of the guest's device.
	policy := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: base, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookEgress, Priority: nftables.ChainPriorityFilter, Device: s.Device, Policy: &policy})
	add(ch, rule{[]expr.Any{&expr.Counter{}}, comment(seenComment(s))})
	add(ch, drop(ReasonMAC, ll(6, 6), neq(mac)))
	add(ch, drop(ReasonEtherType, proto(), neq(be16(ethPIPv4)), neq(be16(ethPARP)), neq(be16(ethPIPv6))))
	add(ch, jump(arp.Name, proto(), eq(be16(ethPARP))))
	add(ch, jump(ip4.Name, proto(), eq(be16(ethPIPv4))))
	add(ch, jump(ip6.Name, proto(), eq(be16(ethPIPv6))))
}

// llPrefix is fe80::/10 after masking with linkLocal.
var llPrefix = append([]byte{0xfe, 0x80}, make([]byte, 14)...)

func linkLocal() expr.Any {
	mask := append([]byte{0xff, 0xc0}, make([]byte, 14)...)
	return &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 16, Mask: mask, Xor: make([]byte, 16)}
}
