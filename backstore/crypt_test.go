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

// TestEncryptedKeyMissing: a key is made only together with a new image.
// An existing image whose key file is gone (state_dir lost, a target or
// LUN renamed) is refused rather than served as noise; a key left by a
// start that crashed before making its image is used for that image.
func TestEncryptedKeyMissing(t *testing.T) {
	for _, tt := range []struct {
		name     string
		prepare  func(t *testing.T, img, key string) // before Open
		wantErr  string                              // "" to open
		wantSame bool                                // the key file is the one prepare left
	}{
		{name: "new image, no key: both made"},
		{name: "existing image, no key", prepare: func(t *testing.T, img, key string) {
			if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "missing for an existing image"},
		{name: "key without image: the image is made under it", prepare: func(t *testing.T, img, key string) {
			if _, err := newKeyFile(key); err != nil {
				t.Fatal(err)
			}
		}, wantSame: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			img, key := filepath.Join(dir, "lun.img"), filepath.Join(dir, "keys", "lun.key")
			if tt.prepare != nil {
				tt.prepare(t, img, key)
			}
			before, _ := os.ReadFile(key)
			opts := Options{Kind: "sparse", Path: img, Size: 1 << 20, BlockSize: 512, KeyFile: key}
			b, err := Open(opts)
			if tt.wantErr != "" {
				if err == nil {
					b.Close()
					t.Fatal("opened")
				}
				if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), key) {
					t.Fatalf("error %q, want %q naming %s", err, tt.wantErr, key)
				}
				if _, err := os.Stat(key); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("a key file was made for an existing image (%v)", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			data := bytes.Repeat([]byte{0xa5}, 4096)
			if _, err := b.WriteAt(data, 0, true); err != nil {
				t.Fatal(err)
			}
			b.Close()
			after, err := os.ReadFile(key)
			if err != nil || len(after) != cryptKeyLen {
				t.Fatalf("key file after open: %d bytes, %v", len(after), err)
			}
			if tt.wantSame && !bytes.Equal(before, after) {
				t.Fatal("the key left before was replaced")
			}
			// The data reads back under the same key after a reopen; with
			// the key file gone the reopen is refused.
			b, err = Open(opts)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(data))
			_, err = b.ReadAt(got, 0)
			b.Close()
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read back after reopen: %v", err)
			}
			os.Remove(key)
			if b, err := Open(opts); err == nil {
				b.Close()
				t.Fatal("reopened without its key file")
			}
		})
	}
}
