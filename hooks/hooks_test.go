package hooks

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"

	"github.com/virtap/virtap/host"
	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nstest"
	"github.com/virtap/virtap/internal/paths"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/provision"
	"github.com/virtap/virtap/provision/policy"
)

// The test binary doubles as the hook: with VIRTAP_TEST_HOOK set it runs
// one hook call the way virtap-hook does (argv + stdin -> exit code).
func TestMain(m *testing.M) {
	if args := os.Getenv("VIRTAP_TEST_HOOK"); args != "" {
		req, err := ParseArgs(strings.Fields(args))
		if err != nil {
			os.Exit(2)
		}
		cfg := Config{PolicyPath: os.Getenv("VIRTAP_POLICY"), StateDir: os.Getenv("VIRTAP_STATE_DIR"),
			DevRoot: os.Getenv("VIRTAP_DEV_ROOT"), Log: hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Warn})}
		if err := Run(cfg, req, os.Stdin); err != nil {
			fmt.Fprintf(os.Stderr, "virtap: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const testPolicy = `
[networks.lan]
kind = "macvtap"
parent = "up0"
mode = "bridge"

[networks.gone]
kind = "macvtap"
parent = "nope0"
mode = "bridge"

[networks.access]
kind = "macvtap"
parent = "up0"
mode = "bridge"
host_access = "192.0.2.1/24"

%s`

type env struct {
	t      *testing.T
	ns     *nstest.NS
	cfg    Config
	pol    *policy.Policy
	polDir string
}

// setup makes a namespace with an uplink up0 and pool stand-ins vf0..vfN-1
// (veths), a policy with networks lan, gone, access, pool and vhost, and a
// state directory.
func setup(t *testing.T, poolSize int) *env {
	t.Helper()
	nstest.RequireRoot(t)
	ns := nstest.New(t)
	ns.Veth(t, "up0", "up0p", nil)
	var members []string
	for i := 0; i < poolSize; i++ {
		ns.Veth(t, fmt.Sprintf("vf%d", i), fmt.Sprintf("vf%dp", i), nil)
		members = append(members, fmt.Sprintf("%q", fmt.Sprintf("vf%d", i)))
	}
	if len(members) == 0 {
		members = []string{`"vfnone"`}
	}
	text := fmt.Sprintf(testPolicy, fmt.Sprintf(`[networks.pool]
kind = "passthrough"
devices = [%s]

[networks.vh]
kind = "macvtap"
parent = "up0"
vhost = "on"

[hosts.nodeB.networks.lan]
parent = "up1"
`, strings.Join(members, ", ")))
	dir := t.TempDir()
	polPath := filepath.Join(dir, "policy.toml")
	if err := os.WriteFile(polPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(polPath)
	if err != nil {
		t.Fatal(err)
	}
	devRoot := filepath.Join(dir, "dev")
	if err := os.MkdirAll(devRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := Config{PolicyPath: polPath, StateDir: filepath.Join(dir, "state"), DevRoot: devRoot, NoSync: true,
		Log: hclog.New(&hclog.LoggerOptions{Output: io.Discard}), Stdout: io.Discard}
	return &env{t: t, ns: ns, cfg: cfg, pol: pol, polDir: dir}
}

// guest returns provisioned XML for a domain joining nets.
func (e *env) guest(name string, u uuid.UUID, nets ...string) []byte {
	e.t.Helper()
	var ifs strings.Builder
	for _, n := range nets {
		fmt.Fprintf(&ifs, "    <interface type='network'><source network='%s'/></interface>\n", n)
	}
	raw := fmt.Sprintf(`<domain type='qemu'>
  <name>%s</name>
  <uuid>%s</uuid>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
%s  </devices>
</domain>
`, escape(name), u, ifs.String())
	res, err := provision.Provision([]byte(raw), provision.Options{Policy: e.pol, Host: "nodeA"})
	if err != nil {
		e.t.Fatal(err)
	}
	return res.XML
}

func escape(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func (e *env) run(op string, xml []byte) error {
	return e.runCfg(e.cfg, op, xml)
}

func (e *env) runCfg(cfg Config, op string, xml []byte) error {
	return Run(cfg, Request{Domain: "d", Op: op, SubOp: "begin", Extra: "-"}, bytes.NewReader(xml))
}

func (e *env) store() *store.Store {
	e.t.Helper()
	st, err := store.Open(e.cfg.StateDir, store.Options{NoSync: true})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { st.Close() })
	return st
}

func (e *env) tagged() []netdev.Device {
	e.t.Helper()
	devs, err := netdev.New(nil, nil).List()
	if err != nil {
		e.t.Fatal(err)
	}
	return devs
}

func TestUnmanagedDomainTouchesNothing(t *testing.T) {
	e := setup(t, 0)
	plain := []byte(`<domain type='qemu'><name>plain</name><uuid>` + uuid.NewString() + `</uuid><devices>
<interface type='direct'><source dev='up0' mode='bridge'/></interface></devices></domain>`)
	for _, op := range []string{"prepare", "start", "started", "stopped", "release", "reconnect", "migrate", "restore"} {
		var out bytes.Buffer
		cfg := e.cfg
		cfg.Stdout = &out
		if err := e.runCfg(cfg, op, plain); err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		if out.Len() != 0 {
			t.Fatalf("%s printed %q for an unmanaged domain", op, out.String())
		}
	}
	if _, err := os.Stat(e.cfg.StateDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state dir was created for an unmanaged domain: %v", err)
	}
}

func TestPrepareReleaseMacvtap(t *testing.T) {
	e := setup(t, 0)
	u := uuid.New()
	xml := e.guest("web", u, "lan")
	for i := 0; i < 2; i++ { // a re-run is safe
		if err := e.run("prepare", xml); err != nil {
			t.Fatalf("prepare #%d: %v", i+1, err)
		}
	}
	for _, op := range []string{"start", "started"} {
		if err := e.run(op, xml); err != nil {
			t.Fatalf("%s: %v", op, err)
		}
	}
	st := e.store()
	d, ok, err := st.GetDomain(u.String())
	if err != nil || !ok || len(d.Interfaces) != 1 || d.Interfaces[0].State != store.StateReady || d.Interfaces[0].Network != "lan" {
		t.Fatalf("record after prepare: %+v %v %v", d, ok, err)
	}
	st.Close()
	for i := 0; i < 2; i++ {
		if err := e.run("release", xml); err != nil {
			t.Fatalf("release #%d: %v", i+1, err)
		}
	}
	st = e.store()
	if _, ok, _ := st.GetDomain(u.String()); ok {
		t.Fatal("record left after release")
	}
}

func TestReleaseNeverPrepared(t *testing.T) {
	e := setup(t, 1)
	xml := e.guest("never", uuid.New(), "lan", "pool")
	for _, op := range []string{"stopped", "release", "release"} {
		if err := e.run(op, xml); err != nil {
			t.Fatalf("%s: %v", op, err)
		}
	}
}

func TestPrepareFailsForMissingParentAndRollsBack(t *testing.T) {
	e := setup(t, 1)
	u := uuid.New()
	// pool first (creates a device), then a network whose parent is missing.
	xml := e.guest("broken", u, "pool", "gone")
	err := e.run("prepare", xml)
	if err == nil || !strings.Contains(err.Error(), "parent nope0 does not exist") || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("want an error naming the guest and parent nope0, got %v", err)
	}
	if devs := e.tagged(); len(devs) != 0 {
		t.Fatalf("rollback left devices: %+v", devs)
	}
	st := e.store()
	if _, ok, _ := st.GetDomain(u.String()); ok {
		t.Fatal("rollback left a record")
	}
	if rs, _ := st.HolderReservations(u.String()); len(rs) != 0 {
		t.Fatalf("rollback left reservations: %+v", rs)
	}
}

func TestPoolLifecycle(t *testing.T) {
	e := setup(t, 2)
	a, b, c := uuid.New(), uuid.New(), uuid.New()
	xa, xb, xc := e.guest("alpha", a, "pool"), e.guest("bravo", b, "pool"), e.guest("charlie", c, "pool")
	for _, x := range [][]byte{xa, xb} {
		if err := e.run("prepare", x); err != nil {
			t.Fatal(err)
		}
	}
	devs := e.tagged()
	lowers := map[string]bool{}
	for _, d := range devs {
		if d.Kind != "macvtap" || d.Mode != "passthrough" {
			t.Fatalf("pool device %+v is not a passthrough macvtap", d)
		}
		lowers[d.Parent] = true
	}
	if len(devs) != 2 || !lowers["vf0"] || !lowers["vf1"] {
		t.Fatalf("want one passthrough macvtap on each of vf0, vf1; got %+v", devs)
	}
	st := e.store()
	stat, err := host.Collect(st, netdev.New(nil, nil), nil, []host.PoolSpec{{Name: "pool", Devices: []string{"vf0", "vf1"}}}, "/sys")
	st.Close()
	if err != nil || len(stat.Pools) != 1 || stat.Pools[0].Size != 2 || stat.Pools[0].Free != 0 || len(stat.Pools[0].Holders) != 2 {
		t.Fatalf("pool status: %+v %v", stat, err)
	}
	err = e.run("prepare", xc)
	if err == nil || !strings.Contains(err.Error(), `pool "pool"`) || !strings.Contains(err.Error(), "alpha") || !strings.Contains(err.Error(), "bravo") {
		t.Fatalf("guest 3 on a pool of 2: want an error naming the pool and its holders, got %v", err)
	}
	if err := e.run("release", xa); err != nil {
		t.Fatal(err)
	}
	if err := e.run("prepare", xc); err != nil {
		t.Fatalf("after alpha released, charlie should start: %v", err)
	}
	for _, x := range [][]byte{xb, xc} {
		if err := e.run("release", x); err != nil {
			t.Fatal(err)
		}
	}
	if devs := e.tagged(); len(devs) != 0 {
		t.Fatalf("devices left: %+v", devs)
	}
}

func TestHostAccessShim(t *testing.T) {
	e := setup(t, 0)
	x1, x2 := e.guest("one", uuid.New(), "access"), e.guest("two", uuid.New(), "access")
	shim := host.ShimName("access", "up0")
	for _, x := range [][]byte{x1, x2} {
		if err := e.run("prepare", x); err != nil {
			t.Fatal(err)
		}
	}
	l := e.ns.Link(t, shim)
	addrs, err := e.ns.NL.AddrList(l, 2)
	if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != "192.0.2.1/24" {
		t.Fatalf("shim addresses: %v %v", addrs, err)
	}
	if err := e.run("release", x1); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := netdev.New(nil, nil).Find(shim); !ok {
		t.Fatal("shim removed while guest two still uses the network")
	}
	if err := e.run("release", x2); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := netdev.New(nil, nil).Find(shim); ok {
		t.Fatal("shim left after the last guest released")
	}
}

func TestVhostCheck(t *testing.T) {
	e := setup(t, 0)
	x := e.guest("vh", uuid.New(), "vh")
	if !bytes.Contains(x, []byte(`name="vhost"`)) {
		t.Fatalf("vhost = on did not write <driver name='vhost'>:\n%s", x)
	}
	err := e.run("prepare", x)
	if err == nil || !strings.Contains(err.Error(), "vhost-net") {
		t.Fatalf("want a vhost-net error, got %v", err)
	}
	if err := os.WriteFile(filepath.Join(e.cfg.DevRoot, "vhost-net"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.run("prepare", x); err != nil {
		t.Fatalf("with /dev/vhost-net: %v", err)
	}
}

func TestMigrateRewritesForThisHost(t *testing.T) {
	e := setup(t, 0)
	x := e.guest("mover", uuid.New(), "lan")
	var out bytes.Buffer
	cfg := e.cfg
	cfg.Stdout = &out
	cfg.Host = "nodeB"
	for _, op := range []string{"migrate", "restore"} {
		out.Reset()
		if err := e.runCfg(cfg, op, x); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), `<source dev="up1" mode="bridge"/>`) {
			t.Fatalf("%s did not rewrite the parent for nodeB:\n%s", op, out.String())
		}
	}
	// On this very host, a parent that does not exist fails the migration
	// with a message naming the fix.
	local := e.cfg
	local.Stdout = &out
	hn, _ := os.Hostname()
	local.Host = hn
	if err := e.runCfg(local, "migrate", x); err != nil {
		t.Fatalf("up0 exists here: %v", err)
	}
	lp := filepath.Join(e.polDir, "local.toml")
	os.WriteFile(lp, []byte(fmt.Sprintf("[networks.lan]\nkind = \"macvtap\"\nparent = \"up0\"\n\n[hosts.%q.networks.lan]\nparent = \"absent0\"\n", hn)), 0o600)
	local.PolicyPath = lp
	err := e.runCfg(local, "migrate", x)
	if err == nil || !strings.Contains(err.Error(), "parent absent0 does not exist here") {
		t.Fatalf("migrate to a host without the parent: %v", err)
	}
	// A network this host's policy lacks: a clear error.
	cfg.PolicyPath = filepath.Join(e.polDir, "other.toml")
	if err := os.WriteFile(cfg.PolicyPath, []byte("[networks.wan]\nkind = \"macvtap\"\nparent = \"up0\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = e.runCfg(cfg, "migrate", x)
	if err == nil || !strings.Contains(err.Error(), `network "lan"`) {
		t.Fatalf("want an error naming network lan, got %v", err)
	}
}

func TestReconnectRebuildsRecords(t *testing.T) {
	e := setup(t, 1)
	u := uuid.New()
	x := e.guest("running", u, "pool")
	if err := e.run("prepare", x); err != nil {
		t.Fatal(err)
	}
	// libvirtd restarts; meanwhile the state was lost.
	if err := os.RemoveAll(e.cfg.StateDir); err != nil {
		t.Fatal(err)
	}
	if err := e.run("reconnect", x); err != nil {
		t.Fatal(err)
	}
	st := e.store()
	if d, ok, _ := st.GetDomain(u.String()); !ok || len(d.Interfaces) != 1 || d.Interfaces[0].Parent != "vf0" {
		t.Fatalf("record not rebuilt: %+v", d)
	}
	if rs, _ := st.HolderReservations(u.String()); len(rs) != 1 {
		t.Fatalf("reservation not rebuilt: %+v", rs)
	}
	st.Close()
	// A device gone under a running guest: reconnect still succeeds (a
	// failure would make libvirt kill the guest) and logs the problem.
	if err := netdev.New(nil, nil).Delete(e.tagged()[0].Name); err != nil {
		t.Fatal(err)
	}
	if err := e.run("reconnect", x); err != nil {
		t.Fatalf("reconnect must not fail: %v", err)
	}
	if err := e.run("start", x); err == nil {
		t.Fatal("start verify should report the missing device")
	}
}

// endless is an unbounded stream of junk.
type endless struct{ n int64 }

func (r *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	r.n += int64(len(p))
	return len(p), nil
}

func TestInputBounds(t *testing.T) {
	e := setup(t, 0)
	// 64 MB (and more): refused after reading the bound, quickly.
	src := &endless{}
	start := time.Now()
	err := Run(e.cfg, Request{"d", "prepare", "begin", "-"}, io.LimitReader(src, 64<<20))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("64 MB stdin: %v", err)
	}
	if src.n > 5<<20 || time.Since(start) > 2*time.Second {
		t.Fatalf("read %d bytes in %v before refusing", src.n, time.Since(start))
	}
	// Garbage and truncated documents that claim virtap's namespace.
	good := e.guest("t", uuid.New(), "lan")
	for name, in := range map[string][]byte{
		"garbage":   []byte("\x00\xff<<<" + "https://virtap.dev/xmlns/domain/1"),
		"truncated": good[:len(good)/2+40],
	} {
		if err := e.run("prepare", in); err == nil {
			t.Errorf("%s: prepare accepted it", name)
		}
		if err := e.run("release", in); err != nil {
			t.Errorf("%s: release must exit 0, got %v", name, err)
		}
	}
}

func TestHostileNamesStayInStateDir(t *testing.T) {
	e := setup(t, 1)
	os.Remove("/tmp/p")
	for _, name := range []string{"../../x", "$(touch /tmp/p)", "a b;rm -rf /", "<&>"} {
		x := e.guest(name, uuid.New(), "lan", "pool")
		if err := e.run("prepare", x); err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		if err := e.run("release", x); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat("/tmp/p"); err == nil {
		t.Fatal("a domain name ran a command")
	}
	var files []string
	_ = filepath.Walk(e.polDir, func(p string, fi os.FileInfo, _ error) error {
		if fi != nil && !fi.IsDir() {
			files = append(files, strings.TrimPrefix(p, e.polDir))
		}
		return nil
	})
	want := "/policy.toml /state/virtap.db /state/virtap.lock"
	if strings.Join(files, " ") != want {
		t.Fatalf("files: %v, want %s", files, want)
	}
	for _, dir := range []string{filepath.Dir(e.polDir), "/x"} {
		if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
			t.Fatalf("%s/x was created", dir)
		}
	}
}

// child starts the test binary as a hook process in this test's namespace
// (the child inherits the namespace of the locked thread that forks it).
func (e *env) child(op string, xml []byte) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "VIRTAP_TEST_HOOK=d "+op+" begin -", "VIRTAP_POLICY="+e.cfg.PolicyPath,
		"VIRTAP_STATE_DIR="+e.cfg.StateDir, "VIRTAP_DEV_ROOT="+e.cfg.DevRoot)
	cmd.Stdin = bytes.NewReader(xml)
	return cmd
}

func TestConcurrentPreparesProcesses(t *testing.T) {
	e := setup(t, 8)
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for i := 0; i < 32; i++ {
		c := e.child("prepare", e.guest(fmt.Sprintf("g%d", i), uuid.New(), "pool"))
		var b bytes.Buffer
		c.Stderr = &b
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, c), append(outs, &b)
	}
	ok, exhausted := 0, 0
	for i, c := range cmds {
		err := c.Wait()
		switch {
		case err == nil:
			ok++
		case strings.Contains(outs[i].String(), "exhausted"):
			exhausted++
		default:
			t.Errorf("child %d: %v: %s", i, err, outs[i])
		}
	}
	if ok != 8 || exhausted != 24 {
		t.Fatalf("32 prepares on a pool of 8: %d succeeded, %d exhausted", ok, exhausted)
	}
	lowers := map[string]int{}
	for _, d := range e.tagged() {
		lowers[d.Parent]++
	}
	if len(lowers) != 8 {
		t.Fatalf("devices per lower: %v", lowers)
	}
	for l, n := range lowers {
		if n != 1 {
			t.Fatalf("%s used %d times", l, n)
		}
	}
}

func TestKilledPreparesThenGC(t *testing.T) {
	e := setup(t, 4)
	rng := rand.New(rand.NewPCG(1, 2))
	killed, finished := 0, 0
	for i := 0; i < 100; i++ {
		c := e.child("prepare", e.guest(fmt.Sprintf("k%d", i), uuid.New(), "pool", "lan"))
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		// Process start takes a few ms; spread the kills over start-up
		// and the hook's own work.
		time.Sleep(time.Duration(rng.IntN(12000)) * time.Microsecond)
		_ = c.Process.Signal(syscall.SIGKILL)
		_ = c.Wait()
		if ws, ok := c.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			killed++
		} else {
			finished++
		}
	}
	if killed < 10 {
		t.Fatalf("only %d of 100 prepares were killed: the test does not test crashes", killed)
	}
	st := e.store()
	r := host.New(hclog.NewNullLogger(), netdev.New(nil, nil), st, paths.Roots{})
	if _, err := r.GC(func(uuid.UUID) bool { return false }, nil, false); err != nil {
		t.Fatalf("gc: %v", err)
	}
	if devs := e.tagged(); len(devs) != 0 {
		t.Fatalf("gc left devices: %+v", devs)
	}
	doms, _ := st.Domains()
	res, _ := st.Reservations("pool")
	if len(doms) != 0 || len(res) != 0 {
		t.Fatalf("gc left records %+v or reservations %+v", doms, res)
	}
	if problems, err := st.Check(); err != nil || len(problems) != 0 {
		t.Fatalf("store inconsistent: %v %v", problems, err)
	}
	t.Logf("%d of 100 prepares were killed, %d finished first", killed, finished)
}

// A crash between the kernel's link creation and the alias write leaves an
// untagged device under a name virtap's record claims: release and a
// re-run of prepare remove it; an unclaimed untagged device is never touched.
func TestUntaggedClaimedDevice(t *testing.T) {
	e := setup(t, 2)
	u := uuid.New()
	x := e.guest("crashy", u, "pool")
	if err := e.run("prepare", x); err != nil {
		t.Fatal(err)
	}
	dev := e.tagged()[0]
	untag := func() {
		l := e.ns.Link(t, dev.Name)
		if err := e.ns.NL.LinkSetAlias(l, ""); err != nil {
			t.Fatal(err)
		}
	}
	untag()
	if err := e.run("prepare", x); err != nil {
		t.Fatalf("re-run over an untagged claimed device: %v", err)
	}
	if d, ok, _ := netdev.New(nil, nil).Find(dev.Name); !ok || !d.Ours() {
		t.Fatalf("device not re-made with its tag: %+v", d)
	}
	// What a crash between creation and tagging leaves: the write-ahead
	// record still pending, the device untagged.
	untag()
	func() {
		st := e.store()
		defer st.Close()
		doms, _ := st.Domains()
		for _, ifc := range doms[0].Interfaces {
			if err := st.SetIfaceState(doms[0].UUID, ifc.MAC, store.StatePending); err != nil {
				t.Fatal(err)
			}
		}
	}()
	if err := e.run("release", x); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := netdev.New(nil, nil).Find(dev.Name); ok {
		t.Fatal("release left the untagged claimed device")
	}
	// An untagged device under a name no record claims stays.
	other := e.guest("other", uuid.New(), "pool")
	res := bytes.Index(other, []byte(`dev="vtp`))
	name := string(other[res+5 : res+5+15])
	la := netlink.NewLinkAttrs()
	la.Name = name
	la.ParentIndex = e.ns.Link(t, "vf1").Attrs().Index
	if err := e.ns.NL.LinkAdd(&netlink.Macvtap{Macvlan: netlink.Macvlan{LinkAttrs: la, Mode: netlink.MACVLAN_MODE_PASSTHRU}}); err != nil {
		t.Fatal(err)
	}
	if err := e.run("prepare", other); err == nil {
		t.Fatal("prepare took over an untagged device no record claims")
	}
	if _, ok, _ := netdev.New(nil, nil).Find(name); !ok {
		t.Fatal("an unclaimed untagged device was deleted")
	}
}

// When the state lock cannot be had, release still removes the guest's
// tagged devices (the tag is the truth); the record waits for gc.
func TestReleaseWithoutStateLock(t *testing.T) {
	e := setup(t, 1)
	u := uuid.New()
	x := e.guest("locked", u, "pool")
	if err := e.run("prepare", x); err != nil {
		t.Fatal(err)
	}
	holder := e.store() // holds the exclusive lock
	cfg := e.cfg
	cfg.LockTimeout = 200 * time.Millisecond
	start := time.Now()
	if err := e.runCfg(cfg, "release", x); err != nil {
		t.Fatalf("release must exit 0: %v", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("release waited %v", time.Since(start))
	}
	if devs := e.tagged(); len(devs) != 0 {
		t.Fatalf("devices left: %+v", devs)
	}
	if _, ok, _ := holder.GetDomain(u.String()); !ok {
		t.Fatal("the record should wait for gc")
	}
	holder.Close()
	st := e.store()
	r := host.New(hclog.NewNullLogger(), netdev.New(nil, nil), st, paths.Roots{})
	if _, err := r.GC(func(uuid.UUID) bool { return false }, nil, false); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := st.GetDomain(u.String()); ok {
		t.Fatal("gc left the record")
	}
}
