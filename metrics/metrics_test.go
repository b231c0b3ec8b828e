package metrics

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/virtap/virtap/host"
	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nft"
	"github.com/virtap/virtap/internal/nstest"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/passthrough"
	"github.com/virtap/virtap/provision/policy"
)

// promtool is Debian's prometheus package: hack/deps.sh installs it.
func promtool(t *testing.T) string {
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool missing (package prometheus; hack/deps.sh installs it; CI=true: not skipping)")
		}
		t.Skip("promtool missing: run hack/deps.sh")
	}
	return p
}

// The metrics of a real host state: a store with records, leases and a
// reservation, macvtaps on a parent, a pool of links one of which is busy,
// and a real nftables anti-spoofing table that saw an honest and a forged
// frame written into the guest's /dev/tapN.
func TestMetricsMatchHost(t *testing.T) {
	nstest.RequireRoot(t)
	tool := promtool(t)
	hns := nstest.New(t)
	sw := nstest.NewSwitched(t, hns, false)
	log := hclog.NewNullLogger()
	nd := netdev.New(log, hns.NL)

	far := nstest.NewDetached(t) // the pool's stand-in NICs are veths (no dummy driver here)
	for i := 0; i < 4; i++ {
		hns.Veth(t, fmt.Sprintf("mtvf%d", i), fmt.Sprintf("mtpeer%d", i), far)
	}
	hns.Bridge(t, "mtbr0")
	hns.AddPort(t, "mtbr0", "mtvf3", false) // busy: enslaved outside virtap

	pol, err := policy.Parse("policy.toml", []byte(fmt.Sprintf(`
[networks.lan]
kind = "macvtap"
parent = %q
mode = "bridge"
max_macs = 4
[networks.edge]
kind = "ipvtap"
parent = "nosuchnic0"
mode = "l3"
addresses = "198.51.100.0/24"
range = "198.51.100.10-198.51.100.19"
gateway = "198.51.100.10"
[networks.fast]
kind = "passthrough"
devices = ["mtvf0", "mtvf1", "mtvf2", "mtvf3"]
`, sw.Uplink)))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(t.TempDir(), "state"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	web, webMAC, fm := hostState(t, hns, sw, nd, st)

	// The host's own IPv6 stack on the macvtap (MLD, DAD) sends through the
	// same egress hook whenever it likes, so "seen" may grow while the
	// metrics are gathered: it must lie between a read before and after.
	seenBefore := seenOf(t, fm, web, webMAC)
	snap, err := Gather(Source{Policy: pol, Store: st, Net: nd, SysfsRoot: "/sys", Version: "test"})
	must(t, err)
	reg, err := snap.Registry()
	must(t, err)
	var text bytes.Buffer
	must(t, Encode(&text, reg))
	check := exec.Command(tool, "check", "metrics")
	check.Stdin = bytes.NewReader(text.Bytes())
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s\n%s", err, out, text.String())
	}
	got := parse(t, text.Bytes())
	counters, err := fm.Counters(web)
	must(t, err)
	seen := seenOf(t, fm, web, webMAC)
	dropped := nft.Dropped(counters, webMAC)
	wl := fmt.Sprintf(`{device="mtg1",guest="web1",interface="%s",`, webMAC)
	wu := fmt.Sprintf(`uuid="%s"}`, web)
	want := map[string]float64{
		`virtap_managed_guests{}`: 2,
		`virtap_build_info{goversion="` + runtimeVersion() + `",version="test"}`: 1,
		`virtap_address_pool_size{network="edge"}`:                               9, // .10-.19 without the gateway .10
		`virtap_address_pool_leased{network="edge"}`:                             3,
		`virtap_passthrough_pool_size{pool="fast"}`:                              4,
		`virtap_passthrough_pool_held{pool="fast"}`:                              1,
		`virtap_passthrough_pool_busy{pool="fast"}`:                              1,
		`virtap_passthrough_pool_free{pool="fast"}`:                              2,
		`virtap_parent_macs{parent="` + sw.Uplink + `"}`:                         2,
		`virtap_parent_max_macs{parent="` + sw.Uplink + `"}`:                     4,
		`virtap_antispoof_frames_dropped_total` + wl + `reason="mac",` + wu:      float64(dropped[nft.ReasonMAC]),
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	if m := got[`virtap_antispoof_frames_seen_total`+wl+wu]; m < float64(seenBefore) || m > float64(seen) {
		t.Errorf("virtap_antispoof_frames_seen_total = %v, want between %d and %d (the table's count before and after)", m, seenBefore, seen)
	}
	if dropped[nft.ReasonMAC] != 1 || seen < 2 {
		t.Errorf("the nft table saw %d frames and dropped %d for a foreign MAC; want >= 2 and 1", seen, dropped[nft.ReasonMAC])
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", text.String())
	}

	checkTextfile(t, reg)
}

// checkTextfile: --textfile writes the same text, replaced atomically.
func checkTextfile(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	dir := t.TempDir()
	path, err := WriteTextfile(dir, reg)
	must(t, err)
	if b, err := os.ReadFile(path); err != nil || !strings.Contains(string(b), "virtap_managed_guests 2") {
		t.Errorf("%s: %v\n%s", path, err, b)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) != 0 {
		t.Errorf("temporary files left in the textfile directory: %v", left)
	}
	if _, err := WriteTextfile(filepath.Join(dir, "missing"), reg); err == nil || !strings.Contains(err.Error(), "--textfile") {
		t.Errorf("a missing textfile directory: %v", err)
	}
}

// hostState fills the store (two guests, three leases, a reservation) and
// the netns (two guest macvtaps, one filtered, which then sends an honest
// and a forged frame). It returns the filtered guest and the filter.
func hostState(t *testing.T, hns *nstest.NS, sw *nstest.Switched, nd *netdev.Manager, st *store.Store) (uuid.UUID, net.HardwareAddr, *nft.Manager) {
	t.Helper()
	log := hclog.NewNullLogger()
	web, db := uuid.New(), uuid.New()
	webMAC := net.HardwareAddr{0x52, 0x54, 0x00, 0x77, 0x00, 0x01}
	dbMAC := net.HardwareAddr{0x52, 0x54, 0x00, 0x77, 0x00, 0x02}
	must(t, st.PutIfaces(web.String(), "web1", []store.Iface{{MAC: webMAC.String(), Network: "lan", Kind: "macvtap", Device: "mtg1"}}))
	must(t, st.PutIfaces(db.String(), "db1", []store.Iface{{MAC: dbMAC.String(), Network: "edge", Kind: "ipvtap"}}))
	edge, err := host.ParsePool("198.51.100.0/24", "198.51.100.10-198.51.100.19", "198.51.100.10")
	must(t, err)
	for i := 0; i < 3; i++ {
		h := store.Holder{UUID: db.String(), MAC: fmt.Sprintf("52:54:00:77:01:%02x", i)}
		_, err := host.LeaseAddress(st, "edge", edge, h)
		must(t, err)
	}
	inUse, err := passthrough.LinkUsage(hns.NL)
	must(t, err)
	pool := &passthrough.Pool{Name: "fast", Devices: []string{"mtvf0", "mtvf1", "mtvf2", "mtvf3"}, SysfsRoot: "/sys"}
	_, err = pool.Reserve(st, store.Holder{UUID: db.String(), MAC: dbMAC.String()}, inUse)
	must(t, err)

	// Two guest macvtaps on the parent (two MACs), one filtered.
	dev := macvtap(t, nd, sw.Uplink, "mtg1", web, webMAC)
	macvtap(t, nd, sw.Uplink, "mtg2", db, net.HardwareAddr{0x52, 0x54, 0x00, 0x77, 0x00, 0x03})
	fm := nft.New(log)
	t.Cleanup(func() { _ = fm.Remove(web) })
	guestIP := net.IPv4(192, 0, 2, 50).To4()
	must(t, fm.Apply(nft.Spec{Domain: web, MAC: webMAC, Device: dev.Name, Addresses: []netip.Addr{netip.AddrFrom4([4]byte(guestIP))}}))
	tap, err := netdev.OpenTap(dev, false)
	must(t, err)
	t.Cleanup(func() { tap.Close() })
	forged := net.HardwareAddr{0x52, 0x54, 0x00, 0xee, 0x00, 0x09}
	must(t, tap.Write(netdev.ARPRequest(webMAC, guestIP, sw.ExtIP)))
	must(t, tap.Write(netdev.ARPRequest(forged, guestIP, sw.ExtIP)))
	time.Sleep(100 * time.Millisecond)

	return web, webMAC, fm
}

func macvtap(t *testing.T, nd *netdev.Manager, parent, name string, dom uuid.UUID, mac net.HardwareAddr) netdev.Device {
	t.Helper()
	d, err := nd.Create(netdev.Spec{Name: name, Kind: netdev.KindMacvtap, Parent: parent, Mode: "bridge", MAC: mac,
		Tag: netdev.GuestTag(dom, mac), Up: true, Index: nstest.FreshIndex()})
	must(t, err)
	return d
}

// parse reads the text format back: "name{labels sorted}" -> value.
func parse(t *testing.T, text []byte) map[string]float64 {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(text))
	must(t, err)
	out := map[string]float64{}
	for name, mf := range mfs {
		for _, m := range mf.Metric {
			out[name+labels(m)] = value(mf, m)
		}
	}
	return out
}

