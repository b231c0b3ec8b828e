package nft

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/uuid"
	"golang.org/x/sys/unix"
)

// DHCP snooping in the kernel (learn = "dhcp"): no daemon.
//
// Where the DHCPACK can be seen (measured, TestLearnedAddressAfterDHCPACK
// and SECURITY.md): a frame toward the guest reaches its macvtap (or
// ipvtap) device through that device's receive path (macvlan hands
// unicast frames over with RX_HANDLER_ANOTHER and broadcasts with
// netif_rx), so the netfilter INGRESS hook of the guest's own device sees
// every frame the guest is about to read from /dev/tapN, whoever sent it,
// and nothing else. A second base chain there ("g<mac>-in") matches a
// DHCPACK for the guest's MAC (UDP 67 -> 68, BOOTREPLY, chaddr = the
// guest's MAC, option 53 = 5 first, as every common server writes it) and
// adds its yiaddr to the interface's set "g<mac>-l4" with the lease time
// as the element's timeout. The guest's own frames can never feed the set:
// its egress chain drops everything it sends to port 68.
//
// nftables takes an element timeout only as a constant, so the lease time
// (option 51) is read at the three places the common servers put it
// (right after option 53; after 53 and 54, as ISC dhcpd, dnsmasq and
// busybox udhcpd do; after 53, 58 and 59, as Windows does) and rounded
// UP to the next of leaseSteps: the binding lasts the lease and at most
// that step longer. An ACK with option 51 elsewhere binds for
// fallbackLease; an infinite lease binds until the filter is removed.
// Every ACK (renewals too) refreshes the timeout. A DHCPRELEASE from the
// guest deletes its element.

// LearnedSetName is the set of addresses learned for an interface.
func LearnedSetName(base string) string { return base + "-l4" }

var leaseSteps = []time.Duration{
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 20 * time.Minute,
	30 * time.Minute, 45 * time.Minute, time.Hour, 90 * time.Minute, 2 * time.Hour, 3 * time.Hour,
	4 * time.Hour, 6 * time.Hour, 8 * time.Hour, 12 * time.Hour, 16 * time.Hour, 24 * time.Hour,
	36 * time.Hour, 48 * time.Hour, 72 * time.Hour, 96 * time.Hour, 7 * 24 * time.Hour,
	14 * 24 * time.Hour, 30 * 24 * time.Hour, 60 * 24 * time.Hour, 90 * 24 * time.Hour,
}

const (
	fallbackLease = 24 * time.Hour
	dynsetDelete  = 2 // NFT_DYNSET_OP_DELETE

	bootp    = 8               // UDP header length: BOOTP starts here
	yiaddr   = bootp + 16      // "your" address
	ciaddr   = bootp + 12      // client address
	chaddr   = bootp + 28      // client hardware address
	cookie   = bootp + 236     // magic cookie, then options
	options  = cookie + 4      // first option
	bootOpRe = 2               // BOOTREPLY
	optType  = 53              // DHCP message type
	optLease = 51              // lease time
	ack      = 5               // DHCPACK
	release  = 7               // DHCPRELEASE
	magic    = 0x63825363      // RFC 2131
	leaseOpt = optLease<<8 | 4 // option 51, length 4
)

// leaseLayouts: where option 51 starts, given the options before it
// (each a type and a length byte pair, checked in the packet).
var leaseLayouts = []struct {
	before [][2]byte // options (type, length) between option 53 and 51
}{
	{nil},
	{[][2]byte{{54, 4}}},
	{[][2]byte{{58, 4}, {59, 4}}},
}

func be32(v uint32) []byte { b := make([]byte, 4); binary.BigEndian.PutUint32(b, v); return b }

// newLearnedSet describes an interface's learned IPv4 set.
func newLearnedSet(t *nftables.Table, base string) *nftables.Set {
	return &nftables.Set{Table: t, Name: LearnedSetName(base), KeyType: nftables.TypeIPAddr, HasTimeout: true, Dynamic: true}
}

func (b *builder) dynset(op uint32, timeout time.Duration) expr.Any {
	return &expr.Dynset{SrcRegKey: 1, SetName: b.learn.Name, SetID: b.learn.ID, Operation: op, Timeout: timeout}
}

// releaseRule deletes the guest's binding when it releases its lease.
func (b *builder) releaseRule() rule {
	m := append(udpDst(dhcpServerPort), th(options, 3), eq([]byte{optType, 1, release}), th(ciaddr, 4), b.dynset(dynsetDelete, 0))
	return rule{exprs: m}
}

