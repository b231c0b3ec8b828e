package hooks

import (
	"fmt"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/provision"
	"github.com/virtap/virtap/provision/policy"
)

// rewrite handles migrate (on the destination, before the guest arrives)
// and restore: it prints the domain XML provisioned for this host's policy,
// so a guest moves between hosts whose NIC names differ.
type rewrite struct{}

func (rewrite) Handle(c *Call) error {
	pol, err := policy.Load(c.PolicyPath)
	if err != nil {
		return fmt.Errorf("%s of %q: %w", c.Req.Op, c.Req.Domain, err)
	}
	host, local := pol.ResolveHost(c.Host)
	res, err := provision.ProvisionDoc(c.Doc, provision.Options{Policy: pol, Host: host, Local: true,
		DevRoot: c.DevRoot, ParentMAC: netdev.LinkMAC})
	if err != nil {
		return fmt.Errorf("%s of %q to host %s: %w", c.Req.Op, c.Req.Domain, host, err)
	}
	if local {
		// Refuse here, where libvirt can still abort the migration cleanly,
		// rather than at the guest's start on this host.
		nd := netdev.New(c.log, nil)
		for _, p := range res.Plans {
			if p.Network.Parent == "" {
				continue
			}
			if info, err := nd.ParentStatus(p.Network.Parent); err == nil && !info.Exists {
				return fmt.Errorf("%s of %q to host %s: network %q: parent %s does not exist here; give this host its NIC in [hosts.%s.networks.%s] of %s",
					c.Req.Op, c.Req.Domain, host, p.Network.Name, p.Network.Parent, host, p.Network.Name, pol.File)
			}
		}
	}
	_, err = c.Stdout.Write(res.XML)
	return err
}
