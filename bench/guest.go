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
	install := func(on bool) error {
		if on {
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
	var with, without []time.Duration
	for round := 0; round < 2; round++ {
		for _, on := range []bool{false, true} {
			if err := install(on); err != nil {
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
				if on {
					with = append(with, d)
				} else {
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
	mw, mo := median(with), median(without)
	added := float64(mw-mo) / 1e6
	return []Row{judge(Row{Item: "5", Name: "virsh start to running, hooks installed", Measured: fmtDur(mw), Anchor: "no hooks " + fmtDur(mo),
		Ratio: float64(mw) / float64(mo), Added: added,
		Note: fmt.Sprintf("%d starts each, two alternating blocks (libvirtd restarted to load/unload the hook), medians; TCG guest on a provisioned macvtap", len(with))},
		Target{Text: guestTarget, AddedMax: 15})}, nil
}
