// Package harness is the end-to-end test kit of virtap: it brings up a real
// libvirtd (no systemd needed), builds a tiny guest (Debian kernel + busybox
// initramfs) that boots in seconds under TCG and reports pings as marker
// lines on its serial console, and builds switch/external-host topologies out
// of network namespaces, veths and a Linux bridge.
//
// Everything here is test code: it may exec apt-get, dpkg-deb, virsh, ip and
// friends. It needs root; use internal/nstest.RequireRoot (or Setup) so that a test skips
// without root on a developer machine but fails under CI=true.
//
// Guest markers (one line each on the serial console, see init.sh):
//
//	VIRTAP-BOOT <kernel release>
//	VIRTAP-NET <dev> <mac> <ip/len>
//	VIRTAP-PING <peer> OK|FAIL          first round, retried up to virtap.tries times
//	VIRTAP-DONE
//	VIRTAP-LOOP <n> <peer> OK|FAIL      forever, one round every virtap.interval seconds
//	VIRTAP-ERROR <what>
package harness
