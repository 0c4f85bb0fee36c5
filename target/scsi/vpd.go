package scsi

import (
	"encoding/binary"
	"slices"
)

// VPD page codes (SPC-5, SBC-4).
const (
	vpdSupportedPages      = 0x00
	vpdUnitSerial          = 0x80
	vpdDeviceID            = 0x83
	vpdBlockLimits         = 0xB0
	vpdBlockCharacteristic = 0xB1
	vpdProvisioning        = 0xB2
)

// buildVPD builds every VPD page of the LU once; they never change.
func (lu *LU) buildVPD() map[uint8][]byte {
	pages := map[uint8][]byte{
		vpdUnitSerial:          lu.vpdUnitSerial(),
		vpdDeviceID:            lu.vpdDeviceID(),
		vpdBlockLimits:         lu.vpdBlockLimits(),
		vpdBlockCharacteristic: lu.vpdBlockCharacteristics(),
		vpdProvisioning:        lu.vpdLogicalBlockProvisioning(),
		vpdThirdPartyCopy:      vpdThirdPartyCopyPage(), // xcopy.go
	}
	codes := []byte{vpdSupportedPages}
	for c := range pages {
		codes = append(codes, c)
	}
	// SPC-5: the supported pages list is in ascending order.
	slices.Sort(codes)
	pages[vpdSupportedPages] = vpdPage(vpdSupportedPages, codes)
	return pages
}

// vpdPage prefixes body with the 4-byte VPD header of a disk LU.
func vpdPage(code byte, body []byte) []byte {
	b := make([]byte, 4, 4+len(body))
	b[0] = pdtDisk
	b[1] = code
	binary.BigEndian.PutUint16(b[2:4], uint16(len(body)))
	return append(b, body...)
}

// Unit Serial Number (SPC-5).
func (lu *LU) vpdUnitSerial() []byte { return vpdPage(vpdUnitSerial, []byte(lu.cfg.Serial)) }

// Device Identification (SPC-5): the LU's NAA designator and a T10
// vendor ID designator, both with ASSOCIATION 00b (the logical unit).
// Target port designators are the fabric's and are not added yet.
func (lu *LU) vpdDeviceID() []byte {
	var body []byte
	// CODE SET 1h (binary), PIV=0, ASSOCIATION 00b, DESIGNATOR TYPE 3h (NAA).
	body = append(body, 0x01, 0x03, 0x00, byte(len(lu.cfg.NAA)))
	body = append(body, lu.cfg.NAA[:]...)
	// CODE SET 2h (ASCII), DESIGNATOR TYPE 1h (T10 vendor ID): the 8-byte
	// vendor identification followed by a vendor specific unique string.
	var vendor [8]byte
	padCopy(vendor[:], lu.cfg.Vendor)
	t10 := append(vendor[:], lu.cfg.Serial...)
	body = append(body, 0x02, 0x01, 0x00, byte(len(t10)))
	body = append(body, t10...)
	return vpdPage(vpdDeviceID, body)
}

// Block Limits (SBC-4), page length 3Ch as SBC-3 and later require.
func (lu *LU) vpdBlockLimits() []byte {
	body := make([]byte, 0x3C)
	// OPTIMAL TRANSFER LENGTH GRANULARITY: a 4 KiB unit, as host pages and
	// most filesystems use.
	binary.BigEndian.PutUint16(body[2:4], uint16(max(1, 4096/lu.blockSize)))
	binary.BigEndian.PutUint32(body[4:8], lu.maxXfer)                         // MAXIMUM TRANSFER LENGTH
	binary.BigEndian.PutUint32(body[8:12], optimalTransferBytes/lu.blockSize) // OPTIMAL TRANSFER LENGTH
	// COMPARE AND WRITE and WRITE ATOMIC limits (caw.go).
	lu.putAtomicLimits(body)
	// UNMAP, WRITE SAME and granularity fields (provisioning.go).
	lu.putProvisioningLimits(body)
	// MAXIMUM PREFETCH LENGTH 0: no limit.
	return vpdPage(vpdBlockLimits, body)
}

// Block Device Characteristics (SBC-4).
func (lu *LU) vpdBlockCharacteristics() []byte {
	body := make([]byte, 0x3C)
	binary.BigEndian.PutUint16(body[0:2], 0x0001) // MEDIUM ROTATION RATE 1: non-rotating medium
	if lu.canBlockErase() {
		// WABEREQ 01b: a read after SANITIZE BLOCK ERASE succeeds (the
		// blocks read as zeros) (sanitize.go).
		body[3] |= 0x40
	}
	if lu.canCryptoErase() {
		// WACEREQ 01b: so does a read after CRYPTOGRAPHIC ERASE.
		body[3] |= 0x10
	}
	return vpdPage(vpdBlockCharacteristic, body)
}
