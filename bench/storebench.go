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

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+(\d+)\s+([\d.]+) ns/op`)

// goBench runs `go test -bench` in the repository and returns ns/op per
// benchmark name, one value per -count.
func goBench(cfg config, pkg, pattern, benchtime string, count int) (map[string][]time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", pattern, "-benchtime", benchtime, "-count", strconv.Itoa(count), pkg)
	cmd.Dir = cfg.repo
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go test -bench %s %s: %w: %s", pattern, pkg, err, firstLines(string(out), 5))
	}
	res := map[string][]time.Duration{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		ns, err := strconv.ParseFloat(m[4], 64)
		if err != nil {
			return nil, err
		}
		res[m[1]] = append(res[m[1]], time.Duration(ns))
	}
	return res, nil
}

// benchStore measures item 4 with the store package's own benchmarks:
// reserve+release of one device at 100 and at 100,000 existing records
// (reservations, domain records and leases each), with fsync as shipped
// and without (the tree work alone).
func benchStore(cfg config) ([]Row, error) {
	res, err := goBench(cfg, "./provision/store", "^BenchmarkReserveRelease", "1000x", cfg.storeCount)
	if err != nil {
		return nil, err
	}
	row := func(item, name, small, big string) Row {
		s, b := res[small], res[big]
		if len(s) == 0 || len(b) == 0 {
			return notMeasured(item, name, "<= 1.3x", "benchmark output missing "+small+" or "+big)
		}
		ms, mb := median(s), median(b)
		return judge(Row{Item: item, Name: name, Measured: "100k records " + fmtDur(mb), Anchor: "100 records " + fmtDur(ms),
			Ratio: float64(mb) / float64(ms), Note: fmt.Sprintf("go test -bench, -benchtime 1000x -count %d, medians", cfg.storeCount)}, Target{Text: "<= 1.3x", Max: 1.3})
	}
	r1 := row("4a", "store reserve+release, fsync (as shipped)", "BenchmarkReserveRelease100", "BenchmarkReserveRelease100000")
	r2 := row("4b", "store reserve+release, no fsync (tree work)", "BenchmarkReserveReleaseNoSync100", "BenchmarkReserveReleaseNoSync100000")
	r2.Note = ""
	return []Row{r1, r2}, nil
}
