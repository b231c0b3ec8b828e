package nft

import (
	"encoding/binary"
	"net"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// ---- rule building ----

const (
	ethPIPv4 = 0x0800
	ethPARP  = 0x0806
	ethPIPv6 = 0x86dd

	icmp4Redirect     = 5
	icmp6RA           = 134
	icmp6NS           = 135
	icmp6NA           = 136
	icmp6Redirect     = 137
	icmp6Renumbering  = 138
	ip6HdrFragment    = 44
	dhcpServerPort    = 67
	dhcpClientPort    = 68
	dhcp6ClientPort   = 546
	dhcp6ServerPort   = 547
	bootRequest       = 1
	ndOptSourceLLAddr = 1
	ndOptTargetLLAddr = 2
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

// isUDP and isICMP6 match the transport protocol nftables found (after
// IPv6 extension headers).
func isUDP() []expr.Any   { return []expr.Any{l4proto(), eq([]byte{unix.IPPROTO_UDP})} }
func isICMP6() []expr.Any { return []expr.Any{l4proto(), eq([]byte{unix.IPPROTO_ICMPV6})} }
func icmp6Type(t byte) []expr.Any {
	return append(isICMP6(), th(0, 1), eq([]byte{t}))
}
func udpDst(port uint16) []expr.Any { return append(isUDP(), th(2, 2), eq(be16(port))) }
func udpSrc(port uint16) []expr.Any { return append(isUDP(), th(0, 2), eq(be16(port))) }

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
func ret(match ...expr.Any) rule {
	return rule{exprs: append(match, &expr.Verdict{Kind: expr.VerdictReturn})}
}
func jump(chain string, match ...expr.Any) rule {
	return rule{exprs: append(match, &expr.Verdict{Kind: expr.VerdictJump, Chain: chain})}
}

// builder queues one interface's chains in a transaction.
type builder struct {
	c      *nftables.Conn
	t      *nftables.Table
	s      Spec
	base   string
	mac    []byte
	v4, v6 [][]byte
	open   bool
	learn  *nftables.Set // the learned IPv4 set; nil unless learn = dhcp
	x4, x6 *nftables.Set // the extra addresses (extra.go)
}

func (b *builder) add(ch *nftables.Chain, rs ...rule) {
	for _, r := range rs {
		b.c.AddRule(&nftables.Rule{Table: b.t, Chain: ch, Exprs: r.exprs, UserData: r.ud})
	}
}

func (b *builder) sub(suffix string) *nftables.Chain {
	return b.c.AddChain(&nftables.Chain{Name: b.base + "-" + suffix, Table: b.t})
}

// buildChains queues the chains and rules of one interface. learn is the
// interface's learned-address set (nil: nothing is learned).
func buildChains(c *nftables.Conn, t *nftables.Table, s Spec, learn, x4, x6 *nftables.Set) {
	b := &builder{c: c, t: t, s: s, base: ChainName(s.MAC), mac: []byte(s.MAC), open: s.Learn == LearnOpen, learn: learn, x4: x4, x6: x6}
	for _, a := range s.Addresses {
		a = a.Unmap()
		if a.Is4() {
			x := a.As4()
			b.v4 = append(b.v4, x[:])
		} else {
			x := a.As16()
			b.v6 = append(b.v6, x[:])
		}
	}
	arp, ip4, ip6 := b.arpChain(), b.ip4Chain(), b.ip6Chain()

	// The base chain on the egress hook of the guest's device.
	policy := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: b.base, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookEgress, Priority: nftables.ChainPriorityFilter, Device: s.Device, Policy: &policy})
	b.add(ch,
		rule{[]expr.Any{&expr.Counter{}}, comment(seenComment(s))},
		drop(ReasonMAC, ll(6, 6), neq(b.mac)),
		drop(ReasonEtherType, proto(), neq(be16(ethPIPv4)), neq(be16(ethPARP)), neq(be16(ethPIPv6))),
		jump(arp.Name, proto(), eq(be16(ethPARP))),
		jump(ip4.Name, proto(), eq(be16(ethPIPv4))),
		jump(ip6.Name, proto(), eq(be16(ethPIPv6))))
	if learn != nil {
		b.snoopChain()
	}
}

// arpChain: Ethernet/IPv4 only, sender hardware address the guest's MAC,
// sender IP one of its addresses (fixed or learned; 0.0.0.0 for probes)
// unless the network is open.
func (b *builder) arpChain() *nftables.Chain {
	arp := b.sub("arp")
	b.add(arp,
		drop(ReasonARPFormat, ll(14, 2), neq(be16(1))), // htype Ethernet
		drop(ReasonARPFormat, ll(16, 4), neq([]byte{0x08, 0x00, 6, 4})),
		drop(ReasonARPMAC, ll(22, 6), neq(b.mac)))
	if b.open {
		return arp
	}
	for _, a := range append([][]byte{{0, 0, 0, 0}}, b.v4...) {
		b.add(arp, accept(ll(28, 4), eq(a)))
	}
	b.add(arp, accept(ll(28, 4), in(b.x4)))
	if b.learn != nil {
		b.add(arp, accept(ll(28, 4), b.lookup()))
	}
	b.add(arp, drop(ReasonARPIP))
	return arp
}

// in matches register 1 against a set's elements.
func in(s *nftables.Set) expr.Any {
	return &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID}
}

func (b *builder) lookup() expr.Any {
	return &expr.Lookup{SourceRegister: 1, SetName: b.learn.Name, SetID: b.learn.ID}
}

