package backstore

import (
	"bytes"
	"crypto/aes"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/crypto/xts"
	"golang.org/x/sys/unix"
)

// Encryption at rest for image and device backstores (Options.KeyFile):
// every 512-byte unit is enciphered with AES-256 in XTS mode (IEEE 1619),
// the unit's number as the tweak, as disk encryption does. Its point here
// is SBC-4 SANITIZE CRYPTOGRAPHIC ERASE: replacing the key makes every
// block unreadable at once, however large the LU.
//
// A unit whose stored bytes are all zero has never been written since it
// was allocated, punched or zeroed (a hole of a sparse image, a range
// WRITE SAME zeroed with fallocate): it reads as zeros without being
// deciphered, so thin provisioning (LBPRZ) and zeroing keep their meaning.
// A real ciphertext unit is all zero with probability 2^-4096.
//
// The key lives in a file of its own (0600, in the server's state
// directory). It protects against reading the data after a cryptographic
// erase, not against someone who holds both the image and the key file.

// cryptUnit is the XTS data unit; 512 and 4096-byte blocks are multiples.
const cryptUnit = 512

// cryptKeyLen is an AES-256-XTS key: two AES-256 keys.
const cryptKeyLen = 64

// ErrUnalignedCrypt: I/O to an encrypted backstore must cover whole
// 512-byte units; the SCSI layer only issues whole logical blocks.
var ErrUnalignedCrypt = errors.New("backstore: encrypted I/O must cover whole 512-byte units")

// cryptState enciphers one backstore's data.
type cryptState struct {
	keyFile string
	mu      sync.RWMutex
	cipher  *xts.Cipher // guarded by mu; replaced by rekey
}

// openCrypt loads the key from keyFile. A missing file gets a new random
// key only when create is set, else it is an error: an image that holds
// data enciphered under a key it no longer finds (state_dir lost, or the
// target or LUN renamed, which renames the key file) would otherwise be
// served as noise with GOOD status, and what is written then mixes two
// keys. A key file that others may read, or that does not hold exactly
// one key, is refused.
func openCrypt(keyFile string, create bool) (*cryptState, error) {
	key, err := os.ReadFile(keyFile)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !create:
		return nil, fmt.Errorf("key file %q is missing for an existing image: the key is the data; restore it "+
			"(a renamed target or LUN looks for a new name: rename the old key file), or delete the image to start empty", keyFile)
	case errors.Is(err, fs.ErrNotExist):
		if key, err = newKeyFile(keyFile); err != nil {
			return nil, fmt.Errorf("create key file %q: %w", keyFile, err)
		}
	case err != nil:
		return nil, fmt.Errorf("read key file %q: %w", keyFile, err)
	default:
		st, err := os.Stat(keyFile)
		if err != nil {
			return nil, err
		}
		if st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("key file %q is readable by others (mode %v); chmod 600 it", keyFile, st.Mode().Perm())
		}
		if len(key) != cryptKeyLen {
			return nil, fmt.Errorf("key file %q holds %d bytes, want %d", keyFile, len(key), cryptKeyLen)
		}
	}
	c, err := xts.NewCipher(aes.NewCipher, key)
	clear(key)
	if err != nil {
		return nil, err
	}
	return &cryptState{keyFile: keyFile, cipher: c}, nil
}

// newKeyFile writes a new random key to path atomically: a temporary file
// is written and synced, renamed over path, and the directory synced, so a
// crash leaves the old key or the new one, never half of either.
func newKeyFile(path string) ([]byte, error) {
	key := make([]byte, cryptKeyLen)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	if err := mkdirAllSynced(dir, 0o700); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, err
	}
	name := tmp.Name()
	_, err = tmp.Write(key)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(name, path)
	}
	if err != nil {
		os.Remove(name)
		return nil, err
	}
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return key, d.Sync()
}

func checkCryptRange(n int, off int64) error {
	if off%cryptUnit != 0 || n%cryptUnit != 0 {
		return fmt.Errorf("%d bytes at offset %d: %w", n, off, ErrUnalignedCrypt)
	}
	return nil
}

var zeroUnit [cryptUnit]byte

// decrypt deciphers p, read from offset off, in place. Units stored as
// all zeros stay zeros (see above).
func (c *cryptState) decrypt(p []byte, off int64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	unit := uint64(off / cryptUnit)
	for i := 0; i+cryptUnit <= len(p); i, unit = i+cryptUnit, unit+1 {
		u := p[i : i+cryptUnit]
		if bytes.Equal(u, zeroUnit[:]) {
			continue
		}
		c.cipher.Decrypt(u, u, unit)
	}
}

// encrypt enciphers src, to be written at offset off, into dst.
func (c *cryptState) encrypt(dst, src []byte, off int64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	unit := uint64(off / cryptUnit)
	for i := 0; i+cryptUnit <= len(src); i, unit = i+cryptUnit, unit+1 {
		c.cipher.Encrypt(dst[i:i+cryptUnit], src[i:i+cryptUnit], unit)
	}
}

// rekey replaces the key, on disk first: from then on what was written
// under the old key deciphers to noise.
func (c *cryptState) rekey() error {
	key, err := newKeyFile(c.keyFile)
	if err != nil {
		return fmt.Errorf("new key file %q: %w", c.keyFile, err)
	}
	ci, err := xts.NewCipher(aes.NewCipher, key)
	clear(key)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.cipher = ci
	c.mu.Unlock()
	return nil
}

// CryptoEraser is a backstore that can encipher what it stores, so that
// changing its key erases every block at once (SBC-4 SANITIZE
// CRYPTOGRAPHIC ERASE). Encrypted tells whether this one does.
type CryptoEraser interface {
	Encrypted() bool
	// CryptoErase replaces the key; every block then reads as zeros or
	// as noise, never as what was written before. The caller keeps all
	// other I/O off the backstore while it runs.
	CryptoErase() error
}

// rekey is the part of a CRYPTOGRAPHIC ERASE every kind shares: the key
// is replaced, so nothing written before deciphers again.
func (b *fileBackstore) rekey() error {
	if b.crypt == nil {
		return errors.New("backstore: not encrypted")
	}
	if b.readOnly {
		return ErrReadOnly
	}
	return b.crypt.rekey()
}

// Encrypted reports whether the backstore enciphers its data.
func (b *fileBackstore) Encrypted() bool { return b.crypt != nil }

// CryptoErase replaces the key, then releases or zeroes the storage where
// the medium can do so cheaply (a sparse image is punched, a file image
// zeroed with FALLOC_FL_ZERO_RANGE), so that erased blocks read as zeros
// and give their space back; elsewhere they read as noise. Callers hold
// off all I/O while it runs (the SCSI layer locks every block).
func (b *fileBackstore) CryptoErase() error {
	if err := b.rekey(); err != nil {
		return err
	}
	mode := uint32(unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE)
	if b.sparse {
		mode = unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE
	}
	err := b.changeRange("crypto erase", 0, b.size.Load(), true, b.fallocMode(mode))
	if errors.Is(err, errFallocateUnsupported) {
		return b.Sync() // the data is noise already; the key change is what erases it
	}
	return err
}
