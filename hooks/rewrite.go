package hooks

import (
	"fmt"

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
	host, _ := pol.ResolveHost(c.Host)
	res, err := provision.ProvisionDoc(c.Doc, provision.Options{Policy: pol, Host: host, Local: true,
		DevRoot: c.DevRoot, ParentMAC: provision.LocalParentMAC})
	if err != nil {
		return fmt.Errorf("%s of %q to host %s: %w", c.Req.Op, c.Req.Domain, host, err)
	}
	_, err = c.Stdout.Write(res.XML)
	return err
}
