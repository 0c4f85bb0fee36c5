package target

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// identity is a random per-installation value kept in state_dir. LUN
// identifiers (VPD 0x80 serial, 0x83 NAA) derive from it, the target name
// and the LUN number, so they are unique across installations and stable
// across restarts: multipath and cluster software key on them.
type identity struct {
	id [16]byte
}

const identityFile = "identity"

func loadIdentity(stateDir string) (*identity, error) {
	if stateDir == "" {
		stateDir = "."
	}
	path := filepath.Join(stateDir, identityFile)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		s := strings.TrimSpace(string(data))
		raw, derr := hex.DecodeString(s)
		if derr != nil || len(raw) != 16 {
			return nil, fmt.Errorf("state %s: not a 32-digit hex identity (remove it only if no initiator knows these disks)", path)
		}
		var id identity
		copy(id.id[:], raw)
		return &id, nil
	case errors.Is(err, fs.ErrNotExist):
		var id identity
		if _, err := rand.Read(id.id[:]); err != nil {
			return nil, fmt.Errorf("state %s: %w", path, err)
		}
		if err := writeFileAtomic(path, []byte(hex.EncodeToString(id.id[:])+"\n")); err != nil {
			return nil, fmt.Errorf("state %s: %w", path, err)
		}
		return &id, nil
	default:
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
}

func (id *identity) digest(target string, lun uint64) [32]byte {
	h := sha256.New()
	h.Write(id.id[:])
	h.Write([]byte(target))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], lun)
	h.Write(b[:])
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// seed is the input for the LUN's NAA designator.
func (id *identity) seed(target string, lun uint64) []byte {
	d := id.digest(target, lun)
	return d[:]
}

// serial is the default unit serial number: 24 hex digits, printable and
// well under the 32 bytes initiators keep.
func (id *identity) serial(target string, lun uint64) string {
	d := id.digest(target, lun)
	return hex.EncodeToString(d[:12])
}

// writeFileAtomic writes a file so that a crash leaves the old or the new
// content, never a mix: temp file, fsync, rename, fsync of the directory.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
