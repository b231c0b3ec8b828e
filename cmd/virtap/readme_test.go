package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/virtap/virtap/provision/policy"
)

func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The policy examples in the README are valid policies.
func TestReadmePoliciesParse(t *testing.T) {
	blocks := regexp.MustCompile("(?s)```toml\n(.*?)```").FindAllStringSubmatch(readme(t), -1)
	if len(blocks) == 0 {
		t.Fatal("README has no toml block")
	}
	for i, b := range blocks {
		if _, err := policy.Parse("README.md block", []byte(b[1])); err != nil {
			t.Errorf("toml block %d: %v", i+1, err)
		}
	}
}

// Every subcommand and every policy key is documented.
func TestReadmeNamesEverySubcommandAndKey(t *testing.T) {
	text := readme(t)
	root := newRoot()
	for _, c := range root.Commands() {
		if c.Hidden || c.Name() == "help" {
			continue
		}
		name := "virtap " + c.Name()
		if len(c.Commands()) > 0 {
			for _, s := range c.Commands() {
				if !strings.Contains(text, name+" "+s.Name()) && !strings.Contains(text, name+" install|uninstall") {
					t.Errorf("README does not document %s %s", name, s.Name())
				}
			}
			continue
		}
		if !strings.Contains(text, "`"+name) {
			t.Errorf("README does not document %s", name)
		}
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Name != "help" && !strings.Contains(text, "--"+f.Name) {
				t.Errorf("README does not document %s --%s", name, f.Name)
			}
		})
	}
	for _, k := range policy.NetworkKeys() {
		k = strings.Trim(k, "[]")
		if !regexp.MustCompile(`(?m)^(# )?` + regexp.QuoteMeta(k) + ` = |\[networks\.\w+\.` + regexp.QuoteMeta(k) + `\]`).MatchString(text) {
			t.Errorf("README's policy reference lacks %s", k)
		}
	}
	if !strings.Contains(text, "\n[fleet]") {
		t.Errorf("README's policy reference lacks [fleet]")
	}
	for _, k := range []string{"state_dir", "mac_prefix", "etcd", "cert", "key", "ca", "prefix"} {
		if !strings.Contains(text, k+" = ") {
			t.Errorf("README's policy reference lacks %s", k)
		}
	}
}

// The README's fleet example prints what examples/fleet-two-hosts expects.
func TestReadmeFleetExample(t *testing.T) {
	line := "virtap provision --policy examples/fleet-two-hosts/policy.toml --host node2 examples/fleet-two-hosts/guest.xml"
	if !strings.Contains(readme(t), line) {
		t.Fatal("README lost its fleet example")
	}
	if err := os.Chdir("../.."); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir("cmd/virtap")
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs(strings.Fields(line)[1:])
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile("examples/fleet-two-hosts/expected-node2.xml")
	if !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("the README's command printed something else than expected-node2.xml")
	}
}

// The README's "did you mean" warning is what provision prints.
func TestReadmeUnknownNetworkWarning(t *testing.T) {
	m := regexp.MustCompile("(?s)`(guest\\.xml: domain XML line 8: .*?did you mean 'lan'\\?)`").FindStringSubmatch(readme(t))
	if m == nil {
		t.Fatal("README lost its unknown-network warning")
	}
	want := strings.Join(strings.Fields(m[1]), " ")
	pol, guest := checkFiles(t, "lan", "lna")
	want = strings.NewReplacer("guest.xml", guest, "/etc/virtap/policy.toml", pol, `"node1"`, `"node2"`).Replace(want)
	_, _, errOut := capture(t, "--policy", pol, "provision", "--host", "node2", "--connect", "test:///default", guest)
	if !strings.Contains(errOut, want) {
		t.Fatalf("README says\n%s\nprovision printed\n%s", want, errOut)
	}
}
