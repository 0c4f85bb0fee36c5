package scsi

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"github.com/blockport/blockport/target/scsi/sense"
)

// rwFlags decodes byte 1 of READ/WRITE(10/12/16): PROTECT (bits 7-5), DPO
// (bit 4), FUA (bit 3). Without protection information a non-zero PROTECT
// field is an invalid field (SBC-4, table "protection
// information checking"). DPO is accepted and has no effect: there is no
// cache replacement policy to hint.
func rwFlags(cmd *Command) error {
	b := cmd.CDB[1]
	if b&0xE0 != 0 {
		return sense.InvalidFieldInCDB(1, 7)
	}
	cmd.args.fua = b&0x08 != 0
	return nil
}

// setBlockTransfer sets the data direction and length of a command that
// moves cmd.args.blocks logical blocks.
func (lu *LU) setBlockTransfer(cmd *Command, dir Direction) {
	cmd.Dir = dir
	// Bounded by the maximum transfer length check before any data moves;
	// computed in 64 bits so an absurd CDB cannot overflow it first.
	cmd.TransferLength = int(min(uint64(cmd.args.blocks)<<lu.blockShift, 1<<40))
}

func rwDir(cmd *Command) Direction {
	if cmd.op.writes {
		return DirWrite
	}
	return DirRead
}

// READ(6) / WRITE(6) (SBC-4): 21-bit LBA, and a TRANSFER
// LENGTH of 0 means 256 blocks.
func parseRW6(lu *LU, cmd *Command) error {
	c := cmd.CDB
	cmd.args.lba = uint64(c[1]&0x1F)<<16 | uint64(c[2])<<8 | uint64(c[3])
	cmd.args.blocks = uint32(c[4])
	if cmd.args.blocks == 0 {
		cmd.args.blocks = 256
	}
	lu.setBlockTransfer(cmd, rwDir(cmd))
	return nil
}

// READ(10) / WRITE(10) (SBC-4).
func parseRW10(lu *LU, cmd *Command) error {
	if err := rwFlags(cmd); err != nil {
		return err
	}
	c := cmd.CDB
	cmd.args.lba = uint64(binary.BigEndian.Uint32(c[2:6]))
	cmd.args.blocks = uint32(binary.BigEndian.Uint16(c[7:9]))
	lu.setBlockTransfer(cmd, rwDir(cmd))
	return nil
}

// READ(12) / WRITE(12) (SBC-4).
func parseRW12(lu *LU, cmd *Command) error {
	if err := rwFlags(cmd); err != nil {
		return err
	}
	c := cmd.CDB
	cmd.args.lba = uint64(binary.BigEndian.Uint32(c[2:6]))
	cmd.args.blocks = binary.BigEndian.Uint32(c[6:10])
	lu.setBlockTransfer(cmd, rwDir(cmd))
	return nil
}

// READ(16) / WRITE(16) (SBC-4).
func parseRW16(lu *LU, cmd *Command) error {
	if err := rwFlags(cmd); err != nil {
		return err
	}
	c := cmd.CDB
	cmd.args.lba = binary.BigEndian.Uint64(c[2:10])
	cmd.args.blocks = binary.BigEndian.Uint32(c[10:14])
	lu.setBlockTransfer(cmd, rwDir(cmd))
	return nil
}

// lbaAndLength decodes the LBA and length fields that sit at the same place
// in every 10-, 12- and 16-byte block command CDB.
func lbaAndLength(cmd *Command) {
	c := cmd.CDB
	switch cmd.op.cdbLen {
	case 10:
		cmd.args.lba = uint64(binary.BigEndian.Uint32(c[2:6]))
		cmd.args.blocks = uint32(binary.BigEndian.Uint16(c[7:9]))
	case 12:
		cmd.args.lba = uint64(binary.BigEndian.Uint32(c[2:6]))
		cmd.args.blocks = binary.BigEndian.Uint32(c[6:10])
	case 16:
		cmd.args.lba = binary.BigEndian.Uint64(c[2:10])
		cmd.args.blocks = binary.BigEndian.Uint32(c[10:14])
	}
}

