package main

import "fmt"

// benchFilter measures item 6: frames per second a guest writes through
// an untrusted macvtap (anti-spoofing filter with DHCP snooping) against
// a trusted one, with internal/nft's BenchmarkFilterFrameRate (the two
// alternate batch by batch, each timed by the writing thread's CPU time;
// a run's ratio is the median over its pairs of batches, the row's the
// median of the runs').
func benchFilter(cfg config) ([]Row, error) {
	res, err := goBench(cfg, "./internal/nft", "^BenchmarkFilterFrameRate$", "50x", 5)
	if err != nil {
		return nil, err
	}
	m := res["BenchmarkFilterFrameRate"]
	if len(m["ratio"]) == 0 {
		return []Row{notMeasured("6", "frames/s through an untrusted macvtap", "<= 1.10x", "benchmark output missing")}, nil
	}
	r := judge(Row{Item: "6", Name: "frames/s through an untrusted macvtap (filter) vs a trusted one",
		Measured: fmt.Sprintf("%.0f fps", medianFloat(m["fps-untrusted"])), Anchor: fmt.Sprintf("%.0f fps", medianFloat(m["fps-trusted"])),
		Ratio: medianFloat(m["ratio"])}, Target{Text: "<= 1.10x", Max: 1.10})
	r.Note = "ratio is the writer's CPU time per frame, untrusted/trusted (median over batch pairs); go test -bench FilterFrameRate -benchtime 50x -count 5"
	return []Row{r}, nil
}
