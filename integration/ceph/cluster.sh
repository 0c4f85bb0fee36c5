#!/bin/sh
# A single-node Ceph cluster on loopback for Blockport's RBD tests: one
# monitor, one manager and one OSD whose objects live in memory (memstore),
# pools of size 1, no cephx (every daemon listens on 127.0.0.1 only).
#
#   cluster.sh start DIR   creates DIR, starts the daemons, creates the pool
#                          "rbd" and prints the path of DIR/ceph.conf
#   cluster.sh stop DIR    stops the daemons started in DIR and removes DIR
#
# Needs Debian's ceph-mon, ceph-osd, ceph-mgr and ceph-common (ceph, rbd).
set -eu

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$2

# freeport prints a TCP port on 127.0.0.1 that nothing listens on now.
freeport() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

stop() {
	[ -d "$dir" ] || return 0
	for pidfile in "$dir"/run/*.pid; do
		[ -f "$pidfile" ] || continue
		pid=$(cat "$pidfile")
		kill "$pid" 2>/dev/null || true
	done
	# Daemons get 10 s to go, then are killed.
	for _ in $(seq 100); do
		alive=0
		for pidfile in "$dir"/run/*.pid; do
			[ -f "$pidfile" ] || continue
			kill -0 "$(cat "$pidfile")" 2>/dev/null && alive=1
		done
		[ $alive -eq 0 ] && break
		sleep 0.1
	done
	for pidfile in "$dir"/run/*.pid; do
		[ -f "$pidfile" ] || continue
		kill -9 "$(cat "$pidfile")" 2>/dev/null || true
	done
	rm -rf "$dir"
}

start() {
	for tool in ceph-mon ceph-osd ceph-mgr ceph monmaptool ceph-authtool rbd uuidgen python3; do
		command -v $tool >/dev/null || { echo "$0: $tool not found (apt-get install ceph-mon ceph-osd ceph-mgr ceph-common uuid-runtime)" >&2; exit 1; }
	done
	mkdir -p "$dir/run" "$dir/mon.a" "$dir/osd.0" "$dir/mgr.x"
	dir=$(cd "$dir" && pwd)
	fsid=$(uuidgen)
	v2=$(freeport)
	v1=$(freeport)
	conf=$dir/ceph.conf
	cat >"$conf" <<CONF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$v2,v1:127.0.0.1:$v1]
public addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
keyring = $dir/keyring
run dir = $dir/run
admin socket = $dir/run/\$name.asok
pid file = $dir/run/\$name.pid
log file = $dir/\$name.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
# A dead client's watches (its RBD exclusive lock) expire after 10 s instead of
# 30 s: gateway failover tests wait that long before writes go on.
osd client watch timeout = 10
[mon]
mon data = $dir/mon.\$id
[osd]
osd objectstore = memstore
memstore device bytes = 4294967296
osd data = $dir/osd.\$id
osd max object name len = 256
osd max object namespace len = 64
[mgr]
mgr data = $dir/mgr.\$id
CONF
	ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
	monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$v2,v1:127.0.0.1:$v1]" "$dir/monmap" >/dev/null
	ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring"
	ceph-mon -c "$conf" -i a
	ceph -c "$conf" --connect-timeout 30 mon enable-msgr2 >/dev/null 2>&1 || true
	ceph-mgr -c "$conf" -i x
	uuid=$(uuidgen)
	id=$(ceph -c "$conf" --connect-timeout 30 osd new "$uuid")
	ceph-osd -c "$conf" -i "$id" --mkfs --osd-uuid "$uuid" >/dev/null 2>&1
	ceph-osd -c "$conf" -i "$id"
	# The pool is usable once its placement groups are active.
	ceph -c "$conf" osd pool create rbd 8 8 >/dev/null 2>&1
	ceph -c "$conf" osd pool set rbd size 1 --yes-i-really-mean-it >/dev/null 2>&1 || true
	rbd -c "$conf" pool init rbd
	for _ in $(seq 600); do
		# "N pgs: N active+clean; ...": every group of every pool (the
		# manager adds one of its own) is active and clean.
		if ceph -c "$conf" pg stat 2>/dev/null | grep -Eq '^([0-9]+) pgs: \1 active\+clean;'; then
			echo "$conf"
			return 0
		fi
		sleep 0.1
	done
	echo "$0: placement groups of pool rbd did not become active in 60 s" >&2
	ceph -c "$conf" -s >&2 || true
	exit 1
}

case $cmd in
start) start ;;
stop) stop ;;
*) usage ;;
esac
