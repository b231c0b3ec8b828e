package policy

import (
	"strings"
	"testing"
)

func TestFleetTable(t *testing.T) {
	p, err := Parse("p.toml", []byte("[fleet]\netcd = [\"https://etcd1:2379\", \"https://etcd2:2379\"]\ncert = \"/etc/virtap/etcd.pem\"\nkey = \"/etc/virtap/etcd-key.pem\"\nca = \"/etc/virtap/ca.pem\"\nprefix = \"/dc1\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	f := p.Fleet
	if f == nil || len(f.Etcd) != 2 || f.Cert != "/etc/virtap/etcd.pem" || f.Key != "/etc/virtap/etcd-key.pem" || f.CA != "/etc/virtap/ca.pem" || f.Prefix != "/dc1/" {
		t.Fatalf("fleet = %+v", f)
	}
	p, err = Parse("p.toml", []byte("[fleet]\netcd = [\"http://127.0.0.1:2379\"]\n"))
	if err != nil || p.Fleet.Prefix != DefaultFleetPrefix {
		t.Fatalf("default prefix: %+v, %v", p.Fleet, err)
	}
	if p, _ := Parse("p.toml", []byte("mac_prefix = \"52:54:00\"\n")); p.Fleet != nil {
		t.Fatal("no [fleet] table, but a fleet")
	}
}

func TestFleetErrors(t *testing.T) {
	cases := []struct{ text, want string }{
		{"[fleet]\nprefix = \"/x/\"\n", `p.toml:1: fleet: needs etcd = ["http://HOST:2379", ...]`},
		{"[fleet]\netcd = [\"etcd1:2379\"]\n", `p.toml:2: fleet.etcd: "etcd1:2379" is not an etcd client URL; write http://HOST:PORT`},
		{"[fleet]\netcd = \"http://e:2379\"\n", `p.toml:2: fleet.etcd: has the wrong type`},
		{"[fleet]\netcd = [\"http://e:2379\"]\ncert = \"/c.pem\"\n", `p.toml:3: fleet.cert: cert and key go together`},
		{"[fleet]\netcd = [\"http://e:2379\"]\nca = \"ca.pem\"\n", `p.toml:3: fleet.ca: must be an absolute path`},
		{"[fleet]\netcd = [\"http://e:2379\"]\nprefix = \"virtap\"\n", `p.toml:3: fleet.prefix: "virtap": an etcd key prefix starts with '/'`},
		{"[fleet]\netcd = [\"http://e:2379\"]\nendpoints = 1\n", `p.toml:3: fleet.endpoints: unknown key; allowed in [fleet]: etcd, cert, key, ca, prefix`},
	}
	for _, c := range cases {
		_, err := Parse("p.toml", []byte(c.text))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got %v\nwant %s", c.text, err, c.want)
		}
	}
}
