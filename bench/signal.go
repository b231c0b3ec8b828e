package main

import (
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// On SIGINT/SIGTERM (the time limit of hack/bench.sh included), undo what
// must not outlive the run: an installed hook, daemons this run started.
// Namespaces and the links in them vanish with the process anyway.
var (
	cleanupMu sync.Mutex
	cleanups  []func()
)

func atInterrupt(f func()) func() {
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	i := len(cleanups)
	cleanups = append(cleanups, f)
	return func() {
		cleanupMu.Lock()
		defer cleanupMu.Unlock()
		cleanups[i] = nil
	}
}

func init() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-ch
		fmt.Fprintf(os.Stderr, "virtap-bench: %v: cleaning up\n", s)
		cleanupMu.Lock()
		for i := len(cleanups) - 1; i >= 0; i-- {
			if cleanups[i] != nil {
				cleanups[i]()
			}
		}
		os.Exit(130)
	}()
}
