package netdev

import (
	"errors"
	"strconv"
	"strings"
	"syscall"
)

// DeleteStaleProbes removes probe devices left behind by probes whose
// process is gone (for example after SIGKILL). Devices of a probe still
// running in a live process are kept. It returns the names removed. doctor
// and gc call it; it lives here, not in vepa, so that gc (and so the hook)
// does not link the probe and its signal handler.
func (m *Manager) DeleteStaleProbes() ([]string, error) {
	return m.DeleteTagged(func(t Tag) bool {
		return t.Purpose() == ProbePurpose && !alive(probePID(t.ID))
	}, 4)
}

// probePID is the pid recorded in a probe tag id, 0 if none.
func probePID(id string) int {
	s, _, ok := strings.Cut(id, "-")
	if !ok {
		return 0
	}
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// alive reports whether a process with this pid exists.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