// ip4Chain: no DHCP server messages (to port 68 from any port, from port
// 67, BOOTREPLYs), no ICMP redirects; sources from the fixed or learned
// set, or 0.0.0.0 for a DHCP client's discover/request.
func (b *builder) ip4Chain() *nftables.Chain {
	ip4 := b.sub("ip4")
	b.add(ip4,
		drop(ReasonDHCPServer, udpDst(dhcpClientPort)...),
		drop(ReasonDHCPServer, udpSrc(dhcpServerPort)...),
		drop(ReasonDHCPServer, append(udpDst(dhcpServerPort), th(8, 1), neq([]byte{bootRequest}))...),
		drop(ReasonRedirect, l4proto(), eq([]byte{unix.IPPROTO_ICMP}), th(0, 1), eq([]byte{icmp4Redirect})))
	if b.learn != nil {
		b.add(ip4, b.releaseRule())
	}
	if b.open {
		return ip4
	}
	for _, a := range b.v4 {
		b.add(ip4, accept(nh(12, 4), eq(a)))
	}
	b.add(ip4, accept(nh(12, 4), in(b.x4)))
	if b.learn != nil {
		b.add(ip4, accept(nh(12, 4), b.lookup()))
	}
	b.add(ip4,
		accept(append([]expr.Any{nh(12, 4), eq([]byte{0, 0, 0, 0})}, udpDst(dhcpServerPort)...)...),
		drop(ReasonIPv4Source))
	return ip4
}

// ip6Chain: fragments that hide or carry ICMPv6, router advertisements,
// redirects, router renumbering and DHCPv6 server messages are dropped;
// neighbour discovery is checked; sources are the fixed addresses, any
// address whose interface ID is the EUI-64 of the guest's MAC (its
// link-local and SLAAC addresses), or :: for ICMPv6 (duplicate address
// detection, MLD) unless the network is open.
func (b *builder) ip6Chain() *nftables.Chain {
	frag := b.sub("frag")
	// A fragment passes only when nftables can see its upper-layer
	// protocol and that protocol is not ICMPv6 (RFC 6980: ND is never
	// fragmented; RFC 7112: the whole header chain is in the first
	// fragment). When the chain cannot be followed, meta l4proto does
	// not match at all and the fragment falls through to the drop.
	b.add(frag,
		ret(l4proto(), neq([]byte{unix.IPPROTO_ICMPV6})),
		drop(ReasonIPv6Frag))
	ns, na := b.ndChains()

	ip6 := b.sub("ip6")
	b.add(ip6,
		jump(frag.Name, &expr.Exthdr{Op: expr.ExthdrOpIpv6, Type: ip6HdrFragment, Len: 1, DestRegister: 1,
			Flags: unix.NFT_EXTHDR_F_PRESENT}, eq([]byte{1})),
		drop(ReasonRA, icmp6Type(icmp6RA)...),
		drop(ReasonRedirect, icmp6Type(icmp6Redirect)...),
		drop(ReasonRenumbering, icmp6Type(icmp6Renumbering)...),
		drop(ReasonDHCPServer, udpDst(dhcp6ClientPort)...),
		drop(ReasonDHCPServer, udpSrc(dhcp6ServerPort)...),
		jump(ns.Name, icmp6Type(icmp6NS)...),
		jump(na.Name, icmp6Type(icmp6NA)...))
	if b.open {
		return ip6
	}
	b.add(ip6, b.own6(nh(8, 16), nh(16, 8), expr.VerdictAccept)...)
	b.add(ip6,
		accept(append([]expr.Any{nh(8, 16), eq(make([]byte, 16))}, isICMP6()...)...),
		drop(ReasonIPv6Source))
	return ip6
}

// ndChains: neighbour solicitations and advertisements carry the guest's
// MAC in their first link-layer address option; an advertisement's target
// (and a duplicate-address-detection solicitation's) is the guest's own.
func (b *builder) ndChains() (ns, na *nftables.Chain) {
	ns, na = b.sub("ns"), b.sub("na")
	b.add(ns, drop(ReasonNDLLAddr, th(24, 1), eq([]byte{ndOptSourceLLAddr}), th(26, 6), neq(b.mac)))
	b.add(na, drop(ReasonNDLLAddr, th(24, 1), eq([]byte{ndOptTargetLLAddr}), th(26, 6), neq(b.mac)))
	if b.open {
		return ns, na
	}
	// A solicitation from an address asks about someone else: fine (the
	// source is checked later). From :: it claims the target (DAD).
	b.add(ns, ret(nh(8, 16), neq(make([]byte, 16))))
	for _, ch := range []*nftables.Chain{ns, na} {
		b.add(ch, b.own6(th(8, 16), th(16, 8), expr.VerdictReturn)...)
		b.add(ch, drop(ReasonNDTarget))
	}
	return ns, na
}

// own6 gives verdict to an IPv6 address (loaded by full) that is one of
// the guest's: a fixed one, or any whose interface ID (loaded by iid) is
// the modified EUI-64 of the guest's MAC.
func (b *builder) own6(full, iid expr.Any, verdict expr.VerdictKind) []rule {
	v := func(m ...expr.Any) rule { return rule{exprs: append(m, &expr.Verdict{Kind: verdict})} }
	var rs []rule
	for _, a := range b.v6 {
		rs = append(rs, v(full, eq(a)))
	}
	rs = append(rs, v(full, in(b.x6)))
	return append(rs, v(iid, eq(EUI64(b.s.MAC))))
}

// EUI64 is the modified EUI-64 interface identifier of a MAC (RFC 4291
// appendix A): the lower 64 bits of the guest's SLAAC and default
// link-local addresses.
func EUI64(mac net.HardwareAddr) []byte {
	return []byte{mac[0] ^ 0x02, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]}
}
