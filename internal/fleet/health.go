package fleet

import (
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/virtap/virtap/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// EndpointStatus is what one etcd member says about itself.
type EndpointStatus struct {
	Endpoint string `json:"endpoint"`
	Version  string `json:"version,omitempty"`
	Leader   bool   `json:"leader,omitempty"` // this member is the leader
	DBSize   int64  `json:"db_size,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Health asks every endpoint for its status, each bounded by the timeout.
// The fleet store works while a majority of the members answer; ok says
// whether at least one answered and knows a leader.
func (c *Client) Health() (st []EndpointStatus, ok bool) {
	for _, ep := range c.cfg.Endpoints {
		ctx, cancel := c.ctx()
		s, err := c.cli.Status(ctx, ep)
		cancel()
		es := EndpointStatus{Endpoint: ep}
		if err != nil {
			es.Error = c.unavailable("a status request", err).Error()
		} else {
			es.Version = s.Version
			es.Leader = s.Leader == s.Header.MemberId
			es.DBSize = s.DbSize
			ok = ok || s.Leader != 0
		}
		st = append(st, es)
	}
	return st, ok
}

// DomainsOf returns the UUIDs of the domains host has, per the fleet store.
func (c *Client) DomainsOf(host string) ([]string, error) {
	ctx, cancel := c.ctx()
	defer cancel()
	p := c.prefix + "domains/"
	resp, err := c.cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, c.unavailable("a read of the domains of host "+host, err)
	}
	var out []string
	want := url.PathEscape(host)
	for _, kv := range resp.Kvs {
		u, h, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), p), "/")
		if h == want {
			out = append(out, u)
		}
	}
	sort.Strings(out)
	return out, nil
}

// DomainHosts returns the hosts that have domain u, per the fleet store.
func (c *Client) DomainHosts(u string) ([]string, error) {
	u, err := store.NormalizeUUID(u)
	if err != nil {
		return nil, err
	}
	ctx, cancel := c.ctx()
	defer cancel()
	resp, err := c.cli.Get(ctx, c.domainHosts(u), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, c.unavailable("a read of the hosts of domain "+u, err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		h, err := url.PathUnescape(strings.TrimPrefix(string(kv.Key), c.domainHosts(u)))
		if err != nil {
			return nil, fmt.Errorf("fleet store: key %s: %w", kv.Key, err)
		}
		out = append(out, h)
	}
	return out, nil
}
