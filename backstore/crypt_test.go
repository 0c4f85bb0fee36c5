package backstore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEncryptedImages(t *testing.T) {
	for _, kind := range []string{"file", "sparse"} {
		for _, direct := range []bool{false, true} {
			t.Run(kind+map[bool]string{false: "", true: "-direct"}[direct], func(t *testing.T) {
				dir := t.TempDir()
				path, keyFile := filepath.Join(dir, "img"), filepath.Join(dir, "keys", "lu.key")
				opts := Options{Kind: kind, Path: path, Size: 1 << 20, BlockSize: 512, DirectIO: direct, KeyFile: keyFile}
				b, err := Open(opts)
				if err != nil {
					t.Fatal(err)
				}
				st, err := os.Stat(keyFile)
				if err != nil || st.Mode().Perm() != 0o600 || st.Size() != cryptKeyLen {
					t.Fatalf("key file: %v %v", st, err)
				}
				pattern := bytes.Repeat([]byte("blockport secret"), 4096/16)
				if _, err := b.WriteAt(pattern, 8192, true); err != nil {
					t.Fatal(err)
				}
				// A 4096-byte-block LU writes whole blocks; 512 at odd units too.
				if _, err := b.WriteAt(pattern[:512], 512*7, false); err != nil {
					t.Fatal(err)
				}
				if _, err := b.WriteAt(pattern[:100], 0, false); !errors.Is(err, ErrUnalignedCrypt) {
					t.Fatalf("unaligned write: %v", err)
				}
				if _, err := b.ReadAt(make([]byte, 512), 100); !errors.Is(err, ErrUnalignedCrypt) {
					t.Fatalf("unaligned read: %v", err)
				}
				check := func(b Backstore, off int64, want []byte) {
					t.Helper()
					got := make([]byte, len(want))
					if _, err := b.ReadAt(got, off); err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, want) {
						t.Fatalf("read %d bytes at %d: % x..., want % x...", len(want), off, got[:16], want[:16])
					}
				}
				check(b, 8192, pattern)
				check(b, 512*7, pattern[:512])
				check(b, 1<<19, make([]byte, 4096)) // never written: zeros
				if err := b.Sync(); err != nil {
					t.Fatal(err)
				}
				// On the medium the data is ciphertext.
				raw, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Contains(raw, []byte("blockport secret")) || bytes.Equal(raw[8192:8192+4096], make([]byte, 4096)) {
					t.Fatal("the image holds the plaintext, or nothing")
				}
				// The same key reads it back after a reopen.
				b.Close()
				if b, err = Open(opts); err != nil {
					t.Fatal(err)
				}
				defer b.Close()
				check(b, 8192, pattern)

				oldKey, _ := os.ReadFile(keyFile)
				if err := b.(CryptoEraser).CryptoErase(); err != nil {
					t.Fatal(err)
				}
				newKey, _ := os.ReadFile(keyFile)
				if len(newKey) != cryptKeyLen || bytes.Equal(oldKey, newKey) {
					t.Fatal("CRYPTO ERASE kept the key")
				}
				// Punched or zeroed: the erased blocks read as zeros.
				check(b, 8192, make([]byte, 4096))
				check(b, 512*7, make([]byte, 512))
				if _, err := b.WriteAt(pattern, 0, true); err != nil {
					t.Fatal(err)
				}
				check(b, 0, pattern)
			})
		}
	}
}

func TestEncryptionRefused(t *testing.T) {
	dir := t.TempDir()
	loose := filepath.Join(dir, "loose.key")
	os.WriteFile(loose, bytes.Repeat([]byte{1}, cryptKeyLen), 0o644)
	short := filepath.Join(dir, "short.key")
	os.WriteFile(short, []byte{1, 2, 3}, 0o600)
	for _, tt := range []struct {
		name string
		opts Options
		want string
	}{
		{"memory", Options{Kind: "memory", Size: 1 << 20, KeyFile: filepath.Join(dir, "m.key")}, "cannot encrypt"},
		{"key readable by others", Options{Kind: "sparse", Path: filepath.Join(dir, "a.img"), Size: 1 << 20, KeyFile: loose}, "readable by others"},
		{"key of the wrong length", Options{Kind: "sparse", Path: filepath.Join(dir, "b.img"), Size: 1 << 20, KeyFile: short}, "holds 3 bytes"},
	} {
		b, err := Open(tt.opts)
		if err == nil {
			b.Close()
			t.Errorf("%s: opened", tt.name)
		} else if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	// A plain image has nothing to erase.
	b, err := Open(Options{Kind: "sparse", Path: filepath.Join(dir, "plain.img"), Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if ce := b.(CryptoEraser); ce.Encrypted() || ce.CryptoErase() == nil {
		t.Fatal("a plain image claims to be encrypted")
	}
}
