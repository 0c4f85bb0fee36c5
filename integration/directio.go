package integration

import (
	"os"
	"path/filepath"
	"syscall"
)

// supportsDirectIO reports whether files in dir can be opened with O_DIRECT,
// which direct_io LUNs need (tmpfs refuses it on many kernels).
func supportsDirectIO(dir string) error {
	path := filepath.Join(dir, ".blockport-odirect-probe")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_DIRECT, 0o600)
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(path)
}