// execRead reads the blocks into cmd.Data. It reads no more than the
// buffer the fabric provided.
func execRead(ctx context.Context, d *Device, cmd *Command) (int, error) {
	lu := cmd.lu
	n := min(len(cmd.Data), cmd.TransferLength)
	if n == 0 {
		return 0, nil
	}
	off := int64(cmd.args.lba << lu.blockShift)
	// Shared: never inside a COMPARE AND WRITE or WRITE ATOMIC (lbalock.go).
	defer lu.locks.unlock(lu.locks.lock(cmd.args.lba, uint64(n>>lu.blockShift), false))
	// io.ReaderAt: a read that fills the buffer succeeded, even with io.EOF.
	if got, err := lu.store.ReadAt(cmd.Data[:n], off); got < n {
		// SBC-4: MEDIUM ERROR with the first LBA not read.
		return got, sense.UnrecoveredReadError(cmd.args.lba + uint64(max(got, 0))>>lu.blockShift).WithCause(err)
	}
	return n, nil
}

// writeData returns the whole blocks of data-out to write: the fabric
// delivers min(ExpectedLength, TransferLength) bytes, and Prepare made sure
// a short transfer is whole blocks.
func writeData(cmd *Command) ([]byte, error) {
	want := min(int64(cmd.ExpectedLength), int64(cmd.TransferLength))
	if int64(len(cmd.Data)) < want {
		return nil, fmt.Errorf("scsi: %s: fabric delivered %d bytes of data-out, want %d", cmd.op.name, len(cmd.Data), want)
	}
	bs := int64(cmd.lu.blockSize)
	return cmd.Data[:want/bs*bs], nil
}

// execWrite writes the data-out; FUA makes it stable before GOOD (SBC-4).
func execWrite(ctx context.Context, d *Device, cmd *Command) (int, error) {
	lu := cmd.lu
	data, err := writeData(cmd)
	if err != nil || len(data) == 0 {
		return 0, err
	}
	off := int64(cmd.args.lba << lu.blockShift)
	defer lu.locks.unlock(lu.locks.lock(cmd.args.lba, uint64(len(data)>>lu.blockShift), false))
	fua := cmd.args.fua || lu.writeThrough()
	if wrote, err := lu.store.WriteAt(data, off, fua); err != nil || wrote < len(data) {
		return 0, sense.WriteError(cmd.args.lba + uint64(max(wrote, 0))>>lu.blockShift).WithCause(err)
	}
	lu.checkThreshold() // a thin LU may have allocated storage (provisioning.go)
	return 0, nil
}

// VERIFY(10/12/16) (SBC-4): BYTCHK 00b checks the blocks can be
// read; 01b compares them with the data-out; 11b compares each with the
// single block of data-out; 10b is reserved.
func parseVerify(lu *LU, cmd *Command) error {
	c := cmd.CDB
	if c[1]&0xE0 != 0 { // VRPROTECT
		return sense.InvalidFieldInCDB(1, 7)
	}
	lbaAndLength(cmd)
	a := &cmd.args
	a.bytchk = (c[1] >> 1) & 0x03
	switch a.bytchk {
	case 0:
		cmd.Dir = DirNone
	case 1:
		lu.setBlockTransfer(cmd, DirWrite)
	case 3:
		cmd.Dir = DirWrite
		if a.blocks > 0 {
			cmd.TransferLength = int(lu.blockSize)
		}
	default:
		return sense.InvalidFieldInCDB(1, 2)
	}
	return nil
}

