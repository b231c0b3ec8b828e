package policy

import (
	"net/url"
	"path/filepath"
	"strings"
)

// Fleet is the optional [fleet] table: hosts that share address pools
// lease them from etcd. Nil when the policy has no [fleet].
type Fleet struct {
	Etcd   []string `toml:"etcd" json:"etcd"`               // client URLs, http:// or https://
	Cert   string   `toml:"cert" json:"cert,omitempty"`     // client certificate (PEM), for TLS client auth
	Key    string   `toml:"key" json:"key,omitempty"`       // its private key (PEM)
	CA     string   `toml:"ca" json:"ca,omitempty"`         // CA of the etcd servers' certificates (PEM)
	Prefix string   `toml:"prefix" json:"prefix,omitempty"` // key prefix shared by the fleet
}

// DefaultFleetPrefix is the etcd key prefix when [fleet] sets none.
const DefaultFleetPrefix = "/virtap/"

// fleet checks the [fleet] table.
func (ps *parser) fleet(p *Policy) {
	f := ps.raw.Fleet
	if f == nil {
		return
	}
	key := func(k string) []string { return []string{"fleet", k} }
	if len(f.Etcd) == 0 {
		ps.add([]string{"fleet"}, "needs etcd = [\"http://HOST:2379\", ...]: the client URLs of the etcd cluster")
	}
	for _, ep := range f.Etcd {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			ps.add(key("etcd"), "%q is not an etcd client URL; write http://HOST:PORT or https://HOST:PORT", ep)
		}
	}
	if (f.Cert == "") != (f.Key == "") {
		ps.add(key("cert"), "cert and key go together: set both (TLS client authentication) or neither")
	}
	for k, v := range map[string]string{"cert": f.Cert, "key": f.Key, "ca": f.CA} {
		if v != "" && !filepath.IsAbs(v) {
			ps.add(key(k), "must be an absolute path, not %q", v)
		}
	}
	if f.Prefix == "" {
		f.Prefix = DefaultFleetPrefix
	}
	if !strings.HasPrefix(f.Prefix, "/") || strings.ContainsAny(f.Prefix, " \t\n\x00") {
		ps.add(key("prefix"), "%q: an etcd key prefix starts with '/' and holds no blanks, e.g. \"/virtap/\"", f.Prefix)
	}
	if !strings.HasSuffix(f.Prefix, "/") {
		f.Prefix += "/"
	}
	c := *f
	p.Fleet = &c
}
