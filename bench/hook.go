package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/provision"
	"github.com/virtap/virtap/provision/policy"
)

// hookVariant is one program the hook benchmark execs, as libvirtd would:
// four arguments, the domain XML on a pipe, a bare environment.
type hookVariant struct {
	name  string
	path  string
	args  []string
	env   []string
	stdin []byte
}

// runOnce forks, execs and waits for one hook process and returns the wall
// time from fork to reaped exit. The XML is already in the pipe (it fits
// the pipe buffer) and the write end closed, as when libvirtd has written it.
// cpu is the user+system time of the child.
func (v hookVariant) runOnce(stderr *os.File) (time.Duration, error) {
	d, _, err := v.run(stderr)
	return d, err
}

func (v hookVariant) run(stderr *os.File) (took, cpu time.Duration, err error) {
	r, w, err := os.Pipe()
	if err != nil {
		return 0, 0, err
	}
	defer r.Close()
	if _, err := w.Write(v.stdin); err != nil {
		w.Close()
		return 0, 0, err
	}
	w.Close()
	cmd := &exec.Cmd{Path: v.path, Args: append([]string{v.path}, v.args...), Env: v.env, Stdin: r, Stderr: stderr}
	start := time.Now()
	err = cmd.Run()
	took = time.Since(start)
	if err != nil {
		return took, 0, fmt.Errorf("%s %v: %w", v.name, v.args, err)
	}
	return took, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

type hookResult struct {
	rows   []Row
	series []Series
}

// benchHook measures item 1. It runs on the main goroutine (locked to its
// thread) inside a fresh network namespace, so the hook processes it forks
// see the veth parents made there and nothing else.
func benchHook(cfg config) (res hookResult, err error) {
	ns, restore, err := enterNewNetns()
	if err != nil {
		return res, err
	}
	defer restore()
	_ = ns
	for _, p := range []string{"eth0", "eth1"} {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: p}, PeerName: p + "p"}
		if err := netlink.LinkAdd(veth); err != nil {
			return res, fmt.Errorf("veth %s: %w", p, err)
		}
		for _, n := range []string{p, p + "p"} {
			l, err := netlink.LinkByName(n)
			if err != nil {
				return res, err
			}
			if err := netlink.LinkSetUp(l); err != nil {
				return res, err
			}
		}
	}

	work, err := os.MkdirTemp(cfg.diskTmp, "virtap-bench-hook-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(work)
	shmState, err := os.MkdirTemp("/dev/shm", "virtap-bench-state-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(shmState)
	polPath := filepath.Join(work, "policy.toml")
	if err := os.WriteFile(polPath, policyTOML, 0o644); err != nil {
		return res, err
	}
	shell := filepath.Join(work, "shell-hook")
	if err := os.WriteFile(shell, []byte("#!/bin/sh\ncat >/dev/null\n"), 0o755); err != nil {
		return res, err
	}
	pol, err := policy.Load(polPath)
	if err != nil {
		return res, err
	}
	prov, err := provision.Provision(guestXML, provision.Options{Policy: pol, Host: "bench"})
	if err != nil {
		return res, err
	}
	if len(prov.Plans) != 2 {
		return res, fmt.Errorf("bench domain: want 2 managed interfaces, provisioned %d", len(prov.Plans))
	}
	diskState := filepath.Join(work, "state")
	hookEnv := func(state string) []string {
		return []string{"VIRTAP_POLICY=" + polPath, "VIRTAP_STATE_DIR=" + state, "VIRTAP_HOST=bench", "VIRTAP_LOG_LEVEL=warn", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	args := func(op, sub string) []string { return []string{"db-primary", op, sub, "-"} }
	bare := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	vs := []hookVariant{
		{name: "go-floor", path: cfg.floorBin, args: args("prepare", "begin"), env: bare, stdin: prov.XML},
		{name: "shell", path: shell, args: args("prepare", "begin"), env: bare, stdin: prov.XML},
		{name: "unmanaged", path: cfg.hookBin, args: args("prepare", "begin"), env: hookEnv(diskState), stdin: guestXML},
		{name: "prepare", path: cfg.hookBin, args: args("prepare", "begin"), env: hookEnv(diskState), stdin: prov.XML},
		{name: "release", path: cfg.hookBin, args: args("release", "end"), env: hookEnv(diskState), stdin: prov.XML},
		{name: "prepare-tmpfs", path: cfg.hookBin, args: args("prepare", "begin"), env: hookEnv(shmState), stdin: prov.XML},
		{name: "release-tmpfs", path: cfg.hookBin, args: args("release", "end"), env: hookEnv(shmState), stdin: prov.XML},
	}
	stderr, err := os.CreateTemp(work, "stderr-")
	if err != nil {
		return res, err
	}
	defer stderr.Close()
	fail := func(err error) error {
		out, _ := os.ReadFile(stderr.Name())
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(out))
	}

	// Warm up (page cache, the store file's first creation), and check that
	// prepare really records the guest and release really forgets it.
	for i := 0; i < 5; i++ {
		for _, v := range vs {
			if _, err := v.runOnce(stderr); err != nil {
				return res, fail(err)
			}
			if v.name == "prepare" && i == 0 {
				if err := checkRecorded(diskState, prov.Record.Interfaces[0].MAC, true); err != nil {
					return res, err
				}
			}
			if v.name == "release" && i == 0 {
				if err := checkRecorded(diskState, prov.Record.Interfaces[0].MAC, false); err != nil {
					return res, err
				}
			}
		}
	}

	// Rounds: each run interleaves the variants execution by execution, so
	// that a noisy neighbour hits them all alike.
	samples := map[string][]time.Duration{}
	cpu := map[string][]time.Duration{}
	perRun := map[string][][]time.Duration{}
	for run := 0; run < cfg.runs; run++ {
		cur := map[string][]time.Duration{}
		for i := 0; i < cfg.hookN; i++ {
			for _, v := range vs {
				d, c, err := v.run(stderr)
				if err != nil {
					return res, fail(err)
				}
				cpu[v.name] = append(cpu[v.name], c)
				cur[v.name] = append(cur[v.name], d)
				samples[v.name] = append(samples[v.name], d)
			}
		}
		for k, d := range cur {
			perRun[k] = append(perRun[k], d)
		}
	}
	stat := func(name string, q float64) time.Duration {
		var m []time.Duration
		for _, run := range perRun[name] {
			m = append(m, quantile(run, q))
		}
		return median(m)
	}
	row := func(item, name, v string, q float64, anchor string, t Target, note string) Row {
		meas, anc := stat(v, q), stat(anchor, q)
		qs := "median"
		if q != 0.5 {
			qs = fmt.Sprintf("p%d", int(q*100))
		}
		r := Row{Item: item, Name: name, Measured: qs + " " + fmtDur(meas), Anchor: fmt.Sprintf("%s %s", anchorLabel[anchor], fmtDur(anc)),
			Ratio: float64(meas) / float64(anc), Note: note}
		return judge(r, t)
	}
	two := Target{Text: "<= 2x", Max: 2}
	faster := Target{Text: "< 1x (faster)", Max: 1, Strict: true}
	res.rows = []Row{
		row("1a", fmt.Sprintf("hook prepare (2 managed ifaces, %.1f KB)", float64(len(prov.XML))/1000), "prepare", 0.5, "go-floor", two, ""),
		row("1b", "hook prepare", "prepare", 0.9, "go-floor", two, ""),
		row("1c", "hook release", "release", 0.5, "go-floor", two, ""),
		row("1d", "hook release", "release", 0.9, "go-floor", two, ""),
		row("1e", "hook prepare vs shell hook", "prepare", 0.5, "shell", faster, ""),
		row("1f", "hook release vs shell hook", "release", 0.5, "shell", faster, ""),
		row("1g", "hook, unmanaged domain", "unmanaged", 0.5, "go-floor", Target{Text: "<= 1.3x", Max: 1.3}, ""),
		row("1h", "hook, unmanaged domain", "unmanaged", 0.9, "go-floor", Target{Text: "<= 1.3x", Max: 1.3}, ""),
		row("1i", "hook prepare, state on tmpfs (no real fsync)", "prepare-tmpfs", 0.5, "go-floor", Target{}, ""),
		row("1j", "hook release, state on tmpfs (no real fsync)", "release-tmpfs", 0.5, "go-floor", Target{}, ""),
	}
	// CPU time (user+system of the child) is what a busy host pays and
	// what contention on a shared machine inflates least.
	for _, v := range []string{"prepare", "release", "unmanaged"} {
		mc, fc := median(cpu[v]), median(cpu["go-floor"])
		res.rows = append(res.rows, judge(Row{Item: "1k", Name: "CPU time (user+sys) of " + anchorLabel[v], Measured: "median " + fmtDur(mc),
			Anchor: "Go floor " + fmtDur(fc), Ratio: float64(mc) / float64(fc)}, Target{}))
	}
	n := cfg.runs * cfg.hookN
	res.rows[0].Note = fmt.Sprintf("%d runs x %d execs per variant, interleaved; median over runs of each run's quantile; state dir on %s (bbolt, fsync as shipped)", cfg.runs, cfg.hookN, cfg.diskTmp)
	_ = n
	colors := map[string]string{"go-floor": "#2c7fb8", "shell": "#7f7f7f", "unmanaged": "#41ab5d", "prepare": "#d7301f", "release": "#fd8d3c", "prepare-tmpfs": "#8856a7"}
	for _, name := range []string{"go-floor", "unmanaged", "shell", "prepare", "release", "prepare-tmpfs"} {
		res.series = append(res.series, Series{Name: anchorLabel[name], Color: colors[name], Samples: samples[name]})
	}
	return res, nil
}

var anchorLabel = map[string]string{
	"go-floor":      "Go floor (stdin only)",
	"shell":         "shell hook (cat)",
	"unmanaged":     "virtap-hook, unmanaged",
	"prepare":       "virtap-hook prepare",
	"release":       "virtap-hook release",
	"prepare-tmpfs": "prepare, state on tmpfs",
	"release-tmpfs": "release, state on tmpfs",
}

// checkRecorded opens the hook's store (no hook runs now) and checks that
// the interface with mac is recorded (or not).
func checkRecorded(dir, mac string, want bool) error {
	st, err := store.Open(dir, store.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		return fmt.Errorf("open hook state: %w", err)
	}
	defer st.Close()
	doms, err := st.Domains()
	if err != nil {
		return err
	}
	got := false
	for _, d := range doms {
		for _, ifc := range d.Interfaces {
			if ifc.MAC == mac {
				got = true
			}
		}
	}
	if got != want {
		return fmt.Errorf("hook benchmark: interface %s recorded=%v after the hook, want %v: the hook did not do its work", mac, got, want)
	}
	return nil
}