func labels(m *dto.Metric) string {
	var ls []string
	for _, l := range m.Label {
		ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	return "{" + strings.Join(ls, ",") + "}"
}

func value(mf *dto.MetricFamily, m *dto.Metric) float64 {
	if mf.GetType() == dto.MetricType_COUNTER {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func runtimeVersion() string { return runtimeVersionValue }

// The example alert rules are valid and name only metrics virtap writes
// (or node_exporter's textfile mtime).
func TestAlertRules(t *testing.T) {
	tool := promtool(t)
	rules := "../contrib/prometheus/virtap-alerts.yml"
	if out, err := exec.Command(tool, "check", "rules", rules).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	b, err := os.ReadFile(rules)
	must(t, err)
	known := map[string]bool{"node_textfile_mtime_seconds": true}
	ch := make(chan *prometheus.Desc, 64)
	full := &Snapshot{Filters: []host.FilterStatus{{Dropped: map[string]uint64{"mac": 1}}},
		Pools: []passthrough.PoolStatus{{}}, AddrPools: []AddrPool{{}}, Parents: []Parent{{}}}
	Collector{S: full}.Describe(ch)
	close(ch)
	for d := range ch {
		name := strings.SplitN(d.String(), `"`, 3)[1]
		known[name] = true
	}
	for _, m := range regexp.MustCompile(`\b(virtap_[a-z_]+|node_[a-z]+_[a-z_]+)`).FindAllString(string(b), -1) {
		if !known[m] && !strings.HasSuffix(m, "_") {
			t.Errorf("%s names %s, which virtap does not write", rules, m)
		}
	}
}

// seenOf is the table's count of frames the guest interface sent.
func seenOf(t *testing.T, fm *nft.Manager, dom uuid.UUID, mac net.HardwareAddr) uint64 {
	t.Helper()
	counters, err := fm.Counters(dom)
	must(t, err)
	var seen uint64
	for _, c := range counters {
		if c.Reason == nft.ReasonSeen && c.MAC == mac.String() {
			seen += c.Packets
		}
	}
	return seen
}
