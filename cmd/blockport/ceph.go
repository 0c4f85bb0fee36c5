//go:build ceph && linux

package main

// The Ceph RBD backstore, in binaries built with -tags ceph (make build
// CEPH=1); `blockport version` lists it among the backstores.
import _ "github.com/blockport/blockport/backstore/rbd"
