// Package examples holds one folder per setup: policy.toml, guest.xml and the
// expected output for each host the example names. This test provisions each
// and compares.
package examples

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtap/virtap/internal/udiff"
	"github.com/virtap/virtap/internal/xmlcheck"
	"github.com/virtap/virtap/provision"
	"github.com/virtap/virtap/provision/policy"
)

var update = flag.Bool("update", false, "rewrite the expected files")

// Each expected-HOST.xml is the output for HOST; expected.xml is for node1.
func TestExamples(t *testing.T) {
	dirs, _ := filepath.Glob("*/policy.toml")
	want := []string{"bridge-tap", "fleet-two-hosts", "ipvtap-untrusted", "macvtap-bridge", "macvtap-private", "passthrough-hostdev", "passthrough-pool", "vepa-8021qbg"}
	var got []string
	for _, d := range dirs {
		got = append(got, filepath.Dir(d))
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("examples: got %v, want at least %v", got, want)
	}
	for _, dir := range got {
		t.Run(dir, func(t *testing.T) {
			pol, err := policy.Load(filepath.Join(dir, "policy.toml"))
			if err != nil {
				t.Fatal(err)
			}
			in, err := os.ReadFile(filepath.Join(dir, "guest.xml"))
			if err != nil {
				t.Fatal(err)
			}
			outs, _ := filepath.Glob(filepath.Join(dir, "expected*.xml"))
			if len(outs) == 0 && !*update {
				t.Fatal("no expected.xml")
			}
			if *update && len(outs) == 0 {
				outs = []string{filepath.Join(dir, "expected.xml")}
			}
			for _, exp := range outs {
				host := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(exp), "expected-"), ".xml")
				if host == "expected" {
					host = "node1"
				}
				res, err := provision.Provision(in, provision.Options{Policy: pol, Host: host})
				if err != nil {
					t.Fatalf("host %s: %v", host, err)
				}
				if *update {
					if err := os.WriteFile(exp, res.XML, 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, _ := os.ReadFile(exp)
				if !bytes.Equal(res.XML, want) {
					t.Errorf("host %s differs from %s:\n%s", host, exp, udiff.Diff(exp, "provisioned", string(want), string(res.XML), 3))
				}
				again, err := provision.Provision(res.XML, provision.Options{Policy: pol, Host: host})
				if err != nil || !bytes.Equal(again.XML, res.XML) {
					t.Errorf("host %s: provisioning the output again changed it (%v):\n%s", host, err, udiff.Diff("once", "twice", string(res.XML), string(again.XML), 3))
				}
				xmlcheck.Domain(t, exp, res.XML)
			}
		})
	}
}
