package backstore

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// loopDevice attaches a loop device to a new sparse file of size bytes with
// the given logical sector size and detaches it when the test ends. It
// skips when not root (CI runs as root).
func loopDevice(t *testing.T, size int64, sector int) (dev, backing string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("losetup not installed")
	}
	backing = filepath.Join(t.TempDir(), "loop.img")
	if err := os.WriteFile(backing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(backing, size); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", "--sector-size", strconv.Itoa(sector), backing).CombinedOutput()
	if err != nil {
		t.Skipf("losetup: %v: %s", err, out)
	}
	dev = strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
	})
	return dev, backing
}

func TestBlockBackstoreOnLoopDevice(t *testing.T) {
	for _, tt := range []struct {
		sector    int
		blockSize uint32
		direct    bool
	}{{512, 512, true}, {512, 4096, false}, {4096, 4096, true}} {
		t.Run(strconv.Itoa(tt.sector)+"/"+strconv.Itoa(int(tt.blockSize)), func(t *testing.T) {
			dev, backing := loopDevice(t, 32<<20, tt.sector)
			b, err := Open(Options{Kind: "block", Path: dev, BlockSize: tt.blockSize, DirectIO: tt.direct})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if b.Size() != 32<<20 {
				t.Fatalf("Size %d, want 32 MiB", b.Size())
			}
			bb := b.(*discardBlockBackstore) // a loop device on ext4 discards
			if bb.logical != uint32(tt.sector) || bb.PhysicalBlockSize() < uint32(tt.sector) {
				t.Fatalf("logical %d physical %d", bb.logical, bb.PhysicalBlockSize())
			}
			// Unaligned I/O round trips (bounced under O_DIRECT).
			data := pattern(3<<20+123, 7)
			if _, err := b.WriteAt(data, 1<<20+77, true); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(data))
			if _, err := b.ReadAt(got, 1<<20+77); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read back: %v", err)
			}
			if err := b.Sync(); err != nil {
				t.Fatal(err)
			}
			before := allocatedOnDisk(t, backing)
			// UNMAP reaches the device: the loop driver punches the backing file.
			if err := bb.Unmap(1<<20, 3<<20, true); err != nil {
				t.Fatal(err)
			}
			if after := allocatedOnDisk(t, backing); after > before-2<<20 {
				t.Fatalf("discard freed %d bytes of the backing file, want about 3 MiB", before-after)
			}
			// BLKZEROOUT.
			if _, err := b.WriteAt(bytes.Repeat([]byte{9}, 8192), 8192, false); err != nil {
				t.Fatal(err)
			}
			if err := bb.WriteZeroes(8192, 8192, true); err != nil {
				t.Fatal(err)
			}
			if _, err := b.ReadAt(got[:8192], 8192); err != nil || !bytes.Equal(got[:8192], make([]byte, 8192)) {
				t.Fatalf("after WriteZeroes: %v", err)
			}
			// Exclusive: a second opener is refused while the first holds it.
			if b2, err := Open(Options{Kind: "block", Path: dev, BlockSize: tt.blockSize}); err == nil {
				b2.Close()
				t.Fatal("second open of the device succeeded")
			} else if !strings.Contains(err.Error(), "busy") {
				t.Fatalf("second open: %v", err)
			}
		})
	}
}

func TestBlockBackstoreRefuses(t *testing.T) {
	dev, _ := loopDevice(t, 8<<20, 4096)
	for _, tt := range []struct {
		opts Options
		want string
	}{
		{Options{Kind: "block", Path: dev, BlockSize: 512}, "smaller than the device's logical block size 4096"},
		{Options{Kind: "block", Path: dev, BlockSize: 4096, Size: 4 << 20}, "leave size out"},
		{Options{Kind: "block", Path: "/dev/null", BlockSize: 512}, "not a block device"},
		{Options{Kind: "block", Path: filepath.Join(t.TempDir(), "x"), BlockSize: 512}, "no such file"},
	} {
		if b, err := Open(tt.opts); err == nil {
			b.Close()
			t.Errorf("Open(%+v) succeeded", tt.opts)
		} else if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Open(%+v) = %v, want %q", tt.opts, err, tt.want)
		}
	}
}

// The last sectors of a device whose size is not a multiple of 4 KiB are
// read and written under O_DIRECT like any other.
func TestBlockBackstoreOddSizeTail(t *testing.T) {
	const size = 8<<20 + 3*512
	dev, _ := loopDevice(t, size, 512)
	b, err := Open(Options{Kind: "block", Path: dev, BlockSize: 512, DirectIO: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Size() != size {
		t.Fatalf("Size %d, want %d", b.Size(), size)
	}
	for _, off := range []int64{size - 512, size - 3*512} {
		data := pattern(512, uint64(off))
		if _, err := b.WriteAt(data, off, true); err != nil {
			t.Fatalf("write at %d: %v", off, err)
		}
		got := make([]byte, 512)
		if _, err := b.ReadAt(got, off); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read at %d: %v (equal %v)", off, err, bytes.Equal(got, data))
		}
	}
}
