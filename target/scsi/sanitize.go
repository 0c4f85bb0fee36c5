package scsi

import (
	"context"
	"encoding/binary"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/blockport/blockport/backstore"
	"github.com/blockport/blockport/target/scsi/sense"
)

// SANITIZE (SBC-4 5.30, 4.11): the service actions Blockport carries out.
//
//   - OVERWRITE writes an initialization pattern over every block, in one
//     or more passes; every backstore can.
//   - BLOCK ERASE deallocates every block. It is offered only on a LU whose
//     backstore unmaps so that the blocks read back as zeros and reports
//     what is mapped (a sparse file): there the old data is gone from the
//     medium and GET LBA STATUS shows it (WABEREQ 01b: reads succeed).
//   - CRYPTOGRAPHIC ERASE changes the key that encrypts the medium. It is
//     offered on a LU whose backstore encrypts (encrypt = true); elsewhere
//     the service action is unsupported (INVALID FIELD IN CDB) and absent
//     from REPORT SUPPORTED OPERATION CODES. Reads afterwards succeed
//     (WACEREQ 01b) and return zeros or noise, never the old data.
//   - EXIT FAILURE MODE leaves the failure mode of a failed sanitize that
//     was started with AUSE=1.
//
// A sanitize runs in the background, paced, whatever happens to the
// command that started it (abort, resets, the session ending): SBC-4 has
// the operation continue until it completes or fails. While it runs, every
// command but INQUIRY, REPORT LUNS and REQUEST SENSE gets NOT READY /
// SANITIZE IN PROGRESS with the progress indication, which REQUEST SENSE
// also reports.

// Opcode and service actions (SBC-4).
const (
	opSanitize                    = 0x48
	saSanitizeOverwrite           = 0x01
	saSanitizeBlockErase          = 0x02
	saSanitizeCryptoErase         = 0x03
	saSanitizeExitFailure         = 0x1F
	sanitizeOverwriteHdrLen       = 4
	sanitizeChunk                 = 1 << 20
	sanitizeEraseChunk      int64 = 64 << 20
)

// sanitizeRate paces OVERWRITE in bytes per second (of all passes), so a
// sanitize leaves the backstore's bandwidth to the other LUs sharing it;
// a 128 MiB LU takes 8 seconds per pass. A variable so tests can change it.
var sanitizeRate int64 = 16 << 20

// sanitizeState is the sanitize operation of one LU.
type sanitizeState struct {
	running  atomic.Bool   // an operation is in progress
	progress atomic.Uint32 // of the running operation, in 65536ths
	failed   atomic.Bool   // sanitize failure mode (SBC-4 4.11.4)

	mu         sync.Mutex
	failedAUSE bool          // guarded by mu; the failed run allowed EXIT FAILURE MODE
	done       chan struct{} // guarded by mu; closed when the current run ends
	lastErr    error         // guarded by mu; of the last run
}

// busy is NOT READY / SANITIZE IN PROGRESS while an operation runs, or nil.
func (s *sanitizeState) busy() error {
	if !s.running.Load() {
		return nil
	}
	return sense.SanitizeInProgress(uint16(s.progress.Load()))
}

// failedMode reports the sanitize failure mode.
func (s *sanitizeState) failedMode() bool { return s.failed.Load() }

// sanitizeBusy is Prepare's first check on an LU: SBC-4 has every command
// but INQUIRY, REPORT LUNS and REQUEST SENSE terminated while a sanitize
// runs, before a pending unit attention is reported, so that initiators
// that log in again during a long sanitize learn why the LU is not ready.
func (lu *LU) sanitizeBusy(op *opDesc) error {
	if op.anyLUN {
		return nil
	}
	return lu.san.busy()
}

// sanitizeFailure refuses medium access in sanitize failure mode with
// MEDIUM ERROR / SANITIZE COMMAND FAILED (SBC-4 4.11.4), until a SANITIZE
// completes or EXIT FAILURE MODE ends it.
func (lu *LU) sanitizeFailure(op *opDesc) error {
	if !lu.san.failedMode() || op.op == opSanitize {
		return nil
	}
	if op.blockIO || op.op == opExtendedCopy {
		return sense.SanitizeFailed()
	}
	return nil
}

