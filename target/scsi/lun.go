package scsi

import (
	"errors"
	"fmt"
)

// Address methods of the first level of an 8-byte SAM LUN (SAM-5).
const (
	lunPeripheral = 0x00 // 00b: peripheral device addressing
	lunFlat       = 0x40 // 01b: flat space addressing
)

// EncodeLUN returns the 8-byte single level LUN structure for lun (SAM-5
// 4.7.7): peripheral device addressing (bus 0) below 256, as Linux and
// Windows initiators expect, flat space addressing up to MaxLUN. Larger
// numbers cannot be mapped (AddLU refuses them); they encode as flat space
// with the low 14 bits.
func EncodeLUN(lun uint64) [8]byte {
	var b [8]byte
	if lun < 256 {
		b[0] = lunPeripheral
		b[1] = byte(lun)
		return b
	}
	b[0] = lunFlat | byte(lun>>8)&0x3F
	b[1] = byte(lun)
	return b
}

// ErrLUNFormat: a LUN structure Blockport does not support.
var ErrLUNFormat = errors.New("scsi: unsupported LUN format")

// DecodeLUN decodes an 8-byte SAM LUN as EncodeLUN writes it: a single level
// with peripheral device addressing (bus 0) or flat space addressing, the
// lower levels zero (SAM-5). Anything else is ErrLUNFormat, for which
// the fabric reports LOGICAL UNIT NOT SUPPORTED.
func DecodeLUN(b [8]byte) (uint64, error) {
	for _, x := range b[2:] {
		if x != 0 {
			return 0, fmt.Errorf("%w: % x has a second level", ErrLUNFormat, b)
		}
	}
	switch b[0] & 0xC0 {
	case lunPeripheral:
		if b[0]&0x3F != 0 {
			return 0, fmt.Errorf("%w: % x addresses bus %d", ErrLUNFormat, b, b[0]&0x3F)
		}
		return uint64(b[1]), nil
	case lunFlat:
		return uint64(b[0]&0x3F)<<8 | uint64(b[1]), nil
	}
	return 0, fmt.Errorf("%w: % x uses address method %d", ErrLUNFormat, b, b[0]>>6)
}
