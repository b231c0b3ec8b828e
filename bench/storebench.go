package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var (
	benchName   = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+\d+\s`)
	benchMetric = regexp.MustCompile(`([\d.]+) (\S+)`)
)

// goBench runs `go test -bench` in the repository and returns, per
// benchmark name and metric unit ("ns/op", "ratio", ...), one value per
// -count.
func goBench(cfg config, pkg, pattern, benchtime string, count int) (map[string]map[string][]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", pattern, "-benchtime", benchtime, "-count", strconv.Itoa(count), pkg)
	cmd.Dir = cfg.repo
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go test -bench %s %s: %w: %s", pattern, pkg, err, firstLines(string(out), 5))
	}
	res := map[string]map[string][]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		m := benchName.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if res[m[1]] == nil {
			res[m[1]] = map[string][]float64{}
		}
		for _, mm := range benchMetric.FindAllStringSubmatch(line[len(m[0]):], -1) {
			v, err := strconv.ParseFloat(mm[1], 64)
			if err != nil {
				return nil, err
			}
			res[m[1]][mm[2]] = append(res[m[1]][mm[2]], v)
		}
	}
	return res, nil
}

// benchStore measures item 4 with the store package's scale benchmarks:
// reserve+release of one device on a store holding 100 records and on one
// holding 100,000 (reservations, domain records and leases each),
// alternating operation by operation after a warm-up, with fsync as
// shipped and without (the tree work alone).
func benchStore(cfg config) ([]Row, error) {
	res, err := goBench(cfg, "./internal/store", "^BenchmarkReserveReleaseScale", "1000x", cfg.storeCount)
	if err != nil {
		return nil, err
	}
	row := func(item, name, bench string) Row {
		m := res[bench]
		if len(m["ratio"]) == 0 {
			return notMeasured(item, name, "<= 1.3x", "benchmark output missing "+bench)
		}
		ns := func(unit string) time.Duration { return time.Duration(medianFloat(m[unit])) }
		return judge(Row{Item: item, Name: name, Measured: "100k records " + fmtDur(ns("ns/op-100k")), Anchor: "100 records " + fmtDur(ns("ns/op-100")),
			Ratio: medianFloat(m["ratio"])}, Target{Text: "<= 1.3x", Max: 1.3})
	}
	r1 := row("4a", "store reserve+release, fsync (as shipped)", "BenchmarkReserveReleaseScale")
	r1.Note = fmt.Sprintf("go test -bench ReserveReleaseScale -benchtime 1000x -count %d: the two stores alternate op by op; ratio = median of the runs' ratios", cfg.storeCount)
	r2 := row("4b", "store reserve+release, no fsync (tree work)", "BenchmarkReserveReleaseScaleNoSync")
	return []Row{r1, r2}, nil
}
