package integration

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/blockport/blockport/internal/iscsitest"
)

const xcopyIQN = "iqn.2026-11.io.blockport:xcopy"

// xcopyConfig: node "copier" sees LUN 0, LUN 3 as its LUN 1 and LUN 2 as
// its LUN 2 read-only, and not LUN 1. Each "observerN" sees LUN N alone,
// as its LUN 0, so the test can read every LU with a client that only
// addresses LUN 0.
func xcopyConfig() string {
	cfg := fmt.Sprintf(`[server]
listen = ["127.0.0.1:3260"]
state_dir = "{{DIR}}/state"

[[target]]
name = %q
`, xcopyIQN)
	for lun := 0; lun < 4; lun++ {
		cfg += fmt.Sprintf("  [[target.lun]]\n  lun = %d\n  backstore = \"memory\"\n  size = \"8MiB\"\n", lun)
	}
	cfg += `
  [[target.acl]]
  initiator = "iqn.2026-11.io.blockport:copier"
  luns = [0, { lun = 3, as = 1 }, { lun = 2, as = 2, read_only = true }]
`
	for lun := 1; lun < 4; lun++ {
		cfg += fmt.Sprintf("\n  [[target.acl]]\n  initiator = \"iqn.2026-11.io.blockport:observer%d\"\n  luns = [{ lun = %d, as = 0 }]\n", lun, lun)
	}
	return cfg
}

// naaOf reads the NAA logical unit designator from VPD page 83h of the
// client's LUN 0.
func naaOf(t *testing.T, c *iscsitest.Client) []byte {
	t.Helper()
	r := good(t, "INQUIRY VPD 83h")(c.Command([]byte{0x12, 0x01, 0x83, 0x04, 0x00, 0}, 1024, nil))
	page := r.Data
	for o := 4; o+4 <= len(page); o += 4 + int(page[o+3]) {
		if page[o+1]&0x3F == 0x03 { // association LU, type NAA
			return page[o+4 : o+4+int(page[o+3])]
		}
	}
	t.Fatalf("no NAA designator in % x", page)
	return nil
}

// good returns a function that fails the test unless the command ended GOOD.
func good(t *testing.T, what string) func(iscsitest.Result, error) iscsitest.Result {
	return func(r iscsitest.Result, err error) iscsitest.Result {
		t.Helper()
		return must(t, what, r, err, 0)
	}
}

// xcopyParams builds an EXTENDED COPY(LID1) parameter list: one E4h target
// descriptor per designator, then one block-to-block segment copying
// blocks 512-byte blocks from target src to target dst.
func xcopyParams(naas [][]byte, src, dst uint16, blocks uint16, srcLBA, dstLBA uint64) []byte {
	p := make([]byte, 16, 16+32*len(naas)+28)
	p[0], p[1] = 1, 0x18 // LIST ID 1, LIST ID USAGE 11b
	binary.BigEndian.PutUint16(p[2:4], uint16(32*len(naas)))
	binary.BigEndian.PutUint32(p[8:12], 28)
	for _, naa := range naas {
		d := make([]byte, 32)
		d[0] = 0xE4
		d[4], d[5], d[7] = 0x01, 0x03, byte(len(naa)) // binary, LU, NAA
		copy(d[8:], naa)
		d[30] = 0x02 // DISK BLOCK LENGTH 512
		p = append(p, d...)
	}
	s := make([]byte, 28)
	s[0] = 0x02
	binary.BigEndian.PutUint16(s[2:4], 0x18)
	binary.BigEndian.PutUint16(s[4:6], src)
	binary.BigEndian.PutUint16(s[6:8], dst)
	binary.BigEndian.PutUint16(s[10:12], blocks)
	binary.BigEndian.PutUint64(s[12:20], srcLBA)
	binary.BigEndian.PutUint64(s[20:28], dstLBA)
	return append(p, s...)
}

func xcopy(c *iscsitest.Client, params []byte) (iscsitest.Result, error) {
	cdb := make([]byte, 16)
	cdb[0] = 0x83
	binary.BigEndian.PutUint32(cdb[10:14], uint32(len(params)))
	return c.Command(cdb, uint32(len(params)), params)
}

// TestXCopyObeysLUNMasking issues EXTENDED COPY naming LUs by designator:
// a copy may move data between LUs the initiator sees, but never reads
// from or writes to an LU masked from it, nor writes through a read-only
// mapping (CVE-2020-28374 was the Linux target allowing exactly that).
func TestXCopyObeysLUNMasking(t *testing.T) {
	s := StartServer(t, xcopyConfig())
	copier := dialNode(t, s, xcopyIQN, "copier", 1)
	var obs [4]*iscsitest.Client
	var naa [4][]byte
	naa[0] = naaOf(t, copier)
	for lun := 1; lun < 4; lun++ {
		obs[lun] = dialNode(t, s, xcopyIQN, fmt.Sprintf("observer%d", lun), byte(lun+1))
		naa[lun] = naaOf(t, obs[lun])
	}
	mine := bytes.Repeat([]byte{'S'}, 8*512)
	secret := bytes.Repeat([]byte{'M'}, 8*512)
	good(t, "write LUN 0")(write10(copier, 0, mine))
	good(t, "write masked LUN 1")(write10(obs[1], 0, secret))

	const copyAborted, dataProtect = 0x0A, 0x07
	r, err := xcopy(copier, xcopyParams([][]byte{naa[0], naa[1]}, 0, 1, 8, 0, 0))
	checkSense(t, "copy into the masked LU", r, err, copyAborted, 0x0D, 0x02)
	r, err = xcopy(copier, xcopyParams([][]byte{naa[1], naa[0]}, 0, 1, 8, 0, 16))
	checkSense(t, "copy out of the masked LU", r, err, copyAborted, 0x0D, 0x02)
	r, err = xcopy(copier, xcopyParams([][]byte{naa[0], naa[2]}, 0, 1, 8, 0, 0))
	checkSense(t, "copy into the read-only mapping", r, err, dataProtect, 0x27, 0x00)

	if got := good(t, "read masked LUN 1")(read10(obs[1], 0, 8)).Data; !bytes.Equal(got, secret) {
		t.Fatal("the masked LU was written")
	}
	if got := good(t, "read LUN 2")(read10(obs[2], 0, 8)).Data; !bytes.Equal(got, make([]byte, 8*512)) {
		t.Fatal("the read-only LU was written")
	}
	if got := good(t, "read LUN 0")(read10(copier, 16, 8)).Data; !bytes.Equal(got, make([]byte, 8*512)) {
		t.Fatal("data of the masked LU reached LUN 0")
	}

	// What the initiator may reach, it may copy: LUN 0 to LUN 3 (its LUN 1).
	good(t, "copy into a visible LU")(xcopy(copier, xcopyParams([][]byte{naa[0], naa[3]}, 0, 1, 8, 0, 100)))
	if got := good(t, "read LUN 3")(read10(obs[3], 100, 8)).Data; !bytes.Equal(got, mine) {
		t.Fatal("the copy between visible LUs did not arrive")
	}
}
