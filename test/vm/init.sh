#!/bin/sh
# /init of the virtap test host VM (built by test/vm's TestIpvtapInVM):
# loads the modules this machine's kernel lacks, runs the statically linked
# in-VM test binary, prints the verdict on the serial console and powers off.
# Markers: VIRTAP-VM-BOOT <release> | VIRTAP-VM-ERROR <what> | VIRTAP-VM-RESULT PASS|FAIL
/bin/busybox mkdir -p /proc /sys /dev /tmp /run
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mkdir -p /var/run/netns
exec </dev/null >/dev/console 2>&1
echo "VIRTAP-VM-BOOT $(uname -r)"
for m in $(cat /etc/virtap-modules); do
	insmod "/lib/modules/$m.ko" || echo "VIRTAP-VM-ERROR insmod $m"
done
ip link set lo up
RUN=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	virtap.run=*) RUN=${arg#*=} ;;
	esac
done
cd /tmp
if VIRTAP_IN_VM=1 CI=true /virtap-vm.test -test.v -test.count=1 -test.timeout=170s ${RUN:+-test.run=$RUN}; then
	echo "VIRTAP-VM-RESULT PASS"
else
	echo "VIRTAP-VM-RESULT FAIL"
fi
sync
poweroff -f
