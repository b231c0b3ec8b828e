#!/bin/sh
# /init of the virtap end-to-end test guest (busybox, built by harness).
# Kernel command line parameters (all optional):
#   virtap.dev=NAME        interface to configure (default eth0)
#   virtap.mac=MAC         set this MAC before bringing the interface up
#   virtap.ip=ADDR/LEN     address for the interface
#   virtap.peers=A,B,...   addresses to ping
#   virtap.tries=N         first-round attempts per peer, about 1 s each (default 10)
#   virtap.interval=S      seconds between rounds of the ping loop (default 2)
#   virtap.loop=0          no ping loop after VIRTAP-DONE (the guest just idles)
#   virtap.pre=BASE64      sh script run once the interface is up, before the first round
#   virtap.post=BASE64     sh script run after VIRTAP-DONE, before the loop
#   virtap.on=ADDR         trigger: once ADDR answers a ping (checked each loop round)...
#   virtap.onrun=BASE64    ...run this sh script once (the test fires it by adding ADDR
#                          to the external host: Topology.AddExtAddr)
# Scripts see DEV, IP, MAC, PEERS exported and may print their own lines.
# Markers, one line each on /dev/console:
#   VIRTAP-BOOT <release> | VIRTAP-NET <dev> <mac> <ip> | VIRTAP-SCRIPT <pre|post|on> <rc>
#   VIRTAP-PING <peer> OK|FAIL | VIRTAP-DONE | VIRTAP-LOOP <n> <peer> OK|FAIL | VIRTAP-ERROR <what>
#   VIRTAP-STATS <dev> tx=<packets> rx=<packets>   the guest's own counters of DEV, after every
#                                                  first-round result and every loop round
/bin/busybox mkdir -p /proc /sys /dev /tmp /run
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/null >/dev/console 2>&1

mark() { echo "VIRTAP-$*"; }
mark BOOT "$(uname -r)"

for m in $(cat /etc/virtap-modules); do
	insmod "/lib/modules/$m.ko" || mark ERROR "insmod $m"
done

DEV=eth0 IP= MAC= PEERS= TRIES=10 INTERVAL=2 LOOP=1 PRE= POST= ON= ONRUN=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	virtap.dev=*) DEV=${arg#*=} ;;
	virtap.mac=*) MAC=${arg#*=} ;;
	virtap.ip=*) IP=${arg#*=} ;;
	virtap.peers=*) PEERS=${arg#*=} ;;
	virtap.tries=*) TRIES=${arg#*=} ;;
	virtap.interval=*) INTERVAL=${arg#*=} ;;
	virtap.loop=*) LOOP=${arg#*=} ;;
	virtap.pre=*) PRE=${arg#*=} ;;
	virtap.post=*) POST=${arg#*=} ;;
	virtap.on=*) ON=${arg#*=} ;;
	virtap.onrun=*) ONRUN=${arg#*=} ;;
	esac
done
export DEV IP MAC PEERS

i=0
while [ ! -e "/sys/class/net/$DEV" ] && [ $i -lt 100 ]; do
	usleep 100000
	i=$((i + 1))
done
[ -e "/sys/class/net/$DEV" ] || mark ERROR "no interface $DEV"
ip link set lo up
if [ -n "$MAC" ]; then
	ip link set "$DEV" address "$MAC" || mark ERROR "set mac $MAC"
fi
ip link set "$DEV" up || mark ERROR "link up $DEV"
if [ -n "$IP" ]; then
	ip addr add "$IP" dev "$DEV" || mark ERROR "addr $IP"
fi
mark NET "$DEV" "$(cat /sys/class/net/$DEV/address 2>/dev/null)" "${IP:-none}"

runscript() {
	[ -n "$2" ] || return 0
	if ! echo "$2" | base64 -d >"/tmp/$1.sh"; then
		mark ERROR "decode $1"
		return 0
	fi
	sh "/tmp/$1.sh"
	mark SCRIPT "$1" $?
}

stats() {
	d=/sys/class/net/$DEV/statistics
	mark STATS "$DEV" "tx=$(cat $d/tx_packets 2>/dev/null)" "rx=$(cat $d/rx_packets 2>/dev/null)"
}

pingonce() {
	ping -c 1 -W 1 "$1" >/dev/null 2>&1 && return 0
	usleep 200000
	return 1
}

runscript pre "$PRE"
for p in $(echo "$PEERS" | tr , ' '); do
	r=FAIL
	n=0
	while [ $n -lt "$TRIES" ]; do
		n=$((n + 1))
		if pingonce "$p"; then
			r=OK
			break
		fi
	done
	mark PING "$p" $r
	stats
done
mark DONE
runscript post "$POST"

n=0
while :; do
	n=$((n + 1))
	if [ -n "$ON" ] && ping -c 1 -W 1 "$ON" >/dev/null 2>&1; then
		runscript on "$ONRUN"
		ON=
	fi
	if [ "$LOOP" = 1 ]; then
		for p in $(echo "$PEERS" | tr , ' '); do
			if pingonce "$p"; then mark LOOP $n "$p" OK; else mark LOOP $n "$p" FAIL; fi
		done
		stats
	fi
	sleep "$INTERVAL"
done
