package scsi

import (
	"context"
	"encoding/binary"
	"errors"

	"github.com/blockport/blockport/backstore"
	"github.com/blockport/blockport/target/scsi/sense"
)

// Limits of the atomic commands, reported in the Block Limits VPD page.
const (
	// maxCompareAndWriteBlocks is the MAXIMUM COMPARE AND WRITE LENGTH: the
	// whole one-byte NUMBER OF LOGICAL BLOCKS field. VMware's ATS uses 1.
	maxCompareAndWriteBlocks = 255
	// maxAtomicBytes bounds WRITE ATOMIC(16) (MAXIMUM ATOMIC TRANSFER LENGTH).
	maxAtomicBytes = 1 << 20
)

// Opcodes of the commands in this file (SBC-4).
const (
	opCompareAndWrite = 0x89
	opOrWrite16       = 0x8B
	opWriteAtomic16   = 0x9C
)

// lockBlocks takes the LBA range lock of [lba, lba+n): exclusive for the
// commands that must see the range alone, shared for ordinary I/O.
// It returns the function that releases it. (READ and WRITE use
// lu.locks.lock/unlock directly, which allocate nothing.)
func (lu *LU) lockBlocks(lba uint64, n uint32, exclusive bool) (unlock func()) {
	t := lu.locks.lock(lba, uint64(n), exclusive)
	return func() { lu.locks.unlock(t) }
}

// maxAtomicBlocks is the MAXIMUM ATOMIC TRANSFER LENGTH in blocks.
func (lu *LU) maxAtomicBlocks() uint32 { return min(maxAtomicBytes/lu.blockSize, lu.maxXfer) }

// putAtomicLimits fills the COMPARE AND WRITE and atomic write fields of a
// Block Limits VPD page body (page byte n is body byte n-4).
func (lu *LU) putAtomicLimits(body []byte) {
	body[1] = maxCompareAndWriteBlocks // page byte 5
	// Page bytes 44..63: MAXIMUM ATOMIC TRANSFER LENGTH, ATOMIC ALIGNMENT 0
	// (any LBA), ATOMIC TRANSFER LENGTH GRANULARITY 0 (any length), and no
	// atomic boundaries (WRITE ATOMIC(16) has no BOUNDARY field).
	binary.BigEndian.PutUint32(body[40:44], lu.maxAtomicBlocks())
}

// COMPARE AND WRITE (SBC-4): the data-out holds NUMBER OF LOGICAL BLOCKS
// blocks of verify data followed by as many blocks of write data.
func parseCompareAndWrite(lu *LU, cmd *Command) error {
	if err := rwFlags(cmd); err != nil {
		return err
	}
	c := cmd.CDB
	a := &cmd.args
	a.lba = binary.BigEndian.Uint64(c[2:10])
	a.blocks = uint32(c[13])
	if a.blocks > maxCompareAndWriteBlocks {
		return sense.InvalidFieldInCDB(13, 7)
	}
	cmd.Dir = DirWrite
	cmd.TransferLength = int(a.blocks) << 1 << lu.blockShift
	if a.blocks == 0 {
		cmd.Dir = DirNone
	}
	// SBC-4: the data-out must be exactly 2 x NUMBER OF LOGICAL BLOCKS
	// blocks. Too little is refused by the block I/O checks; more means
	// the NUMBER OF LOGICAL BLOCKS field does not describe the data (e.g.
	// 256 blocks, which the one-byte field cannot hold).
	if int64(cmd.ExpectedLength) > int64(cmd.TransferLength) {
		return sense.InvalidFieldInCDB(13, 7)
	}
	return nil
}

func execCompareAndWrite(ctx context.Context, d *Device, cmd *Command) (int, error) {
	lu := cmd.lu
	a := &cmd.args
	if a.blocks == 0 {
		return 0, nil // SBC-4: zero blocks is not an error and changes nothing
	}
	n := int(a.blocks) << lu.blockShift
	if len(cmd.Data) < 2*n {
		return 0, sense.InvalidFieldInIU()
	}
	defer lu.lockBlocks(a.lba, a.blocks, true)()
	fua := a.fua || lu.writeThrough()
	if ac, ok := lu.store.(backstore.AtomicComparer); ok {
		// The medium compares and writes in one step: atomic also
		// against other gateways writing it (an RBD image).
		mismatch, err := ac.CompareAndWrite(cmd.Data[:n], cmd.Data[n:2*n], int64(a.lba<<lu.blockShift), fua)
		switch {
		case err == nil && mismatch >= 0:
			return 0, sense.Miscompare(uint64(mismatch))
		case err == nil:
			return 0, nil
		case !errors.Is(err, errors.ErrUnsupported):
			return 0, sense.WriteError(a.lba).WithCause(err)
		}
	}
	// The offset of a miscompare is relative to the start of the verify
	// data, which compareMedium reports (SBC-4: INFORMATION field).
	if err := lu.compareMedium(ctx, a.lba, uint64(n), cmd.Data[:n], false); err != nil {
		return 0, err
	}
	if ctx.Err() != nil {
		return 0, StatusError(StatusTaskAborted)
	}
	if wrote, err := lu.store.WriteAt(cmd.Data[n:2*n], int64(a.lba<<lu.blockShift), fua); err != nil || wrote < n {
		return 0, sense.WriteError(a.lba + uint64(max(wrote, 0))>>lu.blockShift).WithCause(err)
	}
	return 0, nil
}

