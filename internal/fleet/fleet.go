// Package fleet is virtap's lease store for a fleet of hosts: address
// leases and the MAC registry live in etcd, shared by every host, with the
// same lease interface as the single-host bbolt store (Lease, ReleaseLeases,
// Leases, LeaseNetworks). Host-local state (devices, VF reservations,
// filters) stays in each host's bbolt store.
//
// # Keys (under Config.Prefix, default "/virtap/")
//
//	leases/NET/ADDR        -> JSON Record: who holds ADDR of network NET
//	holders/UUID/NET/MAC   -> ADDR: the index that gives a domain its address back
//	domains/UUID/HOST      -> JSON: HOST has domain UUID (defined or provisioned)
//	macs/MAC               -> JSON Record (no address): who owns the MAC, fleet-wide
//	macsof/UUID/MAC        -> "": the index that frees a domain's MACs
//
// NET and HOST are path-escaped, ADDR is 32 hex digits of the 16-byte form
// (so key order is address order), MAC is lower-case colon form ("-" for
// none).
//
// # Guarantees
//
// A lease belongs to the domain UUID and MAC, not to a host: the same domain
// gets the same address on every host. Each new lease is one etcd
// transaction that succeeds only if the address key does not exist
// (CreateRevision == 0) and the domain's index is unchanged, so two leases of
// one address can never both commit. A domain's leases and MACs are freed
// only when the last host that has it lets go (ReleaseLeases on that host),
// again in one guarded transaction: gc on one host never frees a lease of a
// guest another host still has.
//
// Every call is bounded by Config.Timeout; when etcd does not answer the
// error names etcd and its endpoints, and nothing was written.
package fleet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

const (
	// DefaultPrefix is the key prefix when Config.Prefix is empty.
	DefaultPrefix = "/virtap/"
	// DefaultTimeout bounds each call when Config.Timeout is zero.
	DefaultTimeout = 5 * time.Second
)

// Config says how to reach etcd and who this host is.
type Config struct {
	Endpoints []string // client URLs, e.g. https://etcd1:2379
	CertFile  string   // client certificate (TLS client auth), optional
	KeyFile   string   // its key
	CAFile    string   // CA that signed the servers' certificates, optional
	Prefix    string   // key prefix shared by the fleet; DefaultPrefix if empty
	Host      string   // this host's name in the fleet; os.Hostname if empty
	Timeout   time.Duration
	Logger    hclog.Logger
}

// Client is an open connection to the fleet store. Safe for concurrent use.
type Client struct {
	cli     *clientv3.Client
	cfg     Config
	prefix  string
	host    string
	timeout time.Duration
	log     hclog.Logger
	now     func() time.Time
}

// UnavailableError says etcd did not answer (or refused) a call.
type UnavailableError struct {
	Endpoints []string
	Timeout   time.Duration
	Op        string
	Err       error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("fleet store: etcd at %s did not complete %s within %s: %v (is etcd running and reachable? check [fleet] etcd in the policy)",
		strings.Join(e.Endpoints, ", "), e.Op, e.Timeout, e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// Open checks the configuration and connects to etcd. Connecting is lazy:
// an etcd that is down shows at the first call, as an *UnavailableError.
func Open(cfg Config) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("fleet store: no etcd endpoints")
	}
	for _, ep := range cfg.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("fleet store: etcd endpoint %q: want http://HOST:PORT or https://HOST:PORT", ep)
		}
	}
	c := &Client{cfg: cfg, prefix: cfg.Prefix, host: cfg.Host, timeout: cfg.Timeout, log: cfg.Logger, now: time.Now}
	if c.prefix == "" {
		c.prefix = DefaultPrefix
	}
	if !strings.HasSuffix(c.prefix, "/") {
		c.prefix += "/"
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.log == nil {
		c.log = hclog.NewNullLogger()
	}
	c.log = c.log.Named("fleet")
	if c.host == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("fleet store: host name: %w", err)
		}
		c.host = h
	}
	tlsCfg, err := tlsConfig(cfg)
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.Endpoints,
		DialTimeout:          c.timeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: c.timeout,
		TLS:                  tlsCfg,
		Logger:               zap.NewNop(),
		// Reconnect within a second of etcd coming back (gRPC's default
		// back-off grows to two minutes).
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: c.timeout,
		})},
	})
	if err != nil {
		return nil, c.unavailable("connect", err)
	}
	c.cli = cli
	return c, nil
}

func tlsConfig(cfg Config) (*tls.Config, error) {
	if cfg.CertFile == "" && cfg.KeyFile == "" && cfg.CAFile == "" {
		return nil, nil
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("fleet store: cert and key go together: set both or neither")
	}
	for _, f := range []string{cfg.CertFile, cfg.KeyFile, cfg.CAFile} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("fleet store: %w", err)
		}
	}
	// With only a CA, ClientConfig verifies the servers and sends no
	// client certificate.
	info := transport.TLSInfo{CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, TrustedCAFile: cfg.CAFile}
	t, err := info.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("fleet store: tls: %w", err)
	}
	return t, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.cli.Close() }

// Host returns this host's name in the fleet.
func (c *Client) Host() string { return c.host }

// Endpoints returns the etcd endpoints.
func (c *Client) Endpoints() []string { return c.cfg.Endpoints }

// Prefix returns the key prefix.
func (c *Client) Prefix() string { return c.prefix }

func (c *Client) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.timeout)
}

func (c *Client) unavailable(op string, err error) error {
	var ue *UnavailableError
	if errors.As(err, &ue) {
		return err
	}
	return &UnavailableError{Endpoints: c.cfg.Endpoints, Timeout: c.timeout, Op: op, Err: err}
}

// Key builders. Every name is path-escaped so a "/" in it cannot reach
// another key.
func (c *Client) leaseKey(network, addrHex string) string {
	return c.prefix + "leases/" + url.PathEscape(network) + "/" + addrHex
}
func (c *Client) leasesOf(network string) string {
	return c.prefix + "leases/" + url.PathEscape(network) + "/"
}
func (c *Client) holderKey(u, network, mac string) string {
	return c.holdersOf(u) + url.PathEscape(network) + "/" + macPart(mac)
}
func (c *Client) holdersOf(u string) string { return c.prefix + "holders/" + u + "/" }
func (c *Client) domainHosts(u string) string {
	return c.prefix + "domains/" + u + "/"
}
func (c *Client) hostKey(u string) string { return c.domainHosts(u) + url.PathEscape(c.host) }
func (c *Client) macKey(mac string) string {
	return c.prefix + "macs/" + mac
}
func (c *Client) macsOf(u string) string { return c.prefix + "macsof/" + u + "/" }

func macPart(mac string) string {
	if mac == "" {
		return "-"
	}
	return mac
}
