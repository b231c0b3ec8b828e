#!/usr/bin/env bash
# Installs what virtap's build and tests need, only when something is missing.
# Debian/Ubuntu, as root. Safe to run again.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have virsh             || need+=(libvirt-clients)
have libvirtd          || need+=(libvirt-daemon libvirt-daemon-driver-qemu)
[ -e /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so ] || need+=(libvirt-daemon-driver-qemu)
[ -e /usr/include/libvirt/libvirt.h ] || need+=(libvirt-dev)
have virt-xml-validate || need+=(libxml2-utils libvirt-clients)
have qemu-system-x86_64 || need+=(qemu-system-x86)
[ -x /bin/busybox ]    || need+=(busybox-static)
have cpio              || need+=(cpio)
have ip                || need+=(iproute2)
have ping              || need+=(iputils-ping)
have gcc               || need+=(gcc libc6-dev)
have pkg-config        || need+=(pkg-config)
have lintian           || need+=(lintian)
have man               || need+=(man-db)
have promtool          || need+=(prometheus)
have dpkg-deb          || need+=(dpkg)
have dpkg-shlibdeps    || need+=(dpkg-dev)
have etcd              || [ -x /usr/bin/etcd ] || need+=(etcd-server)   # fleet tests: a real etcd (3.4 in Debian 12)
have hyperfine         || [ "${VIRTAP_BENCH:-}" != 1 ] || need+=(hyperfine)

if [ ${#need[@]} -eq 0 ]; then
	echo "deps: everything is installed"
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "deps: missing ${need[*]}; run 'make test' as root or install them: apt-get install ${need[*]}" >&2
	exit 1
fi
echo "deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
# etcd-server and prometheus ship daemons: the tests start their own, on
# their own ports, so the packages must not start theirs (policy-rc.d 101
# forbids it while we install, on a host that has no such rule already).
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 0755 /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "deps: done"
