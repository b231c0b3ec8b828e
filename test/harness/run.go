package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"libvirt.org/go/libvirtxml"

	"github.com/virtap/virtap/internal/nstest"
	"github.com/virtap/virtap/test/image"
	"github.com/virtap/virtap/test/internal/run"
)

// Env is what end-to-end tests share within one test binary: a running
// libvirt and the guest image.
type Env struct {
	Libvirt *Libvirt
	Image   *image.GuestImage
}

var (
	envOnce sync.Once
	envVal  *Env
	envErr  error
)

// Setup returns the shared Env, bringing it up on first use (SetupEnv);
// the test fails when that fails. Call Teardown from TestMain.
func Setup(t testing.TB) *Env {
	t.Helper()
	nstest.RequireRoot(t)
	first := false
	env, err := setupEnv(func() { first = true })
	if err != nil {
		t.Fatalf("end-to-end environment: %v", err)
	}
	if first {
		for _, n := range env.Libvirt.Notes {
			t.Logf("harness: %s", n)
		}
		t.Logf("harness: kernel %s, initrd %s, ready in %s", env.Image.Kernel, env.Image.Initrd, envTook.Round(time.Millisecond))
	}
	return env
}

// SetupEnv is Setup for programs and TestMain (no testing.TB): it needs
// root, installs missing packages, builds the guest image and starts
// libvirt, once per process; later calls return the same Env (or error).
func SetupEnv() (*Env, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("the end-to-end environment needs root")
	}
	return setupEnv(nil)
}

var envTook time.Duration

func setupEnv(first func()) (*Env, error) {
	envOnce.Do(func() {
		if first != nil {
			first()
		}
		start := time.Now()
		defer func() { envTook = time.Since(start) }()
		if envErr = image.EnsurePackages(); envErr != nil {
			return
		}
		img, err := image.BuildGuestImage()
		if err != nil {
			envErr = fmt.Errorf("guest image: %w", err)
			return
		}
		lv, err := StartLibvirt()
		if err != nil {
			envErr = fmt.Errorf("libvirt: %w", err)
			return
		}
		lv.SetWarmUp(img)
		envVal = &Env{Libvirt: lv, Image: img}
	})
	return envVal, envErr
}

// Teardown stops the daemons Setup started (if it ran). For TestMain.
func Teardown() error {
	if envVal == nil {
		return nil
	}
	return envVal.Libvirt.Stop()
}

// Guest is one test domain. Its XML can be changed between NewGuest and
// Start (that is where virtap provisioning goes).
type Guest struct {
	Name      string
	UUID      string
	SerialLog string
	XML       string
	// FilterSeen, when set (VirtapWiring does), returns what the
	// anti-spoofing filter on host device dev counted, and whether dev has
	// one: NICReports needs it to tell a filter's drops from a dead NIC.
	FilterSeen func(dev string) (seen uint64, ok bool, err error)

	t          testing.TB
	env        *Env
	mu         sync.Mutex
	defined    bool
	bootOffset int64 // serial log size at the last (re)start
	restarted  bool  // the one restart for a dead NIC was used
}

// NewGuest builds the domain XML of a test guest named name (unique per
// test run: include a Topology.Prefix) with a fresh serial log in a test
// temp dir. The cleanup it registers dumps the serial, QEMU and libvirtd
// logs if the test failed, then destroys and undefines the domain.
func (e *Env) NewGuest(t testing.TB, name string, cfg GuestConfig, ifaces ...string) *Guest {
	t.Helper()
	dir := t.TempDir()
	g := &Guest{
		Name:      name,
		UUID:      uuid.NewString(),
		SerialLog: filepath.Join(dir, name+".serial"),
		t:         t,
		env:       e,
	}
	g.XML = GuestXML(g.Name, g.UUID, e.Image.Kernel, e.Image.Initrd, cfg.Cmdline(), g.SerialLog, ifaces...)
	t.Cleanup(func() {
		if t.Failed() {
			g.Dump()
		}
		if err := g.Destroy(); err != nil {
			t.Errorf("cleanup guest %s: %v", g.Name, err)
		}
	})
	return g
}

// Start defines and starts the guest from g.XML; the test fails on error.
func (g *Guest) Start() {
	g.t.Helper()
	if err := g.TryStart(); err != nil {
		g.t.Fatalf("start guest %s: %v", g.Name, err)
	}
}

// TryStart is Start returning the error (for tests that expect a failure).
func (g *Guest) TryStart() error {
	g.mu.Lock()
	g.defined = true
	g.mu.Unlock()
	if err := DefineXML(g.XML); err != nil {
		return err
	}
	off := SerialSize(g.SerialLog)
	g.mu.Lock()
	g.bootOffset = off
	g.mu.Unlock()
	return StartDomain(g.Name)
}

// Wait waits for a serial line matching pattern since the guest's last
// (re)start and returns it; the test fails (logs dumped by the cleanup) on
// timeout.
//
// Wait is how tests follow a guest's boot, so it is where a dead NIC (see
// NICReport.Dead) is recovered from: when the wait times out and the
// counters prove that the guest's frames vanished below libvirt and
// virtap, the guest is restarted once (logged) and the wait starts over.
// Any other timeout fails the test, with the counters in the message.
func (g *Guest) Wait(pattern string, timeout time.Duration) string {
	g.t.Helper()
	for {
		g.mu.Lock()
		off, restarted := g.bootOffset, g.restarted
		g.mu.Unlock()
		line, err := WaitSerialAfter(g.SerialLog, off, pattern, timeout)
		if err == nil {
			return line
		}
		reps, rerr := g.NICReports()
		dead := rerr == nil && len(reps) > 0
		for _, r := range reps {
			dead = dead && r.Dead()
		}
		if !dead || restarted {
			g.fail(err, reps, rerr)
		}
		g.t.Logf("guest %s: dead NIC, restarting the guest once (the NIC never passed a frame; see test/README.md): %s", g.Name, reportLines(reps))
		if err := g.Restart(); err != nil {
			g.t.Fatalf("guest %s: restart after a dead NIC: %v", g.Name, err)
		}
	}
}

