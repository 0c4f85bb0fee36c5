#!/usr/bin/env bash
# Makes sure the real initiators the integration tests drive are installed:
# libiscsi's utilities (iscsi-ls, iscsi-inq, iscsi-test-cu), qemu-img and
# qemu-io, and qemu's iscsi block driver; open-isns's iSNS server and admin
# tool (isnsd, isnsadm); and gcc, which -race needs. As root it installs what is
# missing with apt-get; otherwise it names the packages and fails.
#
# With --ceph it also makes sure of what the RBD backstore's build and tests
# need: librbd-dev and librados-dev (cgo), and Ceph's monitor, manager, OSD
# and command-line tools for the single-node test cluster (integration/ceph).
set -euo pipefail

ceph=0
[ "${1:-}" = "--ceph" ] && ceph=1

missing=()
add() {
	local p
	for p in "${missing[@]:-}"; do [ "$p" = "$1" ] && return 0; done
	missing+=("$1")
}

for pair in iscsi-ls:libiscsi-bin iscsi-inq:libiscsi-bin iscsi-test-cu:libiscsi-bin \
	qemu-img:qemu-utils qemu-io:qemu-utils stdbuf:coreutils; do
	command -v "${pair%%:*}" >/dev/null 2>&1 || add "${pair#*:}"
done
# open-isns installs isnsd and isnsadm in /usr/sbin, which a user's PATH may
# lack.
for pair in isnsd:open-isns-server isnsadm:open-isns-utils; do
	command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || add "${pair#*:}"
done
# go test -race needs cgo and so a C compiler.
command -v gcc >/dev/null 2>&1 || add gcc
# Debian ships qemu's iscsi driver as a module in qemu-block-extra; qemu-img
# lists it among its formats only when the module is there.
if command -v qemu-img >/dev/null 2>&1; then
	qemu-img --help 2>/dev/null | grep -q ' iscsi ' || add qemu-block-extra
else
	add qemu-block-extra
fi

if [ $ceph -eq 1 ]; then
	for pair in ceph-mon:ceph-mon ceph-osd:ceph-osd ceph-mgr:ceph-mgr ceph:ceph-common rbd:ceph-common \
		uuidgen:uuid-runtime python3:python3; do
		command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || add "${pair#*:}"
	done
	[ -f /usr/include/rbd/librbd.h ] || add librbd-dev
	[ -f /usr/include/rados/librados.h ] || add librados-dev
fi

if [ ${#missing[@]} -eq 0 ]; then
	echo "deps: libiscsi-bin, qemu-utils, qemu-block-extra, open-isns-server, open-isns-utils and gcc are installed"
	[ $ceph -eq 0 ] || echo "deps: ceph-mon, ceph-osd, ceph-mgr, ceph-common, librbd-dev and librados-dev are installed"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing Debian packages: ${missing[*]}" >&2
	echo "deps: install them with: sudo apt-get install -y ${missing[*]}" >&2
	exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "deps: missing packages ${missing[*]} and no apt-get to install them" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# open-isns without the discovery daemon its utils recommend (isnsdd), a
# service the tests do not use; Ceph without its recommended extras
# (dashboard, RADOS gateway, monitoring).
plain=() norec=()
for p in "${missing[@]}"; do
	case $p in
	open-isns-* | ceph-* | librbd-dev | librados-dev) norec+=("$p") ;;
	*) plain+=("$p") ;;
	esac
done
[ ${#plain[@]} -eq 0 ] || apt-get install -y -qq "${plain[@]}"
[ ${#norec[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${norec[@]}"