// canBlockErase reports whether BLOCK ERASE is offered on lu (see above).
func (lu *LU) canBlockErase() bool {
	p := &lu.prov
	return p.unmapper != nil && p.unmap.ReadsZero && p.alloc != nil
}

// canCryptoErase reports whether CRYPTOGRAPHIC ERASE is offered on lu: its
// backstore enciphers the data (backstore.CryptoEraser).
func (lu *LU) canCryptoErase() bool {
	ce, ok := lu.store.(backstore.CryptoEraser)
	return ok && ce.Encrypted()
}

// cryptoErase replaces the backstore's key (the job of a CRYPTOGRAPHIC
// ERASE): instant whatever the LU's size.
func (lu *LU) cryptoErase(report func(done, total int64)) error {
	if err := lu.store.(backstore.CryptoEraser).CryptoErase(); err != nil {
		return err
	}
	report(1, 1)
	return nil
}

// SANITIZE CDB (SBC-4): byte 1 IMMED (7), reserved (6), AUSE (5), SERVICE
// ACTION (4-0); bytes 2-6 reserved; bytes 7-8 PARAMETER LIST LENGTH.
func parseSanitize(lu *LU, cmd *Command) error {
	c := cmd.CDB
	if c[1]&0x40 != 0 {
		return sense.InvalidFieldInCDB(1, 6)
	}
	for i := 2; i <= 6; i++ {
		if c[i] != 0 {
			return sense.InvalidFieldInCDB(i, 7)
		}
	}
	cmd.args.immed = c[1]&0x80 != 0
	n := int(binary.BigEndian.Uint16(c[7:9]))
	switch cmd.op.sa {
	case saSanitizeOverwrite:
		// The header and a pattern of 1 to block-size bytes.
		if n <= sanitizeOverwriteHdrLen || n > sanitizeOverwriteHdrLen+int(lu.blockSize) {
			return sense.InvalidFieldInCDB(7, 7)
		}
		cmd.Dir, cmd.TransferLength = DirWrite, n
	default:
		// BLOCK ERASE, CRYPTOGRAPHIC ERASE and EXIT FAILURE MODE take no
		// parameter list.
		if n != 0 {
			return sense.InvalidFieldInCDB(7, 7)
		}
	}
	if cmd.readOnly && cmd.op.sa != saSanitizeExitFailure {
		return sense.WriteProtected()
	}
	return nil
}

// overwriteParams is a decoded OVERWRITE parameter list.
type overwriteParams struct {
	invert  bool
	passes  int
	pattern []byte
}

// parseOverwriteParams decodes the OVERWRITE parameter list (SBC-4): byte 0
// INVERT (7), TEST (6-5), OVERWRITE COUNT (4-0); bytes 2-3 INITIALIZATION
// PATTERN LENGTH; the pattern follows.
func parseOverwriteParams(p []byte, blockSize uint32) (overwriteParams, error) {
	var o overwriteParams
	if len(p) < sanitizeOverwriteHdrLen {
		return o, sense.ParameterListLengthError()
	}
	if p[0]&0x60 != 0 { // TEST: vendor specific test modes, not offered
		return o, sense.InvalidFieldInParameterList(0, 6)
	}
	o.invert = p[0]&0x80 != 0
	o.passes = int(p[0] & 0x1F)
	if o.passes == 0 {
		return o, sense.InvalidFieldInParameterList(0, 4)
	}
	if p[1] != 0 {
		return o, sense.InvalidFieldInParameterList(1, 7)
	}
	n := int(binary.BigEndian.Uint16(p[2:4]))
	if n == 0 || n > int(blockSize) {
		return o, sense.InvalidFieldInParameterList(2, 7)
	}
	if sanitizeOverwriteHdrLen+n != len(p) {
		return o, sense.ParameterListLengthError()
	}
	o.pattern = p[sanitizeOverwriteHdrLen:]
	return o, nil
}

