package harness

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// GuestConfig is what the guest's /init reads from the kernel command line.
type GuestConfig struct {
	Dev      string   // interface to configure; "" means eth0
	MAC      string   // MAC to set inside the guest before link up; "" keeps libvirt's
	IP       string   // address with prefix length, e.g. 192.0.2.11/24
	Peers    []string // addresses to ping
	Tries    int      // first-round attempts per peer (about 1 s each); 0 means 10
	Interval int      // seconds between loop rounds; 0 means 2
	NoLoop   bool     // idle after VIRTAP-DONE instead of pinging forever
	Pre      string   // sh script run before the first round
	Post     string   // sh script run after VIRTAP-DONE, before the loop
	// On and OnRun: once address On answers a ping (checked every loop
	// round), run the sh script OnRun once; fire with Topology.AddExtAddr.
	On    string
	OnRun string
}

// Cmdline renders c as kernel parameters (without console=, which GuestXML adds).
func (c GuestConfig) Cmdline() string {
	p := []string{"quiet", "loglevel=3", "panic=-1"}
	add := func(k, v string) {
		if v != "" {
			p = append(p, "virtap."+k+"="+v)
		}
	}
	add("dev", c.Dev)
	add("mac", c.MAC)
	add("ip", c.IP)
	add("peers", strings.Join(c.Peers, ","))
	if c.Tries > 0 {
		add("tries", strconv.Itoa(c.Tries))
	}
	if c.Interval > 0 {
		add("interval", strconv.Itoa(c.Interval))
	}
	if c.NoLoop {
		add("loop", "0")
	}
	if c.Pre != "" {
		add("pre", base64.StdEncoding.EncodeToString([]byte(c.Pre)))
	}
	if c.Post != "" {
		add("post", base64.StdEncoding.EncodeToString([]byte(c.Post)))
	}
	add("on", c.On)
	if c.OnRun != "" {
		add("onrun", base64.StdEncoding.EncodeToString([]byte(c.OnRun)))
	}
	return strings.Join(p, " ")
}

// GuestXML returns a libvirt domain for the test guest: TCG (type='qemu'),
// 256 MiB, one vCPU, direct kernel boot with "console=ttyS0 " + cmdline, no
// disk, the serial console logged to serialLog, and the given <interface>
// snippets verbatim (virtap rewrites <interface type='network'> ones).
func GuestXML(name, uuid, kernel, initrd, cmdline, serialLog string, ifaces ...string) string {
	esc := func(s string) string {
		var b bytes.Buffer
		_ = xml.EscapeText(&b, []byte(s))
		return b.String()
	}
	if !strings.Contains(cmdline, "console=") {
		cmdline = strings.TrimSpace("console=ttyS0 " + cmdline)
	}
	// Under TCG on a loaded host the kernel's IO-APIC timer check can fail
	// and panic ("IO-APIC + timer doesn't work!"): skip the check.
	if !strings.Contains(cmdline, "no_timer_check") {
		cmdline += " no_timer_check"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<domain type='qemu'>
  <name>%s</name>
  <uuid>%s</uuid>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>%s</kernel>
    <initrd>%s</initrd>
    <cmdline>%s</cmdline>
  </os>
  <features>
    <acpi/>
  </features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
`, esc(name), esc(uuid), esc(kernel), esc(initrd), esc(cmdline))
	for _, i := range ifaces {
		b.WriteString("    " + strings.TrimSpace(i) + "\n")
	}
	fmt.Fprintf(&b, `    <serial type='file'>
      <source path='%[1]s'/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path='%[1]s'/>
      <target type='serial' port='0'/>
    </console>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
`, esc(serialLog))
	return b.String()
}

// DirectInterface is a plain libvirt macvtap interface on dev in mode
// (bridge|vepa|private|passthrough); mac may be "".
func DirectInterface(dev, mode, mac string) string {
	return fmt.Sprintf("<interface type='direct'>%s<source dev='%s' mode='%s'/><model type='virtio'/></interface>",
		macElem(mac), dev, mode)
}

// NetworkInterface is an interface joining a (virtap policy) network by name.
func NetworkInterface(network, mac string) string {
	return fmt.Sprintf("<interface type='network'>%s<source network='%s'/><model type='virtio'/></interface>",
		macElem(mac), network)
}

func macElem(mac string) string {
	if mac == "" {
		return ""
	}
	return fmt.Sprintf("<mac address='%s'/>", mac)
}

// SerialSize is the current length of a serial log (0 if it does not exist
// yet): pass it to WaitSerialAfter to look only at what comes later.
func SerialSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// WaitSerial waits until a line of the serial log at path matches the
// regular expression pattern and returns that line. It gives up early when
// the guest kernel panics.
func WaitSerial(path, pattern string, timeout time.Duration) (string, error) {
	return WaitSerialAfter(path, 0, pattern, timeout)
}

// WaitSerialAfter is WaitSerial looking only at bytes from offset on.
func WaitSerialAfter(path string, offset int64, pattern string, timeout time.Duration) (string, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return "", err
	}
	deadline := time.Now().Add(timeout)
	for {
		data, _ := os.ReadFile(path)
		if int64(len(data)) > offset {
			for _, line := range strings.Split(string(data[offset:]), "\n") {
				line = strings.TrimRight(line, "\r")
				if re.MatchString(line) {
					return line, nil
				}
				if strings.Contains(line, "Kernel panic") {
					return "", fmt.Errorf("guest kernel panicked while waiting for %q in %s: %s", pattern, path, line)
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no line matching %q in %s after %s", pattern, path, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// SerialLines returns the lines of the serial log matching pattern.
func SerialLines(path, pattern string) ([]string, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, "\r")
		if re.MatchString(line) {
			out = append(out, line)
		}
	}
	return out, nil
}

// WaitSerialCount waits until at least n lines after offset match pattern
// and returns the first n of them.
func WaitSerialCount(path string, offset int64, pattern string, n int, timeout time.Duration) ([]string, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	for {
		var got []string
		data, _ := os.ReadFile(path)
		if int64(len(data)) > offset {
			for _, line := range strings.Split(string(data[offset:]), "\n") {
				line = strings.TrimRight(line, "\r")
				if re.MatchString(line) {
					got = append(got, line)
				}
			}
		}
		if len(got) >= n {
			return got[:n], nil
		}
		if time.Now().After(deadline) {
			return got, fmt.Errorf("%d of %d lines matching %q in %s after %s", len(got), n, pattern, path, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
