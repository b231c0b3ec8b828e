package harness

import (
	"os"
	"regexp"
	"strings"

	"github.com/virtap/virtap/test/internal/run"
)

// libvirtdLogFilters makes libvirtd (started by the harness) log every
// command it runs and what that printed, at debug level: that is how a
// failing test shows what virtap's hook said. Other categories stay at
// warnings.
const libvirtdLogFilters = "1:util.command 1:util.hook"

// logLine is "<time>: <tid>: <level> : <function>:<line> : <message>".
var logLine = regexp.MustCompile(`^\S+ \S+: (\d+): \w+ : (\S+) : (.*)$`)

// HookOutput returns, from libvirtd's log at path (the last 8 MiB), the hook
// runs for domain name: each command line and its result (exit status,
// standard output and error). It needs the filters the harness starts
// libvirtd with; without them it says so.
func HookOutput(path, name string) string {
	text := run.Tail(path, 8<<20)
	var out []string
	open := map[string]bool{} // thread ids with a hook run of this domain pending
	cont := 0                 // continuation lines of a result still to keep
	for _, ln := range strings.Split(text, "\n") {
		m := logLine.FindStringSubmatch(ln)
		if m == nil {
			if cont > 0 { // a hook's stderr spans lines
				out = append(out, clip(ln, 1000))
				cont--
			}
			continue
		}
		cont = 0
		tid, msg := m[1], m[3]
		switch {
		case strings.Contains(msg, "About to run") && strings.Contains(msg, "/hooks/") && strings.Contains(msg, " "+name+" "):
			open[tid] = true
			// The command line starts with the whole environment: keep
			// the time and the hook's own arguments.
			at := strings.Index(ln, " : ")
			out = append(out, clip(ln[:at]+" : run "+msg[strings.Index(msg, "/hooks/")+1:], 1000))
		case open[tid] && strings.HasPrefix(msg, "Result"):
			delete(open, tid)
			out = append(out, clip(ln, 4000))
			cont = 40
		}
	}
	if len(out) == 0 {
		if os.Getenv("LIBVIRT_LOG_FILTERS") != "" {
			return "(none logged: LIBVIRT_LOG_FILTERS was set by the caller, so libvirtd may not log commands)"
		}
		return "(no hook run logged for " + name + ")"
	}
	return strings.Join(out, "\n")
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
