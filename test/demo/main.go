// Command demo is `make demo`: on a fresh machine, as root, it brings up
// libvirt, installs virtap's hook, builds a stand-in LAN (an uplink veth, a
// switch namespace with a bridge, an external host), provisions two guests
// with the policy of examples/macvtap-bridge (its parent pointed at the
// demo uplink through a [hosts.virtap-demo] section), boots them, shows
// their serial markers as they reach each other, runs `virtap status`, and
// cleans up everything it made. It exits 0 only when the two guests
// reached each other.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/virtap/virtap/test/harness"
	"github.com/virtap/virtap/test/internal/run"
)

// demoHost is the name the demo gives this machine in the policy.
const demoHost = "virtap-demo"

func main() {
	bin := flag.String("bin", "", "directory holding virtap and virtap-hook (default: the repository's bin/, built by make build)")
	keep := flag.Bool("keep", false, "leave the guests running at the end (clean up with Ctrl-C)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demo{ctx: ctx}
	err := d.run(*bin, *keep)
	if cerr := d.cleanup(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo FAILED: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("\ndemo OK: two guests on macvtap (bridge mode) reached each other and the LAN; everything the demo made is gone.")
}

type demo struct {
	ctx      context.Context
	step     int
	undo     []func() error // run last-in first-out by cleanup
	unlock   func()
	started  time.Time
	guestLog []string
}

// say prints a numbered step.
func (d *demo) say(format string, args ...any) {
	d.step++
	if d.started.IsZero() {
		d.started = time.Now()
	}
	fmt.Printf("\n[%d] %s  (+%s)\n", d.step, fmt.Sprintf(format, args...), time.Since(d.started).Round(100*time.Millisecond))
}

func (d *demo) info(format string, args ...any) { fmt.Printf("    "+format+"\n", args...) }

func (d *demo) onCleanup(what string, f func() error) {
	d.undo = append(d.undo, func() error {
		d.info("cleanup: %s", what)
		return f()
	})
}

func (d *demo) cleanup() error {
	if len(d.undo) == 0 {
		return nil
	}
	d.say("cleaning up everything the demo made")
	var errs []error
	for i := len(d.undo) - 1; i >= 0; i-- {
		if err := d.undo[i](); err != nil {
			d.info("  failed: %v", err)
			errs = append(errs, err)
		}
	}
	d.undo = nil
	if d.unlock != nil {
		d.unlock()
	}
	return errors.Join(errs...)
}

func (d *demo) interrupted() error {
	if d.ctx.Err() != nil {
		return errors.New("interrupted")
	}
	return nil
}

func (d *demo) run(binDir string, keep bool) error {
	if os.Geteuid() != 0 {
		return errors.New("run the demo as root (sudo make demo): it creates network namespaces, links and guests")
	}
	root, err := run.RepoRoot()
	if err != nil {
		return err
	}
	if binDir == "" {
		binDir = filepath.Join(root, "bin")
	}
	v := &harness.Virtap{Bin: filepath.Join(binDir, "virtap"), Hook: filepath.Join(binDir, "virtap-hook")}
	for _, b := range []string{v.Bin, v.Hook} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("%s: %w (run make build first)", b, err)
		}
	}

	d.say("taking %s (one demo or e2e test at a time per machine)", harness.HostLockPath)
	if d.unlock, err = harness.LockHost(5*time.Minute, func(s string) { d.info("%s", s) }); err != nil {
		return err
	}

	d.say("installing missing packages, building the guest image, starting libvirt if it is not running")
	env, err := harness.SetupEnv()
	if err != nil {
		return err
	}
	for _, n := range env.Libvirt.Notes {
		d.info("%s", n)
	}
	d.info("guest kernel %s (%s), initramfs %s", env.Image.KernelRelease, env.Image.Kernel, env.Image.Initrd)
	d.onCleanup("stop the libvirt daemons the demo started (if any)", harness.Teardown)
	if err := d.interrupted(); err != nil {
		return err
	}

	work, err := os.MkdirTemp("", "virtap-demo-")
	if err != nil {
		return err
	}
	d.onCleanup("remove "+work, func() error { return os.RemoveAll(work) })
	v.StateDir = filepath.Join(work, "state")

	d.say("building the stand-in LAN: an uplink veth, a switch namespace with a bridge, an external host at %s", harness.ExtIP)
	topo, err := harness.StartTopology(1, false)
	if err != nil {
		return err
	}
	d.onCleanup("delete uplink "+topo.Uplinks[0]+" and namespaces "+topo.SwitchNS+", "+topo.ExtNS, topo.Close)
	d.info("uplink %s (init netns)  <->  %s/%s port %s  <->  %s eth0 %s", topo.Uplinks[0], topo.SwitchNS, topo.Bridge, topo.Ports[0], topo.ExtNS, harness.ExtIP)

	d.say("writing the policy: examples/macvtap-bridge/policy.toml plus a host section that points 'lan' at %s", topo.Uplinks[0])
	example, err := os.ReadFile(filepath.Join(root, "examples", "macvtap-bridge", "policy.toml"))
	if err != nil {
		return err
	}
	pol := filepath.Join(work, "policy.toml")
	text := string(example) + fmt.Sprintf("\n# added by make demo: this machine, as host %q, has the demo uplink instead of eth0\n[hosts.%s.networks.lan]\nparent = %q\n", demoHost, demoHost, topo.Uplinks[0])
	if err := os.WriteFile(pol, []byte(text), 0o644); err != nil {
		return err
	}
	fmt.Print(indent(text))
	out, _, err := v.Run(nil, "--policy", pol, "policy", "check", "--host", demoHost)
	if err != nil {
		return err
	}
	fmt.Print(indent(out))

	d.say("installing the hook: virtap hooks install --hooks-dir %s --host %s", harness.HooksDir, demoHost)
	if err := installHook(v, pol); err != nil {
		return err
	}
	d.onCleanup("virtap hooks uninstall", v.UninstallHooks)
	if env.Libvirt.Owned() {
		d.info("restarting libvirtd (it reads hooks only when it starts)")
		if err := env.Libvirt.Restart(); err != nil {
			return err
		}
	} else {
		d.info("libvirtd was already running and is not the demo's: it will not run the hook until it restarts;")
		d.info("the guests still get their macvtaps from libvirt, but virtap status shows no hook records")
	}

	type guest struct{ name, uuid, ip, peer, serial string }
	gs := []*guest{
		{name: "virtap-demo-a", ip: harness.GuestIP(0), peer: harness.GuestIP(1)},
		{name: "virtap-demo-b", ip: harness.GuestIP(1), peer: harness.GuestIP(0)},
	}
	for _, g := range gs {
		g.uuid = uuid.NewString()
		g.serial = filepath.Join(work, g.name+".serial")
		cfg := harness.GuestConfig{IP: g.ip + "/24", Peers: []string{g.peer, harness.ExtIP}, Tries: 20, Interval: 2}
		// The example guest's interface: it joins the policy network "lan".
		x := harness.GuestXML(g.name, g.uuid, env.Image.Kernel, env.Image.Initrd, cfg.Cmdline(), g.serial,
			"<interface type='network'><source network='lan'/></interface>")
		d.say("provisioning %s: virtap provision --policy policy.toml --host %s (interface joins network 'lan')", g.name, demoHost)
		px, err := v.Provision(pol, demoHost, x)
		if err != nil {
			return err
		}
		fmt.Print(indent(interfaceLines(px)))
		if exists, _ := harness.DomainExists(g.name); exists {
			return fmt.Errorf("a domain named %s exists already (a demo left over?); remove it: virsh destroy %s; virsh undefine %s", g.name, g.name, g.name)
		}
		if err := harness.DefineXML(px); err != nil {
			return err
		}
		name := g.name
		d.onCleanup("destroy and undefine "+name, func() error {
			return errors.Join(harness.DestroyDomain(name), harness.UndefineDomain(name))
		})
	}
	for _, g := range gs {
		d.say("starting %s (TCG guest, %s)", g.name, g.ip)
		if err := harness.StartDomain(g.name); err != nil {
			return err
		}
	}

	d.say("waiting for the guests' serial markers (they ping each other and the external host)")
	deadline := 120 * time.Second
	for _, g := range gs {
		for _, pat := range []string{`^VIRTAP-BOOT `, `^VIRTAP-NET `, `^VIRTAP-PING ` + regexp.QuoteMeta(g.peer) + ` (OK|FAIL)$`, `^VIRTAP-PING ` + regexp.QuoteMeta(harness.ExtIP) + ` (OK|FAIL)$`} {
			if err := d.interrupted(); err != nil {
				return err
			}
			line, err := harness.WaitSerial(g.serial, pat, deadline)
			if err != nil {
				return fmt.Errorf("%s: %w", g.name, err)
			}
			d.info("%-14s %s", g.name, line)
		}
	}
	for _, g := range gs {
		line, err := harness.WaitSerial(g.serial, `^VIRTAP-PING `+regexp.QuoteMeta(g.peer)+` `, time.Second)
		if err != nil || !strings.HasSuffix(line, " OK") {
			return fmt.Errorf("%s did not reach %s: %q %v", g.name, g.peer, line, err)
		}
	}
	off := harness.SerialSize(gs[0].serial)
	if line, err := harness.WaitSerialAfter(gs[0].serial, off, `^VIRTAP-LOOP \d+ `+regexp.QuoteMeta(gs[0].peer)+` OK$`, 30*time.Second); err != nil {
		return fmt.Errorf("%s: %w", gs[0].name, err)
	} else {
		d.info("%-14s %s   (its ping loop keeps going)", gs[0].name, line)
	}

	d.say("virtap status")
	release := harness.HoldLibvirt()
	out, _, err = v.Run(nil, "--policy", pol, "status")
	release()
	if err != nil {
		return err
	}
	fmt.Print(indent(out))
	if env.Libvirt.Owned() {
		st, err := v.Status()
		if err != nil {
			return err
		}
		if len(st.Domains) != len(gs) {
			return fmt.Errorf("the hook recorded %d guests, want %d (did libvirtd run it?)", len(st.Domains), len(gs))
		}
		d.info("the hook recorded both guests at prepare (virtap status --json: %d records in %s)", len(st.Domains), v.StateDir)
	}

	if keep {
		d.say("--keep: guests stay up; serial logs %s and %s; press Ctrl-C to clean up", gs[0].serial, gs[1].serial)
		<-d.ctx.Done()
	}
	return nil
}

// installHook installs virtap's hook for host demoHost.
func installHook(v *harness.Virtap, pol string) error {
	if err := v.InstallHooks(pol, "--host", demoHost); err != nil {
		return err
	}
	return nil
}

// interfaceLines is the <interface> element of a domain XML (for show).
func interfaceLines(x string) string {
	i := strings.Index(x, "<interface")
	j := strings.Index(x, "</interface>")
	if i < 0 || j < i {
		return "(no interface?)\n"
	}
	return x[i:j+len("</interface>")] + "\n"
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("    | " + l + "\n")
	}
	return b.String()
}