// ORWRITE(16) (SBC-4): each block of data-out is ORed into the block on
// the medium. The read-modify-write holds the range exclusively so no
// other write lands between the read and the write.
func parseOrWrite16(lu *LU, cmd *Command) error {
	if err := rwFlags(cmd); err != nil {
		return err
	}
	lbaAndLength(cmd)
	lu.setBlockTransfer(cmd, DirWrite)
	if cmd.args.blocks == 0 {
		cmd.Dir = DirNone
	}
	return nil
}

func execOrWrite(ctx context.Context, d *Device, cmd *Command) (int, error) {
	lu := cmd.lu
	a := &cmd.args
	data, err := writeData(cmd)
	if err != nil || len(data) == 0 {
		return 0, err
	}
	blocks := uint32(len(data) >> lu.blockShift)
	defer lu.lockBlocks(a.lba, blocks, true)()
	buf := backstore.GetBuffer(min(len(data), scratchSize))
	defer backstore.PutBuffer(buf)
	base := int64(a.lba << lu.blockShift)
	for done := 0; done < len(data); {
		if ctx.Err() != nil {
			return 0, StatusError(StatusTaskAborted)
		}
		chunk := buf[:min(len(buf), len(data)-done)]
		lba := a.lba + uint64(done)>>lu.blockShift
		if got, err := lu.store.ReadAt(chunk, base+int64(done)); got < len(chunk) {
			return 0, sense.UnrecoveredReadError(lba + uint64(max(got, 0))>>lu.blockShift).WithCause(err)
		}
		src := data[done : done+len(chunk)]
		for i := range chunk {
			chunk[i] |= src[i]
		}
		if wrote, err := lu.store.WriteAt(chunk, base+int64(done), a.fua || lu.writeThrough()); err != nil || wrote < len(chunk) {
			return 0, sense.WriteError(lba + uint64(max(wrote, 0))>>lu.blockShift).WithCause(err)
		}
		done += len(chunk)
	}
	return 0, nil
}

// WRITE ATOMIC(16) (SBC-4): TRANSFER LENGTH is the 2-byte field at byte
// 12. The write holds its range exclusively, so no read or write sees part
// of it. Against power loss it is as atomic as one write call of the
// backstore (the whole range in one pwrite).
func parseWriteAtomic16(lu *LU, cmd *Command) error {
	if err := rwFlags(cmd); err != nil {
		return err
	}
	c := cmd.CDB
	a := &cmd.args
	a.lba = binary.BigEndian.Uint64(c[2:10])
	a.blocks = uint32(binary.BigEndian.Uint16(c[12:14]))
	// SBC-4: the LBA range is checked before the atomic length limit.
	if a.lba > lu.blocks.Load() || uint64(a.blocks) > lu.blocks.Load()-a.lba {
		return sense.LBAOutOfRange()
	}
	if a.blocks > lu.maxAtomicBlocks() {
		return sense.InvalidFieldInCDB(12, 7)
	}
	lu.setBlockTransfer(cmd, DirWrite)
	if a.blocks == 0 {
		cmd.Dir = DirNone
	}
	// A short data-out is refused by the block I/O checks
	// (partialDataOK is false): an atomic write is all or nothing.
	return nil
}

func execWriteAtomic(ctx context.Context, d *Device, cmd *Command) (int, error) {
	lu := cmd.lu
	a := &cmd.args
	data, err := writeData(cmd)
	if err != nil || len(data) == 0 {
		return 0, err
	}
	defer lu.lockBlocks(a.lba, a.blocks, true)()
	if wrote, err := lu.store.WriteAt(data, int64(a.lba<<lu.blockShift), a.fua || lu.writeThrough()); err != nil || wrote < len(data) {
		return 0, sense.WriteError(a.lba + uint64(max(wrote, 0))>>lu.blockShift).WithCause(err)
	}
	return 0, nil
}
