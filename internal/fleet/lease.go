package fleet

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/virtap/virtap/internal/ipam"
	"math/rand/v2"
	"net/netip"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/virtap/virtap/internal/store"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Record is a lease as etcd keeps it: the bbolt store's Lease plus the
// host that took it.
type Record struct {
	store.Lease
	Host string `json:"host"`
}

// freeWindow is how many free addresses a lease looks at. The first try
// takes the lowest; after a conflict (another host took it in the
// meantime) a random one of the window, so concurrent hosts spread out
// instead of all retrying on the same address.
const freeWindow = 32

// maxTries bounds the transactions of one lease (each conflict is another
// host's success, so this is only reached under extreme contention).
const maxTries = 200

func addrHex(a netip.Addr) string {
	b := a.As16()
	return hex.EncodeToString(b[:])
}

func hexAddr(s string, is4 bool) (netip.Addr, bool) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		return netip.Addr{}, false
	}
	a := netip.AddrFrom16([16]byte(b))
	if is4 {
		a = a.Unmap()
	}
	return a, true
}

type leaseReq struct {
	network  string
	prefix   netip.Prefix
	first    netip.Addr
	last     netip.Addr
	excluded map[netip.Addr]bool
	h        store.Holder
}

func normalize(network string, prefix netip.Prefix, rangeStart, rangeEnd netip.Addr, exclude []netip.Addr, h store.Holder) (leaseReq, error) {
	r := leaseReq{network: network, excluded: map[netip.Addr]bool{}}
	if network == "" || len(network) > 255 || strings.ContainsRune(network, 0) {
		return r, fmt.Errorf("invalid network name %q", network)
	}
	if !prefix.IsValid() {
		return r, fmt.Errorf("network %q: invalid prefix", network)
	}
	var err error
	if h.UUID, err = store.NormalizeUUID(h.UUID); err != nil {
		return r, err
	}
	if h.MAC != "" {
		if h.MAC, err = store.NormalizeMAC(h.MAC); err != nil {
			return r, err
		}
	}
	r.h = h
	r.prefix = prefix.Masked()
	if r.first, r.last, err = ipam.LeaseRange(r.prefix, rangeStart, rangeEnd); err != nil {
		return r, fmt.Errorf("network %q: %w", network, err)
	}
	for _, a := range exclude {
		r.excluded[a.Unmap()] = true
	}
	return r, nil
}

// Lease gives holder h (its domain UUID and MAC) an address of network from
// prefix, within [rangeStart, rangeEnd] when those are valid, never one of
// exclude; the same holder gets the same address back on every host while
// its lease lasts. It also records that this host has the domain. A full
// pool gives a *store.AddressesExhaustedError; etcd not answering within
// the timeout gives an *UnavailableError, and then nothing was written.
func (c *Client) Lease(network string, prefix netip.Prefix, rangeStart, rangeEnd netip.Addr, exclude []netip.Addr, h store.Holder) (netip.Addr, error) {
	r, err := normalize(network, prefix, rangeStart, rangeEnd, exclude, h)
	if err != nil {
		return netip.Addr{}, err
	}
	ctx, cancel := c.ctx()
	defer cancel()
	var lastErr error
	for try := 0; try < maxTries; try++ {
		got, done, err := c.tryLease(ctx, r, try)
		switch {
		case err == nil && done:
			c.log.Debug("leased address", "network", network, "addr", got.String(), "uuid", r.h.UUID, "mac", r.h.MAC, "tries", try+1)
			return got, nil
		case err == nil:
			continue // another host won this address: look again
		}
		var ex *store.AddressesExhaustedError
		if errors.As(err, &ex) {
			return netip.Addr{}, err
		}
		lastErr = err
		if ctx.Err() != nil || !transient(err) {
			break
		}
		// A member went away or an election is on: the client moves to
		// another endpoint; a write that may have committed is found by
		// the next try through the holder index.
		time.Sleep(50 * time.Millisecond)
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("network %q: %d conflicting leases in a row", network, maxTries)
	}
	return netip.Addr{}, c.unavailable("a lease in network "+fmt.Sprintf("%q", network), lastErr)
}

