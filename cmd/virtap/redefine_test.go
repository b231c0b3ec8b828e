package main

import (
	"strings"
	"testing"
)

// The re-provisioning forms of define refuse mixed or incomplete usage
// (exit 2) before they touch libvirt.
func TestDefineDomainUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"define", "--all", "guest.xml"}, "not both"},
		{[]string{"define", "--domain", "a", "--all"}, "--domain NAME or --all"},
		{[]string{"define", "--dry-run", "guest.xml"}, "--dry-run goes with --domain or --all"},
		{[]string{"define"}, "accepts 1 arg"},
		{[]string{"attach", "web1"}, "accepts 2 arg"},
		{[]string{"detach", "web1", "52:54:00:00:00:01", "x"}, "accepts 2 arg"},
		{[]string{"attach", "--format", "xml", "web1", "lan"}, "--format"},
	} {
		code, _, stderr := capture(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want 2 with %q", tc.args, code, stderr, tc.msg)
		}
	}
}