// WaitAfter is Wait looking only at serial output after offset (see Mark),
// without the dead-NIC recovery: offsets belong to a boot that is running.
func (g *Guest) WaitAfter(offset int64, pattern string, timeout time.Duration) string {
	g.t.Helper()
	line, err := WaitSerialAfter(g.SerialLog, offset, pattern, timeout)
	if err != nil {
		reps, rerr := g.NICReports()
		g.fail(err, reps, rerr)
	}
	return line
}

func (g *Guest) fail(err error, reps []NICReport, rerr error) {
	g.t.Helper()
	if st, serr := DomainState(g.Name); serr == nil {
		err = fmt.Errorf("%w (domain state: %s)", err, st)
	}
	if rerr != nil {
		g.t.Fatalf("guest %s: %v\nnic counters: %v", g.Name, err, rerr)
	}
	g.t.Fatalf("guest %s: %v\n%s", g.Name, err, reportLines(reps))
}

func reportLines(reps []NICReport) string {
	var b strings.Builder
	for _, r := range reps {
		b.WriteString(r.String() + "\n")
	}
	return strings.TrimRight(b.String(), "\n")
}

// Restart destroys the running guest and starts it again from its
// definition, once: later waits look at the new boot only.
func (g *Guest) Restart() error {
	g.mu.Lock()
	g.restarted = true
	g.mu.Unlock()
	if err := DestroyDomain(g.Name); err != nil {
		return err
	}
	off := SerialSize(g.SerialLog)
	if err := StartDomain(g.Name); err != nil {
		return err
	}
	g.mu.Lock()
	g.bootOffset = off
	g.mu.Unlock()
	return nil
}

// Mark returns the current size of the serial log.
func (g *Guest) Mark() int64 { return SerialSize(g.SerialLog) }

// Destroy destroys and undefines the domain; doing it twice is fine.
func (g *Guest) Destroy() error {
	g.mu.Lock()
	defined := g.defined
	g.defined = false
	g.mu.Unlock()
	if !defined {
		return nil
	}
	if err := DestroyDomain(g.Name); err != nil {
		return err
	}
	return UndefineDomain(g.Name)
}

// LiveInterface is an interface of the running domain as libvirt reports it.
type LiveInterface struct {
	Type   string // direct, ethernet, bridge, network
	MAC    string
	Target string // host device, e.g. macvtap3
	Source string // direct: the lower device
	Mode   string // direct: the macvtap mode
}

// Interfaces parses the live domain XML.
func (g *Guest) Interfaces() ([]LiveInterface, error) {
	x, err := DumpXML(g.Name)
	if err != nil {
		return nil, err
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(x); err != nil {
		return nil, err
	}
	if d.Devices == nil {
		return nil, nil
	}
	var out []LiveInterface
	for _, i := range d.Devices.Interfaces {
		li := LiveInterface{}
		if i.MAC != nil {
			li.MAC = i.MAC.Address
		}
		if i.Target != nil {
			li.Target = i.Target.Dev
		}
		if s := i.Source; s != nil {
			switch {
			case s.Direct != nil:
				li.Type, li.Source, li.Mode = "direct", s.Direct.Dev, s.Direct.Mode
			case s.Ethernet != nil:
				li.Type = "ethernet"
			case s.Bridge != nil:
				li.Type, li.Source = "bridge", s.Bridge.Bridge
			case s.Network != nil:
				li.Type, li.Source = "network", s.Network.Network
			}
		}
		out = append(out, li)
	}
	return out, nil
}

// Dump logs the tails of the guest's serial log, its QEMU log and the
// libvirtd log, the counters of its NICs, and what hooks printed for it.
func (g *Guest) Dump() {
	g.t.Logf("---- serial log of %s (%s):\n%s", g.Name, g.SerialLog, run.Tail(g.SerialLog, 6000))
	if reps, err := g.NICReports(); err != nil {
		g.t.Logf("---- nic counters of %s: %v", g.Name, err)
	} else {
		g.t.Logf("---- nic counters of %s:\n%s", g.Name, reportLines(reps))
	}
	if g.env != nil && g.env.Libvirt != nil {
		g.t.Logf("---- hook runs for %s (libvirtd log):\n%s", g.Name, HookOutput(g.env.Libvirt.LogPath, g.Name))
	}
	g.t.Logf("---- qemu log of %s:\n%s", g.Name, run.Tail(QemuLogPath(g.Name), 4000))
	if g.env != nil && g.env.Libvirt != nil {
		g.t.Logf("---- libvirtd log %s:\n%s", g.env.Libvirt.LogPath, run.Tail(g.env.Libvirt.LogPath, 4000))
	}
	if x, err := DumpXML(g.Name); err == nil {
		g.t.Logf("---- live XML of %s:\n%s", g.Name, x)
	} else if _, serr := os.Stat(g.SerialLog); serr == nil {
		g.t.Logf("---- no live XML of %s: %v", g.Name, err)
	}
}
