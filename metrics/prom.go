package metrics

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"

	"github.com/google/renameio/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// TextfileName is the file --textfile writes in node_exporter's directory.
const TextfileName = "virtap.prom"

var (
	guestLabels = []string{"guest", "uuid", "interface", "device"}
	descs       = struct {
		build, guests, seen, dropped                *prometheus.Desc
		vfSize, vfFree, vfHeld, vfBusy              *prometheus.Desc
		addrSize, addrLeased, parentMACs, parentMax *prometheus.Desc
	}{
		build:      prometheus.NewDesc("virtap_build_info", "virtap's version and the Go that built it; always 1.", []string{"version", "goversion"}, nil),
		guests:     prometheus.NewDesc("virtap_managed_guests", "Guests with virtap's records on this host (prepared and not yet released).", nil, nil),
		seen:       prometheus.NewDesc("virtap_antispoof_frames_seen_total", "Frames an untrusted guest interface sent through its anti-spoofing filter.", guestLabels, nil),
		dropped:    prometheus.NewDesc("virtap_antispoof_frames_dropped_total", "Frames the anti-spoofing filter dropped, by reason (mac, arp-ip, ip4-source, ra, dhcp-server, ...).", append(guestLabels, "reason"), nil),
		vfSize:     prometheus.NewDesc("virtap_passthrough_pool_size", "Devices in a passthrough pool.", []string{"pool"}, nil),
		vfFree:     prometheus.NewDesc("virtap_passthrough_pool_free", "Pool devices a guest start could reserve now.", []string{"pool"}, nil),
		vfHeld:     prometheus.NewDesc("virtap_passthrough_pool_held", "Pool devices reserved by virtap for guests.", []string{"pool"}, nil),
		vfBusy:     prometheus.NewDesc("virtap_passthrough_pool_busy", "Pool devices in use by something else, or missing.", []string{"pool"}, nil),
		addrSize:   prometheus.NewDesc("virtap_address_pool_size", "Addresses an ipvtap network's dynamic range hands out (gateway excluded).", []string{"network"}, nil),
		addrLeased: prometheus.NewDesc("virtap_address_pool_leased", "Leases inside an ipvtap network's dynamic range.", []string{"network"}, nil),
		parentMACs: prometheus.NewDesc("virtap_parent_macs", "Distinct unicast MACs of macvlan/macvtap devices on a parent NIC now.", []string{"parent"}, nil),
		parentMax:  prometheus.NewDesc("virtap_parent_max_macs", "The parent NIC's unicast MAC filter size from the policy (max_macs).", []string{"parent"}, nil),
	}
)

// Collector exports a snapshot.
type Collector struct{ S *Snapshot }

var _ prometheus.Collector = Collector{}

// Describe sends every metric's description.
func (c Collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

// Collect sends the snapshot's values.
func (c Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.S
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descs.build, 1, s.Version, runtime.Version())
	gauge(descs.guests, float64(s.Guests))
	for _, f := range s.Filters {
		l := []string{s.Names[f.Domain], f.Domain, f.MAC, f.Device}
		ch <- prometheus.MustNewConstMetric(descs.seen, prometheus.CounterValue, float64(f.Seen), l...)
		reasons := make([]string, 0, len(f.Dropped))
		for r := range f.Dropped {
			reasons = append(reasons, r)
		}
		sort.Strings(reasons)
		for _, r := range reasons {
			ch <- prometheus.MustNewConstMetric(descs.dropped, prometheus.CounterValue, float64(f.Dropped[r]), append(l, r)...)
		}
	}
	for _, p := range s.Pools {
		gauge(descs.vfSize, float64(p.Size), p.Name)
		gauge(descs.vfFree, float64(p.Free), p.Name)
		gauge(descs.vfHeld, float64(len(p.Holders)), p.Name)
		gauge(descs.vfBusy, float64(len(p.Busy)+len(p.Missing)), p.Name)
	}
	for _, a := range s.AddrPools {
		gauge(descs.addrSize, float64(a.Size), a.Network)
		gauge(descs.addrLeased, float64(a.Leased), a.Network)
	}
	for _, p := range s.Parents {
		gauge(descs.parentMACs, float64(p.MACs), p.Name)
		gauge(descs.parentMax, float64(p.MaxMACs), p.Name)
	}
}

// Registry holds the snapshot's collector (and nothing else: no Go
// runtime metrics of a short-lived command).
func (s *Snapshot) Registry() (*prometheus.Registry, error) {
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(Collector{S: s}); err != nil {
		return nil, err
	}
	return reg, nil
}

// Encode writes the gathered metrics in Prometheus' text format.
func Encode(w io.Writer, g prometheus.Gatherer) error {
	mfs, err := g.Gather()
	if err != nil {
		return err
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	return nil
}

// WriteTextfile writes DIR/virtap.prom atomically (a temporary file in DIR,
// fsync, rename), so node_exporter never reads half a file.
func WriteTextfile(dir string, g prometheus.Gatherer) (string, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("--textfile %s: %w (node_exporter's --collector.textfile.directory)", dir, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("--textfile %s: not a directory", dir)
	}
	var b bytes.Buffer
	if err := Encode(&b, g); err != nil {
		return "", err
	}
	path := filepath.Join(dir, TextfileName)
	return path, renameio.WriteFile(path, b.Bytes(), 0o644)
}
