//go:build repro

package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func reproReport(t *testing.T, g *Guest, tag string) {
	ifs, _ := g.Interfaces()
	lines, _ := SerialLines(g.SerialLog, `^VIRTAP-(PING|STATS)`)
	t.Logf("%s serial: %q", tag, lines)
	for _, li := range ifs {
		st := map[string]string{}
		for _, k := range []string{"tx_packets", "tx_dropped", "rx_packets", "rx_dropped"} {
			b, _ := os.ReadFile("/sys/class/net/" + li.Target + "/statistics/" + k)
			st[k] = strings.TrimSpace(string(b))
		}
		idx, _ := os.ReadFile("/sys/class/net/" + li.Target + "/ifindex")
		t.Logf("%s iface %s ifindex %s stats %v", tag, li.Target, strings.TrimSpace(string(idx)), st)
	}
	pid, _ := os.ReadFile("/run/libvirt/qemu/" + g.Name + ".pid")
	fds, _ := filepath.Glob("/proc/" + strings.TrimSpace(string(pid)) + "/fd/*")
	for _, f := range fds {
		l, _ := os.Readlink(f)
		if strings.Contains(l, "tap") || strings.Contains(l, "vhost") {
			t.Logf("%s qemu fd %s -> %s", tag, f, l)
		}
	}
}

func TestReproDeadNIC(t *testing.T) {
	os.Setenv("LIBVIRT_LOG_OUTPUTS", "1:stderr")
	os.Setenv("LIBVIRT_LOG_FILTERS", "1:netdev 1:qemu_interface 1:qemu_process 1:virfile 1:command")
	t.Cleanup(func() { _ = Teardown() })
	env := Setup(t)
	if !env.Libvirt.Owned() {
		t.Fatal("not owned")
	}
	topo := NewTopology(t, 1, false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mon := exec.CommandContext(ctx, "ip", "-o", "-ts", "monitor", "link")
	monOut, _ := os.Create(filepath.Join(os.TempDir(), "repro-monitor.txt"))
	mon.Stdout = monOut
	_ = mon.Start()
	rounds, par := 1, 3
	fmt.Sscan(os.Getenv("REPRO_ROUNDS"), &rounds)
	fmt.Sscan(os.Getenv("REPRO_PAR"), &par)
	k := 0
	for r := 0; r < rounds; r++ {
		if os.Getenv("REPRO_RESTART") != "" || r > 0 {
			if err := env.Libvirt.Restart(); err != nil {
				t.Fatal(err)
			}
			t.Logf("round %d: libvirtd restarted", r)
		}
		var wg sync.WaitGroup
		var gs []*Guest
		for i := 0; i < par; i++ {
			name := fmt.Sprintf("repro-%s-%d", topo.Prefix, k)
			cfg := GuestConfig{IP: GuestIP(k) + "/24", Peers: []string{ExtIP}, Tries: 8, Interval: 1}
			k++
			g := env.NewGuest(t, name, cfg, DirectInterface(topo.Uplinks[0], "bridge", ""))
			gs = append(gs, g)
			wg.Add(1)
			go func() { defer wg.Done(); _ = g.TryStart() }()
		}
		wg.Wait()
		for _, g := range gs {
			line, err := WaitSerial(g.SerialLog, `^VIRTAP-PING `, 90*time.Second)
			t.Logf("round %d %s: %s %v", r, g.Name, line, err)
			reproReport(t, g, g.Name)
		}
		for _, g := range gs {
			_ = g.Destroy()
		}
	}
	time.Sleep(time.Second)
	cancel()
	mon.Wait()
	b, _ := os.ReadFile(monOut.Name())
	t.Logf("link monitor:\n%s", b)
}
