package main

import (
	"fmt"
	"time"
)

// benchFleet measures item 7 with internal/fleet's benchmarks against a
// real etcd process (Debian's etcd-server, one member on this machine,
// fsync as shipped): the latency of a new lease through etcd against one
// through the bbolt store (alternating lease by lease), and leases per
// second from three hosts leasing at once from one pool.
func benchFleet(cfg config) ([]Row, error) {
	const runs = 3
	res, err := goBench(cfg, "./internal/fleet", "^BenchmarkLease(Latency|3Hosts)$", "300x", runs)
	if err != nil {
		return nil, err
	}
	lat, hosts := res["BenchmarkLeaseLatency"], res["BenchmarkLease3Hosts"]
	var rows []Row
	if len(lat["etcd-median-ns"]) == 0 {
		rows = append(rows, notMeasured("7a", "fleet lease latency, etcd vs bbolt", "(info)", "benchmark output missing BenchmarkLeaseLatency"))
	} else {
		d := func(unit string) time.Duration { return time.Duration(medianFloat(lat[unit])) }
		r := Row{Item: "7a", Name: "fleet lease latency, etcd vs bbolt (median / p90)",
			Measured: fmt.Sprintf("etcd %s / %s", fmtDur(d("etcd-median-ns")), fmtDur(d("etcd-p90-ns"))),
			Anchor:   fmt.Sprintf("bbolt %s / %s", fmtDur(d("bbolt-median-ns")), fmtDur(d("bbolt-p90-ns"))),
			Ratio:    float64(d("etcd-median-ns")) / float64(d("bbolt-median-ns"))}
		r = judge(r, Target{})
		r.Note = fmt.Sprintf("go test -bench LeaseLatency -benchtime 300x -count %d: new leases, etcd and bbolt alternating; median over runs", runs)
		rows = append(rows, r)
	}
	if len(hosts["leases/s"]) == 0 {
		rows = append(rows, notMeasured("7b", "fleet leases/s, 3 hosts at once", ">= 100/s", "benchmark output missing BenchmarkLease3Hosts"))
	} else {
		lps := medianFloat(hosts["leases/s"])
		r := Row{Item: "7b", Name: "fleet leases/s, 3 hosts at once", Measured: fmt.Sprintf("%.0f leases/s", lps), Anchor: "100 leases/s",
			Ratio: 100 / lps}
		r = judge(r, Target{Text: ">= 100/s", Max: 1})
		r.Note = "three etcd clients with their own host names lease one after another each, from one pool; ratio = 100/measured"
		rows = append(rows, r)
	}
	return rows, nil
}