// snoopChain queues the ingress base chain and its helpers.
func (b *builder) snoopChain() {
	ackCh := b.sub("ack")
	// The bound address must be unicast: not 0.0.0.0/8, not 224.0.0.0/3.
	b.add(ackCh,
		ret(th(yiaddr, 1), eq([]byte{0})),
		ret(th(yiaddr, 1), &expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: []byte{224}}))
	// One chain per layout: the kernel (6.13 and later) refuses a rule that
	// reads a register no earlier expression of the same rule wrote, so
	// the lease cannot be handed to a shared chain in a register.
	for i, l := range leaseLayouts {
		var m []expr.Any
		off := uint32(options + 3)
		for _, o := range l.before {
			m = append(m, th(off, 2), eq(o[:]))
			off += 2 + uint32(o[1])
		}
		m = append(m, th(off, 2), eq(be16(leaseOpt)))
		lc := b.sub("lease" + string(rune('a'+i)))
		b.leaseChain(lc, off+2)
		b.add(ackCh, jump(lc.Name, m...))
	}
	b.add(ackCh, b.learnRule(fallbackLease))

	policy := nftables.ChainPolicyAccept
	in := b.c.AddChain(&nftables.Chain{Name: b.base + "-in", Table: b.t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookIngress, Priority: nftables.ChainPriorityFilter, Device: b.s.Device, Policy: &policy})
	b.add(in, jump(ackCh.Name, append(isUDP(),
		th(0, 4), eq(append(be16(dhcpServerPort), be16(dhcpClientPort)...)),
		th(bootp, 1), eq([]byte{bootOpRe}),
		th(chaddr, 6), eq(b.mac),
		th(cookie, 4), eq(be32(magic)),
		th(options, 3), eq([]byte{optType, 1, ack}))...))
}

// leaseChain binds yiaddr with the lease (read at off) rounded up to a
// step.
func (b *builder) leaseChain(ch *nftables.Chain, off uint32) {
	for _, step := range leaseSteps {
		r := b.learnRule(step)
		r.exprs = append([]expr.Any{th(off, 4), &expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: be32(uint32(step / time.Second))}}, r.exprs...)
		b.add(ch, r)
	}
	// Longer or infinite (0xffffffff): no timeout.
	b.add(ch, b.learnRule(0))
}

// learnRule adds (or refreshes) yiaddr with timeout (0: none) and stops.
func (b *builder) learnRule(timeout time.Duration) rule {
	return rule{[]expr.Any{th(yiaddr, 4), &expr.Counter{}, b.dynset(unix.NFT_DYNSET_OP_UPDATE, timeout),
		&expr.Verdict{Kind: expr.VerdictAccept}}, comment(ReasonLearned)}
}

// Learned lists the addresses bound by DHCP snooping for each interface of
// a domain (MAC in lowercase colon form -> addresses, sorted); interfaces
// that learn nothing are absent, and so is a domain without filters.
func (m *Manager) Learned(domain uuid.UUID) (map[string][]netip.Addr, error) {
	c, err := m.conn()
	if err != nil {
		return nil, err
	}
	t := table(domain)
	if _, err := c.ListTableOfFamily(t.Name, t.Family); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, fmt.Errorf("nftables: look up table %s: %w", t.Name, err)
	}
	sets, err := c.GetSets(t)
	if err != nil {
		return nil, fmt.Errorf("nftables: list sets of %s: %w", t.Name, err)
	}
	out := map[string][]netip.Addr{}
	for _, st := range sets {
		base, ok := strings.CutSuffix(st.Name, "-l4")
		mac, err := hex.DecodeString(strings.TrimPrefix(base, "g"))
		if !ok || err != nil || len(mac) != 6 || LearnedSetName(ChainName(mac)) != st.Name {
			continue
		}
		es, err := c.GetSetElements(st)
		if err != nil {
			return nil, fmt.Errorf("nftables: elements of %s: %w", st.Name, err)
		}
		var as []netip.Addr
		for _, e := range es {
			if a, ok := netip.AddrFromSlice(e.Key); ok && a.Is4() {
				as = append(as, a)
			}
		}
		sort.Slice(as, func(i, j int) bool { return as[i].Less(as[j]) })
		out[net.HardwareAddr(mac).String()] = as
	}
	return out, nil
}
