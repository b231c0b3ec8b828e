// The fence: the layout of ARCHITECTURE.md section 1, checked with go list.
// Define time (provision/) is pure, the hook binary links neither libvirt
// nor the VEPA probe, and the top-level folders import one way:
// cmd -> doctor, metrics -> hooks -> host -> passthrough/vepa -> provision -> internal.
package virtap_test

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/virtap/virtap"

// pkg is the part of `go list -json` the fence reads.
type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// goList runs `go list -json -deps=deps patterns...` and decodes its output.
func goList(t *testing.T, deps bool, patterns ...string) []pkg {
	t.Helper()
	args := append([]string{"list", "-json=ImportPath,Imports,Deps"}, patterns...)
	if deps {
		args = append([]string{"list", "-deps", "-json=ImportPath,Imports,Deps"}, patterns...)
	}
	out, err := exec.Command("go", args...).Output()
	if err != nil {
		t.Fatalf("go %s: %v", strings.Join(args, " "), err)
	}
	var ps []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	if len(ps) == 0 {
		t.Fatalf("go %s listed nothing", strings.Join(args, " "))
	}
	return ps
}

// noDeps fails for every package in forbidden that patterns link.
func noDeps(t *testing.T, why string, forbidden []string, patterns ...string) {
	t.Helper()
	linked := map[string]bool{}
	for _, p := range goList(t, true, patterns...) {
		linked[p.ImportPath] = true
	}
	for _, f := range forbidden {
		if linked[f] {
			t.Errorf("%s links %s: %s", strings.Join(patterns, " "), f, why)
		}
	}
}

func TestHookLinksNoProbeNorLibvirt(t *testing.T) {
	noDeps(t, "the hook runs five times per guest start and stop; it must not load libvirt's libraries (deadlock, start-up time) nor link the VEPA probe and its signal handler",
		[]string{"libvirt.org/go/libvirt", module + "/vepa", module + "/internal/virt", module + "/doctor", "os/signal"},
		"./cmd/virtap-hook")
}

func TestHookLinksNoEtcdClient(t *testing.T) {
	noDeps(t, "the hook takes fleet-leased addresses from virtap's record; linking the etcd client (gRPC, protobuf) made a do-nothing binary start in 8 ms instead of 1.8 ms here, and the hook runs five times per guest start and stop",
		[]string{"go.etcd.io/etcd/client/v3", "google.golang.org/grpc", module + "/internal/fleet"},
		"./cmd/virtap-hook")
}

func TestDefineTimeIsPure(t *testing.T) {
	noDeps(t, "define time (provision/) must not touch the kernel or the store; run-time work belongs in host/ and internal/",
		[]string{"github.com/vishvananda/netlink", "go.etcd.io/bbolt", "github.com/google/nftables",
			module + "/internal/netdev", module + "/internal/store", module + "/internal/nft", module + "/host"},
		"./provision/...")
}

// rank orders the top-level folders: a folder may import only folders of a
// lower rank (and itself). Folders not listed (bench, test, examples) sit
// on top and may import anything.
var rank = map[string]int{
	"internal":    0,
	"provision":   1,
	"passthrough": 2,
	"vepa":        2,
	"host":        3,
	"hooks":       4,
	"hotplug":     4,
	"doctor":      5,
	"metrics":     5,
	"cmd":         6,
}

// top is the top-level folder of an import path of this module ("" if the
// path is not in the module).
func top(path string) string {
	rest, ok := strings.CutPrefix(path, module+"/")
	if !ok {
		return ""
	}
	f, _, _ := strings.Cut(rest, "/")
	return f
}

func TestImportsRunOneWay(t *testing.T) {
	for _, p := range goList(t, false, "./...") {
		from := top(p.ImportPath)
		rf, ranked := rank[from]
		if !ranked {
			continue
		}
		for _, imp := range p.Imports {
			to := top(imp)
			if to == "" || to == from {
				continue
			}
			rt, ok := rank[to]
			if !ok || rt >= rf {
				t.Errorf("%s imports %s: imports run one way, %s may use only folders below it (%v)", p.ImportPath, imp, from, rank)
			}
		}
	}
}

// TestOnlyCmdCallsLibvirt: internal/virt, the only libvirt binding, is
// imported by cmd/virtap alone.
func TestOnlyCmdCallsLibvirt(t *testing.T) {
	for _, p := range goList(t, false, "./...") {
		for _, imp := range p.Imports {
			if imp == module+"/internal/virt" && top(p.ImportPath) != "cmd" {
				t.Errorf("%s imports internal/virt: only cmd/virtap may call the libvirt API", p.ImportPath)
			}
		}
	}
}
