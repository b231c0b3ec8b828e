// Command virtap-bench is `make bench`: it measures virtap against its
// floor and the alternatives in one run and prints one table of ratios
// (row, measured, anchor, ratio, target, met). See BENCHMARKS.md.
//
// It needs root: it makes network namespaces, veths and macvtap devices,
// and (item 5) talks to libvirtd through the end-to-end harness.
package main

import (
	_ "embed"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netns"
)

//go:embed testdata/guest.xml
var guestXML []byte

//go:embed testdata/policy.toml
var policyTOML []byte

type config struct {
	repo       string
	hookBin    string
	floorBin   string
	virtapBin  string
	out        string
	diskTmp    string
	runs       int
	hookN      int
	churnN     int
	churnRuns  int
	workers    int
	guestRuns  int
	only       string
	storeCount int
}

func init() {
	// Every namespace switch happens on the main goroutine's thread, and the
	// hook processes are forked from it.
	runtime.LockOSThread()
}

func main() {
	var cfg config
	flag.StringVar(&cfg.repo, "repo", ".", "repository root (for go test and bin/)")
	flag.StringVar(&cfg.hookBin, "hook", "bin/virtap-hook", "the virtap-hook binary")
	flag.StringVar(&cfg.floorBin, "floor", "bin/bench-floor", "the Go floor binary (bench/floor)")
	flag.StringVar(&cfg.virtapBin, "virtap", "bin/virtap", "the virtap binary")
	flag.StringVar(&cfg.out, "out", "bench/results", "where results.md, results.json and hook-latency.svg go")
	flag.StringVar(&cfg.diskTmp, "disk-tmp", "/var/tmp", "a directory on a real disk for the hook's state")
	flag.IntVar(&cfg.runs, "runs", 5, "runs per item (medians are taken over runs)")
	flag.IntVar(&cfg.hookN, "hook-n", 150, "hook executions per variant per run")
	flag.IntVar(&cfg.churnN, "churn-n", 1000, "devices per churn run")
	flag.IntVar(&cfg.churnRuns, "churn-runs", 3, "churn runs")
	flag.IntVar(&cfg.workers, "workers", 32, "delete workers for virtap's parallel delete")
	flag.IntVar(&cfg.guestRuns, "guest-runs", 8, "guest starts per condition")
	flag.IntVar(&cfg.storeCount, "store-count", 5, "go test -count for the store benchmarks")
	flag.StringVar(&cfg.only, "only", "hook,churn,provision,store,guest,filter,fleet", "items to run")
	flag.Parse()
	for _, p := range []*string{&cfg.hookBin, &cfg.floorBin, &cfg.virtapBin, &cfg.out} {
		if !filepath.IsAbs(*p) {
			*p = filepath.Join(cfg.repo, *p)
		}
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "virtap-bench: needs root (network namespaces, macvtap devices, libvirtd)")
		os.Exit(1)
	}
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		fatal(err)
	}
	start := time.Now()
	want := map[string]bool{}
	for _, s := range strings.Split(cfg.only, ",") {
		want[strings.TrimSpace(s)] = true
	}
	var rows []Row
	var series []Series
	step := func(name string, f func() ([]Row, error)) {
		if !want[name] {
			return
		}
		t0 := time.Now()
		fmt.Fprintf(os.Stderr, "bench: %s ...\n", name)
		rs, err := f()
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s: %v\n", name, err)
			rs = append(rs, notMeasured(itemOf[name], name, "-", "failed: "+err.Error()))
		}
		fmt.Fprintf(os.Stderr, "bench: %s took %s\n", name, time.Since(t0).Round(time.Second))
		rows = append(rows, rs...)
	}
	step("hook", func() ([]Row, error) {
		res, err := benchHook(cfg)
		series = res.series
		return res.rows, err
	})
	step("churn", func() ([]Row, error) { return benchChurn(cfg) })
	step("provision", func() ([]Row, error) { return benchProvision(cfg) })
	step("store", func() ([]Row, error) { return benchStore(cfg) })
	step("guest", func() ([]Row, error) { return benchGuest(cfg) })
	step("filter", func() ([]Row, error) { return benchFilter(cfg) })
	step("fleet", func() ([]Row, error) { return benchFleet(cfg) })

	took := time.Since(start).Round(time.Second)
	fmt.Println()
	printTable(os.Stdout, rows)
	met, missed, na := 0, 0, 0
	for _, r := range rows {
		switch r.Met {
		case "yes":
			met++
		case "no":
			missed++
		case "n/a":
			na++
		}
	}
	fmt.Printf("\n%d targets met, %d missed, %d not measured; took %s\n", met, missed, na, took)
	if err := writeResults(cfg, rows, series, took); err != nil {
		fatal(err)
	}
	fmt.Printf("results: %s/results.md, results.json, hook-latency.svg\n", cfg.out)
}

var itemOf = map[string]string{"hook": "1", "churn": "2", "provision": "3", "store": "4", "guest": "5", "filter": "6", "fleet": "7"}

func writeResults(cfg config, rows []Row, series []Series, took time.Duration) error {
	host, _ := os.Hostname()
	mach := machine()
	var md strings.Builder
	fmt.Fprintf(&md, "Run of %s on %s (%s); `make bench` took %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), host, mach, took)
	markdownTable(&md, rows)
	if err := os.WriteFile(filepath.Join(cfg.out, "results.md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(cfg.out, "results.json"))
	if err != nil {
		return err
	}
	defer f.Close()
	if err := writeJSON(f, map[string]any{"when": time.Now().UTC(), "machine": mach, "took_s": took.Seconds(), "rows": rows}); err != nil {
		return err
	}
	if len(series) > 0 {
		g, err := os.Create(filepath.Join(cfg.out, "hook-latency.svg"))
		if err != nil {
			return err
		}
		defer g.Close()
		if err := plotECDF(g, "virtap-hook latency against its anchors (ECDF, all runs pooled; dots: medians)", series); err != nil {
			return err
		}
	}
	return nil
}

// machine describes the CPU, core count and kernel.
func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				if i := strings.Index(l, ":"); i > 0 {
					cpu = strings.TrimSpace(l[i+1:])
				}
				break
			}
		}
	}
	kern := "?"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kern = strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%s, %d CPUs, kernel %s, %s", cpu, runtime.NumCPU(), kern, runtime.Version())
}

// enterNewNetns moves the calling (locked) thread into a new network
// namespace; restore moves it back and drops the new one, which removes
// every link left in it.
func enterNewNetns() (netns.NsHandle, func(), error) {
	orig, err := netns.Get()
	if err != nil {
		return 0, nil, fmt.Errorf("current netns: %w", err)
	}
	ns, err := netns.New()
	if err != nil {
		orig.Close()
		return 0, nil, fmt.Errorf("new netns: %w", err)
	}
	return ns, func() {
		if err := netns.Set(orig); err != nil {
			fatal(fmt.Errorf("cannot return to the original netns: %w", err))
		}
		ns.Close()
		orig.Close()
	}, nil
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "virtap-bench: %v\n", err)
	os.Exit(1)
}