func execVerify(ctx context.Context, d *Device, cmd *Command) (int, error) {
	lu := cmd.lu
	a := &cmd.args
	length := uint64(a.blocks) << lu.blockShift
	if length == 0 {
		return 0, nil
	}
	var need uint64 // data-out bytes the comparison uses
	switch a.bytchk {
	case 1:
		need = length
	case 3:
		need = uint64(lu.blockSize)
	}
	if uint64(len(cmd.Data)) < need {
		return 0, fmt.Errorf("scsi: %s: fabric delivered %d bytes of data-out, want %d", cmd.op.name, len(cmd.Data), need)
	}
	var pattern []byte
	if need > 0 {
		pattern = cmd.Data[:need]
	}
	return 0, lu.compareMedium(ctx, a.lba, length, pattern, a.bytchk == 3)
}

// WRITE AND VERIFY(10/12/16) (SBC-4): BYTCHK 00b verifies the
// written blocks can be read back, 01b compares them with the data-out.
func parseWriteAndVerify(lu *LU, cmd *Command) error {
	c := cmd.CDB
	if c[1]&0xE0 != 0 { // WRPROTECT
		return sense.InvalidFieldInCDB(1, 7)
	}
	lbaAndLength(cmd)
	cmd.args.bytchk = (c[1] >> 1) & 0x03
	if cmd.args.bytchk > 1 {
		return sense.InvalidFieldInCDB(1, 2)
	}
	lu.setBlockTransfer(cmd, DirWrite)
	return nil
}

func execWriteAndVerify(ctx context.Context, d *Device, cmd *Command) (int, error) {
	lu := cmd.lu
	data, err := writeData(cmd)
	if err != nil || len(data) == 0 {
		return 0, err
	}
	defer lu.locks.unlock(lu.locks.lock(cmd.args.lba, uint64(len(data)>>lu.blockShift), false))
	// The verification is of the medium, so the data must be stable first.
	if wrote, err := lu.store.WriteAt(data, int64(cmd.args.lba<<lu.blockShift), true); err != nil || wrote < len(data) {
		return 0, sense.WriteError(cmd.args.lba + uint64(max(wrote, 0))>>lu.blockShift).WithCause(err)
	}
	var pattern []byte
	if cmd.args.bytchk == 1 {
		pattern = data
	}
	return 0, lu.compareMedium(ctx, cmd.args.lba, uint64(len(data)), pattern, false)
}

// scratchSize is the chunk in which verification reads the medium.
const scratchSize = 256 << 10

var scratchPool = sync.Pool{New: func() any { b := make([]byte, scratchSize); return &b }}

// compareMedium reads length bytes from lba in chunks. With a pattern it
// compares them with it: byte for byte, or, when repeat is set, each block
// with the one-block pattern. The first difference is a MISCOMPARE whose
// INFORMATION is its byte offset in the verified range (SBC-4).
func (lu *LU) compareMedium(ctx context.Context, lba, length uint64, pattern []byte, repeat bool) error {
	bp := scratchPool.Get().(*[]byte)
	defer scratchPool.Put(bp)
	buf := *bp
	base := int64(lba << lu.blockShift)
	for done := uint64(0); done < length; {
		if ctx.Err() != nil {
			return StatusError(StatusTaskAborted)
		}
		chunk := buf[:min(uint64(len(buf)), length-done)]
		got, err := lu.store.ReadAt(chunk, base+int64(done))
		if got < len(chunk) {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return sense.UnrecoveredReadError(lba + (done+uint64(max(got, 0)))>>lu.blockShift).WithCause(err)
		}
		if pattern != nil {
			for i := 0; i < len(chunk); {
				var want []byte
				if repeat {
					// chunk and the medium offset are block aligned.
					want = pattern
				} else {
					want = pattern[done+uint64(i):]
				}
				n := min(len(want), len(chunk)-i)
				if !bytes.Equal(chunk[i:i+n], want[:n]) {
					j := 0
					for chunk[i+j] == want[j] {
						j++
					}
					return sense.Miscompare(done + uint64(i+j))
				}
				i += n
			}
		}
		done += uint64(len(chunk))
	}
	return nil
}