// tryLease is one read and one guarded write. done is false when the write
// lost a race and the caller should read again.
func (c *Client) tryLease(ctx context.Context, r leaseReq, try int) (netip.Addr, bool, error) {
	hk := c.holderKey(r.h.UUID, r.network, r.h.MAC)
	hostK := c.hostKey(r.h.UUID)
	rd, err := c.cli.Txn(ctx).Then(
		clientv3.OpGet(hk),
		clientv3.OpGet(hostK),
		clientv3.OpGet(c.leaseKey(r.network, addrHex(r.first)), clientv3.WithRange(c.leaseKey(r.network, addrHex(r.last))+"\x00"), clientv3.WithKeysOnly()),
	).Commit()
	if err != nil {
		return netip.Addr{}, false, err
	}
	hResp := rd.Responses[0].GetResponseRange()
	hostResp := rd.Responses[1].GetResponseRange()
	leased := rd.Responses[2].GetResponseRange()
	is4 := r.prefix.Addr().Is4()
	guard := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(hk), "=", 0)}
	var ops []clientv3.Op
	if len(hResp.Kvs) == 1 {
		kv := hResp.Kvs[0]
		guard = []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(hk), "=", kv.ModRevision)}
		a, ok := hexAddr(string(kv.Value), is4)
		if ok && a.Compare(r.first) >= 0 && a.Compare(r.last) <= 0 && !r.excluded[a] {
			if len(hostResp.Kvs) == 1 {
				return a, true, nil
			}
			// Known domain, new host: note that this host has it too.
			tx, err := c.cli.Txn(ctx).If(guard...).Then(clientv3.OpPut(hostK, c.hostValue(r.h))).Commit()
			if err != nil {
				return netip.Addr{}, false, err
			}
			return a, tx.Succeeded, nil
		}
		// The policy moved the range: give the old address back.
		ops = append(ops, clientv3.OpDelete(c.leaseKey(r.network, string(kv.Value))))
	}
	cand, err := r.pick(c, leased.Kvs, try)
	if err != nil {
		return netip.Addr{}, false, err
	}
	rec, err := json.Marshal(Record{Lease: store.Lease{Network: r.network, Addr: cand, Holder: r.h, Since: c.now().UTC()}, Host: c.host})
	if err != nil {
		return netip.Addr{}, false, err
	}
	lk := c.leaseKey(r.network, addrHex(cand))
	guard = append(guard, clientv3.Compare(clientv3.CreateRevision(lk), "=", 0))
	ops = append(ops, clientv3.OpPut(lk, string(rec)), clientv3.OpPut(hk, addrHex(cand)), clientv3.OpPut(hostK, c.hostValue(r.h)))
	tx, err := c.cli.Txn(ctx).If(guard...).Then(ops...).Commit()
	if err != nil {
		return netip.Addr{}, false, err
	}
	return cand, tx.Succeeded, nil
}

// pick chooses a free address given the leased keys of the range (sorted
// by etcd, which is address order).
func (r leaseReq) pick(c *Client, leased []*mvccpb.KeyValue, try int) (netip.Addr, error) {
	taken := make(map[netip.Addr]bool, len(leased))
	is4 := r.prefix.Addr().Is4()
	p := c.leasesOf(r.network)
	for _, kv := range leased {
		if a, ok := hexAddr(strings.TrimPrefix(string(kv.Key), p), is4); ok {
			taken[a] = true
		}
	}
	ex := &store.AddressesExhaustedError{Network: r.network, Prefix: r.prefix, First: r.first, Last: r.last}
	if r.first.Compare(r.last) > 0 {
		ex.Unassigned = true
		return netip.Addr{}, ex
	}
	var free []netip.Addr
	for a := r.first; len(free) < freeWindow; a = a.Next() {
		switch {
		case taken[a]:
			ex.Leased++
		case r.excluded[a]:
			ex.Excluded++
		default:
			free = append(free, a)
		}
		if a == r.last {
			break
		}
	}
	if len(free) == 0 {
		return netip.Addr{}, ex
	}
	if try == 0 {
		return free[0], nil
	}
	return free[rand.IntN(len(free))], nil
}

func (c *Client) hostValue(h store.Holder) string {
	b, _ := json.Marshal(struct {
		Name  string    `json:"name,omitempty"`
		Since time.Time `json:"since"`
	}{h.Name, c.now().UTC()})
	return string(b)
}