func execSanitize(ctx context.Context, d *Device, cmd *Command) (int, error) {
	lu := cmd.lu
	ause := cmd.CDB[1]&0x20 != 0
	var job func(report func(done, total int64)) error
	switch cmd.op.sa {
	case saSanitizeExitFailure:
		return 0, lu.san.exitFailureMode()
	case saSanitizeOverwrite:
		ow, err := parseOverwriteParams(cmd.Data[:min(len(cmd.Data), cmd.TransferLength)], lu.blockSize)
		if err != nil {
			return 0, err
		}
		job = func(report func(done, total int64)) error { return lu.overwriteAll(ow, report) }
	case saSanitizeBlockErase:
		job = lu.eraseAll
	case saSanitizeCryptoErase:
		job = lu.cryptoErase
	}
	done, err := lu.startSanitize(job, ause)
	if err != nil {
		return 0, err
	}
	if cmd.args.immed {
		return 0, nil // SBC-4: GOOD once the CDB and parameters are checked
	}
	select {
	case <-done:
		return 0, lu.san.result()
	case <-ctx.Done():
		// The command is aborted; the sanitize goes on.
		return 0, StatusError(StatusTaskAborted)
	}
}

// startSanitize begins job in the background and returns a channel closed
// when it ends.
func (lu *LU) startSanitize(job func(report func(done, total int64)) error, ause bool) (<-chan struct{}, error) {
	s := &lu.san
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running.Load() { // two SANITIZEs prepared at once
		return nil, s.busy()
	}
	s.progress.Store(0)
	s.running.Store(true)
	done := make(chan struct{})
	s.done = done
	go func() {
		// Wait for the commands already running on the LU, then hold every
		// block until the end (Prepare refuses new ones meanwhile).
		t := lu.locks.lock(0, lu.blocks.Load(), true)
		err := job(func(n, total int64) {
			s.progress.Store(uint32(min(n*65536/max(total, 1), 65535)))
		})
		if err == nil {
			if serr := lu.store.Sync(); serr != nil {
				err = serr
			}
		}
		lu.locks.unlock(t)
		lu.checkThreshold()
		s.mu.Lock()
		s.lastErr = err
		s.failed.Store(err != nil)
		s.failedAUSE = ause
		s.running.Store(false)
		s.mu.Unlock()
		close(done)
	}()
	return done, nil
}

// result is the outcome of the last run for a SANITIZE that waited for it.
func (s *sanitizeState) result() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastErr != nil {
		return sense.SanitizeFailed().WithCause(s.lastErr)
	}
	return nil
}

// exitFailureMode ends the failure mode of a sanitize that failed with
// AUSE=1; otherwise the request is out of sequence (SBC-4 5.30).
func (s *sanitizeState) exitFailureMode() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.failed.Load() || !s.failedAUSE {
		return sense.CommandSequenceError()
	}
	s.failed.Store(false)
	s.lastErr = nil
	return nil
}

// overwriteAll writes the pattern over every block, passes times, paced at
// sanitizeRate. With INVERT, every other pass writes the inverted pattern.
// The pattern repeats from the start of each block.
func (lu *LU) overwriteAll(ow overwriteParams, report func(done, total int64)) error {
	size := int64(lu.blocks.Load()) << lu.blockShift
	total := size * int64(ow.passes)
	buf := backstore.GetBuffer(sanitizeChunk)
	defer backstore.PutBuffer(buf)
	bs := int(lu.blockSize)
	for b := 0; b+bs <= len(buf); b += bs {
		for i := 0; i < bs; i += len(ow.pattern) {
			copy(buf[b+i:b+bs], ow.pattern)
		}
	}
	start := time.Now()
	var written int64
	for pass := 0; pass < ow.passes; pass++ {
		if ow.invert && pass > 0 {
			for i := range buf {
				buf[i] = ^buf[i]
			}
		}
		for off := int64(0); off < size; {
			k := min(int64(len(buf)), size-off)
			if n, err := lu.store.WriteAt(buf[:k], off, lu.writeThrough()); err != nil || int64(n) < k {
				if err == nil {
					err = io.ErrShortWrite
				}
				return err
			}
			off += k
			written += k
			report(written, total)
			if want := time.Duration(float64(written) / float64(sanitizeRate) * float64(time.Second)); time.Since(start) < want {
				time.Sleep(want - time.Since(start))
			}
		}
	}
	return nil
}

// eraseAll deallocates every block.
func (lu *LU) eraseAll(report func(done, total int64)) error {
	size := int64(lu.blocks.Load()) << lu.blockShift
	for off := int64(0); off < size; {
		k := min(sanitizeEraseChunk, size-off)
		if err := lu.prov.unmapper.Unmap(off, k, lu.writeThrough()); err != nil {
			return err
		}
		off += k
		report(off, size)
	}
	return nil
}
