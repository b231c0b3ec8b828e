// Package harness is the end-to-end test kit of virtap, its libvirt driver:
// it brings up a real libvirtd (no systemd needed), defines and starts
// guests built by test/image (Debian kernel + busybox initramfs, booting in
// seconds under TCG and reporting pings as marker lines on the serial
// console), and builds switch/external-host topologies out of network
// namespaces, veths and a Linux bridge.
//
// Everything here is test code: it may exec apt-get, dpkg-deb, virsh, ip and
// friends. It needs root; use internal/nstest.RequireRoot (or Setup) so that a test skips
// without root on a developer machine but fails under CI=true.
//
// Guest markers (one line each on the serial console, see test/image/init.sh):
//
//	VIRTAP-BOOT <kernel release>
//	VIRTAP-NET <dev> <mac> <ip/len>
//	VIRTAP-PING <peer> OK|FAIL          first round, retried up to virtap.tries times
//	VIRTAP-DONE
//	VIRTAP-LOOP <n> <peer> OK|FAIL      forever, one round every virtap.interval seconds
//	VIRTAP-ERROR <what>
package harness