// SYNCHRONIZE CACHE(10/16) (SBC-4) and PRE-FETCH(10/16) (SBC-4
// 5.9, 5.10): IMMED in bit 1 of byte 1; NUMBER OF LOGICAL BLOCKS 0 means
// "to the last LBA", so only the LBA is range checked then.
func parseSyncOrPrefetch(lu *LU, cmd *Command) error {
	lbaAndLength(cmd)
	cmd.args.immed = cmd.CDB[1]&0x02 != 0
	return nil
}

// execSynchronizeCache flushes the backstore. The range is not narrowed:
// backstores flush whole (fsync has no range), which SBC-4 allows since
// more than the range may be synchronized. IMMED is honoured by completing
// after the flush, which SBC-4 also permits.
func execSynchronizeCache(ctx context.Context, d *Device, cmd *Command) (int, error) {
	if err := cmd.lu.store.Sync(); err != nil {
		return 0, sense.WriteFault().WithCause(err)
	}
	return 0, nil
}

// prefetcher is an optional backstore capability: start reading a byte
// range into a cache (posix_fadvise WILLNEED and the like).
type prefetcher interface {
	Prefetch(off, length int64) error
}

// execPreFetch passes the hint to a backstore that can take it. The status
// is GOOD, not CONDITION MET: SBC-4 returns CONDITION MET only when the
// blocks are sure to fit in the cache, and Blockport keeps no cache of its own.
func execPreFetch(ctx context.Context, d *Device, cmd *Command) (int, error) {
	lu := cmd.lu
	p, ok := lu.store.(prefetcher)
	if !ok {
		return 0, nil
	}
	blocks := uint64(cmd.args.blocks)
	if blocks == 0 {
		blocks = lu.blocks.Load() - cmd.args.lba
	}
	// A hint that fails changes nothing the initiator can see.
	_ = p.Prefetch(int64(cmd.args.lba<<lu.blockShift), int64(blocks<<lu.blockShift))
	return 0, nil
}

// READ CAPACITY(10) (SBC-4).
func parseReadCapacity10(lu *LU, cmd *Command) error {
	c := cmd.CDB
	// SBC-3: with PMI=0 the LOGICAL BLOCK ADDRESS must be zero (both
	// fields are obsolete in SBC-4, where PMI=1 is simply ignored).
	if c[8]&0x01 == 0 && binary.BigEndian.Uint32(c[2:6]) != 0 {
		return sense.InvalidFieldInCDB(2, 7)
	}
	dataIn(cmd, 8, 8)
	return nil
}

func execReadCapacity10(ctx context.Context, d *Device, cmd *Command) (int, error) {
	lu := cmd.lu
	var b [8]byte
	// SBC-4: FFFFFFFFh tells the initiator to use READ CAPACITY(16).
	binary.BigEndian.PutUint32(b[0:4], uint32(min(lu.blocks.Load()-1, 0xFFFFFFFF)))
	binary.BigEndian.PutUint32(b[4:8], lu.blockSize)
	return putOut(cmd, b[:]), nil
}

// READ CAPACITY(16) (SBC-4), SERVICE ACTION IN(16) service action 10h.
func parseReadCapacity16(lu *LU, cmd *Command) error {
	dataIn(cmd, binary.BigEndian.Uint32(cmd.CDB[10:14]), 32)
	return nil
}

func execReadCapacity16(ctx context.Context, d *Device, cmd *Command) (int, error) {
	lu := cmd.lu
	var b [32]byte
	binary.BigEndian.PutUint64(b[0:8], lu.blocks.Load()-1) // RETURNED LOGICAL BLOCK ADDRESS: the last LBA
	binary.BigEndian.PutUint32(b[8:12], lu.blockSize)
	// P_TYPE/PROT_EN 0 (no protection information); the physical block
	// exponent, LBPME and LBPRZ come from the backstore (provisioning.go).
	lu.putCapacityProvisioning(b[:])
	return putOut(cmd, b[:]), nil
}
