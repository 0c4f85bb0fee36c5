package backstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// CreateImage creates the image of a file or sparse backstore the way
// Open would (fully allocated, or sparse), with its parent directories. An
// existing file is refused unless force is set; with force it is replaced,
// but never while a backstore (of this or another process) has it open for
// writing.
func CreateImage(opts Options, force bool) error {
	if opts.Kind != "file" && opts.Kind != "sparse" {
		return fmt.Errorf("create image: backstore %q has no image file (use file or sparse)", opts.Kind)
	}
	if opts.Path == "" {
		return errors.New("create image: path is required")
	}
	if err := checkOptions(&opts); err != nil {
		return fmt.Errorf("create image %q: %w", opts.Path, err)
	}
	if opts.Size == 0 {
		return fmt.Errorf("create image %q: size is required", opts.Path)
	}
	st, err := os.Lstat(opts.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("create image: %w", err)
	case !force:
		return fmt.Errorf("create image %q: file exists (use --force to replace it)", opts.Path)
	case !st.Mode().IsRegular():
		return fmt.Errorf("create image %q: not a regular file (mode %v); refusing to replace it", opts.Path, st.Mode())
	default:
		if err := removeUnlocked(opts.Path); err != nil {
			return fmt.Errorf("create image %q: %w", opts.Path, err)
		}
	}
	opts.ReadOnly = false
	if err := createImage(opts, opts.Kind == "sparse"); err != nil {
		return fmt.Errorf("create image %q: %w", opts.Path, err)
	}
	return nil
}

// removeUnlocked removes path after taking the exclusive flock every file
// backstore holds while serving it, so a served image is never replaced.
func removeUnlocked(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return errors.New("image is in use by a running backstore (flock held); refusing to replace it")
		}
		return err
	}
	return os.Remove(path)
}

// ImageInfo describes an image file.
type ImageInfo struct {
	Size      int64 // apparent size in bytes
	Allocated int64 // bytes of storage the filesystem holds for it
}

// StatImage reports the size and allocated storage of an image file.
func StatImage(path string) (ImageInfo, error) {
	st, err := os.Stat(path)
	if err != nil {
		return ImageInfo{}, err
	}
	if !st.Mode().IsRegular() {
		return ImageInfo{}, fmt.Errorf("%s: not a regular file (mode %v)", path, st.Mode())
	}
	info := ImageInfo{Size: st.Size()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		info.Allocated = sys.Blocks * 512 // st_blocks counts 512-byte units (stat(2))
	}
	return info, nil
}
