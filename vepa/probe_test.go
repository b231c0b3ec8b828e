package vepa

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nstest"
)

func init() { ProbeIndex = nstest.FreshIndex }

func testLogger(t *testing.T) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Debug, Output: testWriter{t}})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// probeLinks lists links whose name or alias says they belong to a probe.
func probeLinks(t *testing.T, ns *nstest.NS) []string {
	t.Helper()
	links, err := ns.NL.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, "vtprb") || strings.HasPrefix(l.Attrs().Alias, "virtap:probe:") {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}

func TestProbeReflects(t *testing.T) {
	ns := nstest.New(t)
	s := nstest.NewSwitched(t, ns, true)
	res, err := Probe(context.Background(), testLogger(t), ns.NL, s.Uplink, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Reflects {
		t.Fatalf("hairpin on, probe says no reflection: %s", res.Detail)
	}
	if res.Elapsed <= 0 || res.Elapsed > 2*time.Second || res.Detail == "" {
		t.Fatalf("result %+v", res)
	}
	if left := probeLinks(t, ns); len(left) != 0 {
		t.Fatalf("probe left devices: %v", left)
	}
}

func TestProbeDoesNotReflect(t *testing.T) {
	ns := nstest.New(t)
	s := nstest.NewSwitched(t, ns, false)
	res, err := Probe(context.Background(), testLogger(t), ns.NL, s.Uplink, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reflects {
		t.Fatalf("hairpin off, probe says reflection: %s", res.Detail)
	}
	if res.Elapsed < 500*time.Millisecond {
		t.Fatalf("gave up after %v, before the timeout", res.Elapsed)
	}
	if left := probeLinks(t, ns); len(left) != 0 {
		t.Fatalf("probe left devices: %v", left)
	}
	// Same topology, hairpin switched on: now it must reflect.
	s.SetHairpin(t, true)
	if res, err = Probe(context.Background(), nil, ns.NL, s.Uplink, 2*time.Second); err != nil || !res.Reflects {
		t.Fatalf("after hairpin on: %+v %v", res, err)
	}
}

func TestProbeParentChecks(t *testing.T) {
	ns := nstest.New(t)
	s := nstest.NewSwitched(t, ns, true)
	if _, err := Probe(context.Background(), nil, ns.NL, "nosuch0", time.Second); !errors.Is(err, netdev.ErrNoParent) {
		t.Fatalf("missing parent: %v", err)
	}
	if err := s.Switch.NL.LinkSetDown(s.Switch.Link(t, s.SwitchPort)); err != nil {
		t.Fatal(err)
	}
	if _, err := Probe(context.Background(), nil, ns.NL, s.Uplink, time.Second); err == nil || !strings.Contains(err.Error(), "carrier") {
		t.Fatalf("parent without carrier: %v", err)
	}
}

func TestProbeCancelled(t *testing.T) {
	ns := nstest.New(t)
	s := nstest.NewSwitched(t, ns, false)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	_, err := Probe(ctx, testLogger(t), ns.NL, s.Uplink, 10*time.Second)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("cancel took effect after %v", el)
	}
	if left := probeLinks(t, ns); len(left) != 0 {
		t.Fatalf("cancelled probe left devices: %v", left)
	}
}

func TestProbeSignal(t *testing.T) {
	ns := nstest.New(t)
	s := nstest.NewSwitched(t, ns, false)
	// Our own subscription keeps the test process alive whatever happens.
	guard := make(chan os.Signal, 1)
	signal.Notify(guard, syscall.SIGTERM)
	defer signal.Stop(guard)
	time.AfterFunc(300*time.Millisecond, func() { _ = syscall.Kill(os.Getpid(), syscall.SIGTERM) })
	_, err := Probe(context.Background(), testLogger(t), ns.NL, s.Uplink, 10*time.Second)
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("want ErrInterrupted, got %v", err)
	}
	if left := probeLinks(t, ns); len(left) != 0 {
		t.Fatalf("interrupted probe left devices: %v", left)
	}
}
