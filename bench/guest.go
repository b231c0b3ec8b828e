package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"

	"github.com/virtap/virtap/hooks"
	"github.com/virtap/virtap/provision"
	"github.com/virtap/virtap/provision/policy"
	"github.com/virtap/virtap/test/harness"
)

const guestTarget = "<= +15 ms"

// benchGuest measures item 5 with the end-to-end harness: `virsh start` of
// a TCG guest on a virtap-provisioned macvtap until virsh returns (libvirt
// reports the domain running after the prepare, start and started hooks),
// with and without virtap's hook installed. libvirtd reads hooks only when
// it starts, so this needs a libvirtd the harness started itself: another
// one is never restarted.
func benchGuest(cfg config) (rows []Row, err error) {
	env, err := harness.SetupEnv()
	if err != nil {
		return nil, err
	}
	undoTeardown := atInterrupt(func() { _ = harness.Teardown() })
	defer undoTeardown()
	defer func() {
		if terr := harness.Teardown(); terr != nil {
			err = errors.Join(err, fmt.Errorf("stop libvirtd: %w", terr))
		}
	}()
	if !env.Libvirt.Owned() {
		return []Row{notMeasured("5", "virsh start, hooks added", guestTarget,
			"not measured: a libvirtd not started by this run is running (another user's tests?); libvirtd reads hooks only at start and the harness never restarts a daemon it does not own. Stop it and run make bench again.")}, nil
	}
	hooksDir := hooks.DefaultHooksDir
	if _, err := os.Lstat(hooks.HookPath(hooksDir)); err == nil {
		return []Row{notMeasured("5", "virsh start, hooks added", guestTarget,
			"not measured: "+hooks.HookPath(hooksDir)+" is already installed (someone else's setup); not touching it")}, nil
	}
	topo, err := harness.StartTopology(1, false)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := topo.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	work, err := os.MkdirTemp(cfg.diskTmp, "virtap-bench-guest-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	polPath := filepath.Join(work, "policy.toml")
	pol := fmt.Sprintf("[networks.lan]\nkind = \"macvtap\"\nparent = %q\nmode = \"bridge\"\n", topo.Uplinks[0])
	if err := os.WriteFile(polPath, []byte(pol), 0o644); err != nil {
		return nil, err
	}
	p, err := policy.Load(polPath)
	if err != nil {
		return nil, err
	}
	state := filepath.Join(work, "state")
	name := topo.Prefix + "-bench"
	id := uuid.NewString()
	raw := harness.GuestXML(name, id, env.Image.Kernel, env.Image.Initrd, harness.GuestConfig{NoLoop: true}.Cmdline(),
		filepath.Join(work, name+".serial"), harness.NetworkInterface("lan", ""))
	prov, err := provision.Provision([]byte(raw), provision.Options{Policy: p, Host: "bench"})
	if err != nil {
		return nil, err
	}
	if err := harness.DefineXML(string(prov.XML)); err != nil {
		return nil, err
	}
	defer func() {
		_ = harness.DestroyDomain(name)
		if uerr := harness.UndefineDomain(name); uerr != nil {
			err = errors.Join(err, uerr)
		}
	}()
	// A third condition: the Go floor installed as the only hook, which
	// tells libvirt's own cost of running hooks from virtap's.
	floorHook := filepath.Join(hooksDir, "qemu.d", "zz-virtap-bench-floor")
	_, statErr := os.Stat(hooksDir)
	createdDir := errors.Is(statErr, os.ErrNotExist)
	defer func() {
		_ = os.Remove(floorHook)
		if createdDir { // leave /etc/libvirt as it was: remove only empty dirs
			_ = os.Remove(filepath.Join(hooksDir, "qemu.d"))
			_ = os.Remove(hooksDir)
		}
	}()
	undoFloor := atInterrupt(func() { _ = os.Remove(floorHook) })
	defer undoFloor()
	install := func(mode string) error {
		_ = os.Remove(floorHook)
		if mode == "floor" {
			if _, err := hooks.Uninstall(hooksDir); err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(floorHook), 0o755); err != nil {
				return err
			}
			bin, err := os.ReadFile(cfg.floorBin)
			if err != nil {
				return err
			}
			if err := os.WriteFile(floorHook, bin, 0o755); err != nil {
				return err
			}
			return env.Libvirt.Restart()
		}
		if mode == "virtap" {
			if _, err := hooks.Install(hooks.InstallOptions{HooksDir: hooksDir, Binary: cfg.hookBin,
				HookConfig: hooks.HookConfig{Policy: polPath, StateDir: state, Host: "bench", LogLevel: "warn"}}); err != nil {
				return err
			}
		} else if _, err := hooks.Uninstall(hooksDir); err != nil {
			return err
		}
		return env.Libvirt.Restart()
	}
	undoHook := atInterrupt(func() { _, _ = hooks.Uninstall(hooksDir) })
	defer undoHook()
	defer func() {
		if _, uerr := hooks.Uninstall(hooksDir); uerr != nil {
			err = errors.Join(err, uerr)
		}
	}()
	startOnce := func() (time.Duration, error) {
		t0 := time.Now()
		if err := harness.StartDomain(name); err != nil {
			return 0, err
		}
		took := time.Since(t0)
		if st, err := harness.DomainState(name); err != nil || st != "running" {
			return 0, fmt.Errorf("after virsh start: state %q (%v)", st, err)
		}
		return took, harness.DestroyDomain(name)
	}
	var with, without, floor []time.Duration
	for round := 0; round < 2; round++ {
		for _, mode := range []string{"none", "floor", "virtap"} {
			on := mode == "virtap"
			if err := install(mode); err != nil {
				return nil, err
			}
			if _, err := startOnce(); err != nil { // warm-up after the restart
				return nil, err
			}
			for i := 0; i < (cfg.guestRuns+1)/2; i++ {
				d, err := startOnce()
				if err != nil {
					return nil, err
				}
				switch mode {
				case "virtap":
					with = append(with, d)
				case "floor":
					floor = append(floor, d)
				default:
					without = append(without, d)
				}
			}
			if on && round == 0 {
				// The hook did run: release forgot the guest again, and the
				// store exists only because prepare wrote it.
				if _, err := os.Stat(filepath.Join(state, "virtap.db")); err != nil {
					return nil, fmt.Errorf("hook installed but it never wrote its state: %w", err)
				}
			}
		}
	}
	mw, mo, mf := median(with), median(without), median(floor)
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	return []Row{
		judge(Row{Item: "5", Name: "virsh start to running, virtap hook installed", Measured: fmtDur(mw), Anchor: "no hooks " + fmtDur(mo),
			Ratio: float64(mw) / float64(mo), Added: ms(mw - mo),
			Note: fmt.Sprintf("%d starts per condition in two alternating blocks (libvirtd restarted to load/unload hooks), medians; TCG guest on a provisioned macvtap", len(with))},
			Target{Text: guestTarget, AddedMax: 15}),
		judge(Row{Item: "5b", Name: "virsh start, Go floor as the only hook", Measured: fmtDur(mf), Anchor: "no hooks " + fmtDur(mo),
			Ratio: float64(mf) / float64(mo), Added: ms(mf - mo), Note: "libvirt's own cost of running a hook (fork+exec from libvirtd, three calls per start)"}, Target{}),
		judge(Row{Item: "5c", Name: "virsh start, virtap hook vs Go floor hook", Measured: fmtDur(mw), Anchor: "floor hook " + fmtDur(mf),
			Ratio: float64(mw) / float64(mf), Added: ms(mw - mf), Note: "virtap's own share of the added time"}, Target{}),
	}, nil
}
