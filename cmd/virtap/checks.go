package main

import (
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/virtap/virtap/internal/virt"
	"github.com/virtap/virtap/provision"
	"github.com/virtap/virtap/provision/policy"
)

// warnings collects what may be a mistake: printed as warnings, or with
// --strict returned as one error.
type warnings struct {
	strict bool
	msgs   []string
}

func (w *warnings) add(format string, a ...any) { w.msgs = append(w.msgs, fmt.Sprintf(format, a...)) }

// flush prints the warnings on stderr, or under --strict fails with them.
func (w *warnings) flush() error {
	if len(w.msgs) == 0 {
		return nil
	}
	if w.strict {
		errs := make([]error, len(w.msgs))
		for i, m := range w.msgs {
			errs[i] = errors.New(m)
		}
		return fmt.Errorf("%w\n(--strict turns these warnings into errors)", errors.Join(errs...))
	}
	for _, m := range w.msgs {
		fmt.Fprintf(os.Stderr, "virtap: warning: %s\n", m)
	}
	w.msgs = nil
	return nil
}

// checkHost warns when a host named on the command line has no section:
// the policy then applies its defaults, which is right for a host without
// overrides and wrong for a mistyped name.
func (w *warnings) checkHost(p *policy.Policy, given string) {
	if given == "" || slices.Contains(p.Hosts(), given) {
		return
	}
	w.add("no [hosts.%s] in %s; using the defaults", given, p.File)
}

// checkNetworks warns about interfaces on networks the policy lacks that
// are not libvirt networks either (asked read-only at uri). Without a
// libvirt to ask, libvirt's "default" network is taken as one.
func (w *warnings) checkNetworks(file string, res *provision.Result, uri string) {
	if len(res.Unknown) == 0 {
		return
	}
	var libvirtNets []string
	var why string
	c, err := virt.ConnectReadOnly(uri)
	if err == nil {
		libvirtNets, err = c.Networks()
		c.Close()
	}
	if err != nil {
		libvirtNets, why = []string{"default"}, fmt.Sprintf(" (libvirt's networks could not be read: %v)", err)
	}
	for _, u := range res.Unknown {
		if slices.Contains(libvirtNets, u.Network) {
			continue
		}
		e := *u
		e.Msg += " nor a libvirt network" + why
		w.add("%s: %s", file, e.Error())
	}
}