// ReleaseLeases says this host no longer has the domain. When no other
// host has it either, the domain's leases and MACs are freed (and
// returned); otherwise they stay and nothing is returned.
func (c *Client) ReleaseLeases(domUUID string) ([]store.Lease, error) {
	u, err := store.NormalizeUUID(domUUID)
	if err != nil {
		return nil, err
	}
	ctx, cancel := c.ctx()
	defer cancel()
	for try := 0; try < maxTries; try++ {
		out, done, err := c.tryRelease(ctx, u)
		if err != nil {
			if ctx.Err() != nil || !transient(err) {
				return nil, c.unavailable("the release of domain "+u, err)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if done {
			return out, nil
		}
	}
	return nil, c.unavailable("the release of domain "+u, errors.New("conflicting changes"))
}

func (c *Client) tryRelease(ctx context.Context, u string) ([]store.Lease, bool, error) {
	rd, err := c.cli.Txn(ctx).Then(
		clientv3.OpGet(c.domainHosts(u), clientv3.WithPrefix(), clientv3.WithKeysOnly()),
		clientv3.OpGet(c.holdersOf(u), clientv3.WithPrefix()),
		clientv3.OpGet(c.macsOf(u), clientv3.WithPrefix(), clientv3.WithKeysOnly()),
	).Commit()
	if err != nil {
		return nil, false, err
	}
	rev := rd.Header.Revision
	hosts := rd.Responses[0].GetResponseRange().Kvs
	others := 0
	for _, kv := range hosts {
		if string(kv.Key) != c.hostKey(u) {
			others++
		}
	}
	if others > 0 {
		// Another host has the domain: only drop this host's claim.
		_, err := c.cli.Delete(ctx, c.hostKey(u))
		return nil, err == nil, err
	}
	ops := []clientv3.Op{
		clientv3.OpDelete(c.domainHosts(u), clientv3.WithPrefix()),
		clientv3.OpDelete(c.holdersOf(u), clientv3.WithPrefix()),
		clientv3.OpDelete(c.macsOf(u), clientv3.WithPrefix()),
	}
	var freed []store.Lease
	for _, kv := range rd.Responses[1].GetResponseRange().Kvs {
		rest := strings.TrimPrefix(string(kv.Key), c.holdersOf(u))
		nw, _, _ := strings.Cut(rest, "/")
		network, _ := url.PathUnescape(nw)
		lk := c.leaseKey(network, string(kv.Value))
		got, err := c.cli.Get(ctx, lk, clientv3.WithRev(rev))
		if err != nil {
			return nil, false, err
		}
		if len(got.Kvs) == 1 {
			var r Record
			if json.Unmarshal(got.Kvs[0].Value, &r) == nil && r.Holder.UUID == u {
				freed = append(freed, r.Lease)
				ops = append(ops, clientv3.OpDelete(lk))
			}
		}
	}
	for _, kv := range rd.Responses[2].GetResponseRange().Kvs {
		ops = append(ops, clientv3.OpDelete(c.macKey(strings.TrimPrefix(string(kv.Key), c.macsOf(u)))))
	}
	// Nothing under the domain may have changed since the read: a host
	// that took the domain meanwhile (a new key there) makes this fail.
	guard := []clientv3.Cmp{
		clientv3.Compare(clientv3.ModRevision(c.domainHosts(u)), "<", rev+1).WithPrefix(),
		clientv3.Compare(clientv3.ModRevision(c.holdersOf(u)), "<", rev+1).WithPrefix(),
		clientv3.Compare(clientv3.ModRevision(c.macsOf(u)), "<", rev+1).WithPrefix(),
	}
	tx, err := c.cli.Txn(ctx).If(guard...).Then(ops...).Commit()
	if err != nil {
		return nil, false, err
	}
	if tx.Succeeded && len(freed) > 0 {
		c.log.Debug("freed leases", "uuid", u, "count", len(freed))
	}
	return freed, tx.Succeeded, nil
}

// Leases returns the leases of a network, sorted by address.
func (c *Client) Leases(network string) ([]store.Lease, error) {
	recs, err := c.Records(network)
	out := make([]store.Lease, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.Lease)
	}
	return out, err
}

// Records returns the lease records of a network (with the host that took
// each), sorted by address.
func (c *Client) Records(network string) ([]Record, error) {
	ctx, cancel := c.ctx()
	defer cancel()
	resp, err := c.cli.Get(ctx, c.leasesOf(network), clientv3.WithPrefix())
	if err != nil {
		return nil, c.unavailable("a read of the leases of "+fmt.Sprintf("%q", network), err)
	}
	var out []Record
	for _, kv := range resp.Kvs {
		var r Record
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return nil, fmt.Errorf("fleet store: lease %s: %w", kv.Key, err)
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr.Less(out[j].Addr) })
	return out, nil
}

// LeaseNetworks lists the networks that have leases.
func (c *Client) LeaseNetworks() ([]string, error) {
	ctx, cancel := c.ctx()
	defer cancel()
	p := c.prefix + "leases/"
	resp, err := c.cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, c.unavailable("a read of the lease networks", err)
	}
	seen := map[string]bool{}
	var out []string
	for _, kv := range resp.Kvs {
		nw, _, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), p), "/")
		if n, err := url.PathUnescape(nw); err == nil && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}

// transient tells errors worth another try within the deadline (a member
// gone, no leader for a moment) from final ones.
func transient(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code() == codes.Unavailable
	}
	return status.Code(err) == codes.Unavailable
}
