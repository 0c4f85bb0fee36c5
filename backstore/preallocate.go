package backstore

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// preallocateStep is how much one fallocate call reserves, so a progress
// callback hears from a large preallocation regularly.
const preallocateStep = 256 << 20

// preallocate makes [from, to) of f allocated storage that reads as zeros,
// and the file at least to bytes long: fallocate(2) mode 0, which reserves
// extents without writing them. A filesystem without fallocate (EOPNOTSUPP)
// gets zeros written instead, which allocates the same way, only slower.
func preallocate(f *os.File, from, to int64, fallocate func(fd int, mode uint32, off, length int64) error, progress func(done, total int64)) error {
	conn, err := f.SyscallConn()
	if err != nil {
		return err
	}
	total := to - from
	var zeros []byte
	for pos := from; pos < to; {
		step := min(int64(preallocateStep), to-pos)
		var fallocErr error
		if zeros == nil {
			if err := conn.Control(func(fd uintptr) {
				for {
					fallocErr = fallocate(int(fd), 0, pos, step)
					if fallocErr != unix.EINTR {
						return
					}
				}
			}); err != nil {
				return err
			}
			if notSupported(fallocErr) {
				zeros = make([]byte, 1<<20)
			} else if fallocErr != nil {
				if errors.Is(fallocErr, unix.ENOSPC) {
					return fmt.Errorf("preallocate %d bytes: not enough space on the filesystem: %w", to-from, fallocErr)
				}
				return fmt.Errorf("preallocate bytes %d..%d: %w", pos, pos+step, fallocErr)
			}
		}
		if zeros != nil {
			for done := int64(0); done < step; {
				n, err := f.WriteAt(zeros[:min(int64(len(zeros)), step-done)], pos+done)
				if err != nil {
					return fmt.Errorf("preallocate by writing zeros at %d: %w", pos+done, err)
				}
				done += int64(n)
			}
		}
		pos += step
		if progress != nil {
			progress(pos-from, total)
		}
	}
	return nil
}
