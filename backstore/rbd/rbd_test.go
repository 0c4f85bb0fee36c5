//go:build ceph && linux

package rbd

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/blockport/blockport/backstore"
	"github.com/blockport/blockport/internal/cephtest"
)

var cluster *cephtest.Cluster

func TestMain(m *testing.M) {
	if conf := os.Getenv("BLOCKPORT_CEPH_CONF"); conf != "" {
		// A cluster started by hand (integration/ceph/cluster.sh).
		cluster = &cephtest.Cluster{Conf: conf}
		os.Exit(m.Run())
	}
	var err error
	cluster, err = cephtest.Start("")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := cluster.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

var (
	imageSeq atomic.Int64
	runID    = fmt.Sprintf("%x", time.Now().UnixNano()) // images of a reused cluster stay apart
)

// newImage opens a new image of size bytes under a name unique to t.
func newImage(t *testing.T, size int64, mutate ...func(*backstore.Options)) (*Image, backstore.Options) {
	t.Helper()
	opts := backstore.Options{
		Kind: backstore.KindRBD, Pool: "rbd", CephConf: cluster.Conf,
		Image: fmt.Sprintf("%s-%d-%s", runID, imageSeq.Add(1), strings.ReplaceAll(t.Name(), "/", "-")),
		Size:  size,
	}
	for _, m := range mutate {
		m(&opts)
	}
	b, err := backstore.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b.(*Image), opts
}

// openAgain opens the image of opts a second time, as another gateway
// would (at its own size); cleanup closes it unless the test did.
func openAgain(t *testing.T, opts backstore.Options) *Image {
	t.Helper()
	opts.Size = 0
	b, err := backstore.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b.(*Image)
}

func random(n int) []byte {
	p := make([]byte, n)
	rand.Read(p)
	return p
}

func TestReadWrite(t *testing.T) {
	for _, writeCache := range []bool{false, true} {
		t.Run(fmt.Sprintf("write_cache=%v", writeCache), func(t *testing.T) {
			img, _ := newImage(t, 8<<20, func(o *backstore.Options) { o.WriteCache = writeCache })
			if img.Size() != 8<<20 {
				t.Fatalf("size %d", img.Size())
			}
			data := random(1 << 20)
			for _, tc := range []struct {
				off int64
				n   int
				fua bool
			}{{0, 512, false}, {4096, 65536, true}, {3 << 20, 1 << 20, false}, {8<<20 - 512, 512, true}} {
				if n, err := img.WriteAt(data[:tc.n], tc.off, tc.fua); err != nil || n != tc.n {
					t.Fatalf("write %d at %d: %d, %v", tc.n, tc.off, n, err)
				}
				got := make([]byte, tc.n)
				if n, err := img.ReadAt(got, tc.off); err != nil || n != tc.n || !bytes.Equal(got, data[:tc.n]) {
					t.Fatalf("read %d at %d: %d, %v, equal %v", tc.n, tc.off, n, err, bytes.Equal(got, data[:tc.n]))
				}
			}
			if err := img.Sync(); err != nil {
				t.Fatal(err)
			}
			// io.ReaderAt rules at the end, refusal past it.
			got := make([]byte, 1024)
			if n, err := img.ReadAt(got, 8<<20-512); n != 512 || err != io.EOF {
				t.Fatalf("read across the end: %d, %v", n, err)
			}
			if _, err := img.WriteAt(got, 8<<20-512, false); !errors.Is(err, backstore.ErrOutOfRange) {
				t.Fatalf("write across the end: %v", err)
			}
		})
	}
}

func TestDataSurvivesReopen(t *testing.T) {
	img, opts := newImage(t, 4<<20)
	data := random(64 << 10)
	if _, err := img.WriteAt(data, 1<<20, false); err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	opts.Size = 0 // the image's own size
	opts.ReadOnly = true
	b, err := backstore.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := make([]byte, len(data))
	if _, err := b.ReadAt(got, 1<<20); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after reopen: %v, equal %v", err, bytes.Equal(got, data))
	}
	if b.Size() != 4<<20 {
		t.Fatalf("size %d", b.Size())
	}
	if _, err := b.WriteAt(data, 0, false); !errors.Is(err, backstore.ErrReadOnly) {
		t.Fatalf("write to a read-only image: %v", err)
	}
}

func TestConcurrentIO(t *testing.T) {
	img, _ := newImage(t, 16<<20)
	const workers, per = 32, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each worker owns a 512 KiB slice of the image.
			base := int64(w) * 512 << 10
			for i := range per {
				data := random(4096 * (1 + i%4))
				off := base + int64(i%16)*16384
				if _, err := img.WriteAt(data, off, i%5 == 0); err != nil {
					errs <- err
					return
				}
				got := make([]byte, len(data))
				if _, err := img.ReadAt(got, off); err != nil || !bytes.Equal(got, data) {
					errs <- fmt.Errorf("worker %d read back at %d: %v", w, off, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestUnmapZeroesAndWriteSame(t *testing.T) {
	img, _ := newImage(t, 16<<20)
	data := random(8 << 20)
	if _, err := img.WriteAt(data, 0, false); err != nil {
		t.Fatal(err)
	}
	zero := make([]byte, 8<<20)
	check := func(what string, off int64, want []byte) {
		t.Helper()
		got := make([]byte, len(want))
		if _, err := img.ReadAt(got, off); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: %v, equal %v", what, err, bytes.Equal(got, want))
		}
	}
	// Whole objects and parts of objects read as zeros once unmapped.
	for _, r := range [][2]int64{{0, 4 << 20}, {4<<20 + 4096, 8192}, {6 << 20, 512}} {
		if err := img.Unmap(r[0], r[1], false); err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("unmap %d+%d", r[0], r[1]), r[0], zero[:r[1]])
	}
	check("data after the unmapped part", 4<<20+12288, data[4<<20+12288:5<<20])
	if err := img.WriteZeroes(5<<20, 1<<20, true); err != nil {
		t.Fatal(err)
	}
	check("write zeroes", 5<<20, zero[:1<<20])
	pattern := random(512)
	if err := img.WriteSame(pattern, 8<<20, 2<<20, false); err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat(pattern, (2<<20)/512)
	check("write same", 8<<20, want)
	if err := img.WriteSame(pattern, 0, 1000, false); err == nil {
		t.Fatal("write same of a length that is not a multiple of the pattern: no error")
	}
	if info := img.UnmapInfo(); !info.ReadsZero || !info.Thin {
		t.Fatalf("unmap info %+v", info)
	}
}

func TestCompareAndWrite(t *testing.T) {
	img, _ := newImage(t, 8<<20)
	old := random(512)
	if _, err := img.WriteAt(old, 8192, false); err != nil {
		t.Fatal(err)
	}
	newData := random(512)
	if mis, err := img.CompareAndWrite(old, newData, 8192, false); err != nil || mis != -1 {
		t.Fatalf("matching compare: mismatch %d, %v", mis, err)
	}
	got := make([]byte, 512)
	img.ReadAt(got, 8192)
	if !bytes.Equal(got, newData) {
		t.Fatal("matching compare did not write")
	}
	// The old data no longer matches from byte 100 on (the first 100
	// bytes are made to match).
	stale := append([]byte(nil), old...)
	copy(stale, newData[:100])
	if stale[100] == newData[100] {
		stale[100] ^= 0xFF
	}
	if mis, err := img.CompareAndWrite(stale, random(512), 8192, true); err != nil || mis != 100 {
		t.Fatalf("mismatching compare: mismatch %d, %v; want 100", mis, err)
	}
	img.ReadAt(got, 8192)
	if !bytes.Equal(got, newData) {
		t.Fatal("a mismatching compare wrote")
	}
	// A miscompare in another object than the first reports its offset
	// in the compare buffer too.
	far := int64(4<<20 + 8192)
	if _, err := img.WriteAt(old, far, false); err != nil {
		t.Fatal(err)
	}
	stale2 := append([]byte(nil), old...)
	stale2[300] ^= 0xFF
	if mis, err := img.CompareAndWrite(stale2, random(512), far, false); err != nil || mis != 300 {
		t.Fatalf("mismatch in object 1: offset %d, %v; want 300", mis, err)
	}
	// Beyond one sector librbd (Pacific) refuses; the caller falls back.
	for _, r := range [][2]int{{8192, 4096}, {8192 + 256, 512}} {
		if _, err := img.CompareAndWrite(make([]byte, r[1]), make([]byte, r[1]), int64(r[0]), false); !errors.Is(err, errors.ErrUnsupported) {
			t.Fatalf("compare and write of %d bytes at %d: %v, want ErrUnsupported", r[1], r[0], err)
		}
	}
}

func TestIdentityAndResizeSeenByOtherGateway(t *testing.T) {
	a, opts := newImage(t, 4<<20)
	other, _ := newImage(t, 4<<20)
	b := openAgain(t, opts)
	if a.Identity() != b.Identity() || a.Identity() == other.Identity() || !strings.HasPrefix(a.Identity(), "rbd:") {
		t.Fatalf("identities: same image %q and %q, other image %q", a.Identity(), b.Identity(), other.Identity())
	}
	resized := make(chan struct{}, 1)
	b.OnResize(func() {
		select {
		case resized <- struct{}{}:
		default:
		}
	})
	if got, err := a.Resize(8 << 20); err != nil || got != 8<<20 {
		t.Fatalf("grow: %d, %v", got, err)
	}
	select {
	case <-resized:
	case <-time.After(30 * time.Second):
		t.Fatal("the other opener was not told of the resize")
	}
	if b.Size() != 4<<20 {
		t.Fatalf("size changed before Resize(0): %d", b.Size())
	}
	if got, err := b.Resize(0); err != nil || got != 8<<20 || b.Size() != 8<<20 {
		t.Fatalf("Resize(0): %d, %v", got, err)
	}
	if _, err := a.Resize(1 << 20); err == nil {
		t.Fatal("shrink: no error")
	}
}

func TestRecordsCompareAndSwapAndNotify(t *testing.T) {
	a, opts := newImage(t, 1<<20)
	b := openAgain(t, opts)
	ra, err := a.Record("pr")
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.Record("pr")
	if err != nil {
		t.Fatal(err)
	}
	notes := make(chan string, 10)
	if err := rb.Watch(func(note []byte) error { notes <- fmt.Sprintf("%q", note); return nil }); err != nil {
		t.Fatal(err)
	}
	ownNotes := make(chan string, 10)
	if err := ra.Watch(func(note []byte) error { ownNotes <- string(note); return nil }); err != nil {
		t.Fatal(err)
	}
	value, v0, err := ra.Load()
	if err != nil || len(value) != 0 {
		t.Fatalf("new record: %q, %v", value, err)
	}
	v1, ok, err := ra.Store([]byte("one"), v0)
	if err != nil || !ok || v1 == v0 {
		t.Fatalf("store: v%d, %v, %v", v1, ok, err)
	}
	if err := ra.Notify([]byte("n1"), false); err != nil {
		t.Fatal(err)
	}
	// The notification reached b before Notify returned.
	select {
	case n := <-notes:
		if n != `"n1"` {
			t.Fatalf("note %s", n)
		}
	default:
		t.Fatal("b had not been notified when Notify returned")
	}
	if len(ownNotes) != 0 {
		t.Fatalf("a was notified of its own change: %q", <-ownNotes)
	}
	// b stores against the version it last saw; a's stale version loses.
	value, vb, err := rb.Load()
	if err != nil || string(value) != "one" || vb != v1 {
		t.Fatalf("b loads %q v%d (%v), want \"one\" v%d", value, vb, err, v1)
	}
	if _, ok, err := rb.Store([]byte("two"), vb); err != nil || !ok {
		t.Fatalf("b store: %v, %v", ok, err)
	}
	if _, ok, err := ra.Store([]byte("lost"), v1); err != nil || ok {
		t.Fatalf("store at a stale version: ok %v, %v", ok, err)
	}
	if value, _, _ := ra.Load(); string(value) != "two" {
		t.Fatalf("after the lost race: %q", value)
	}
}

func TestOpenErrors(t *testing.T) {
	base := backstore.Options{Kind: backstore.KindRBD, Pool: "rbd", Image: "missing-image", CephConf: cluster.Conf}
	for _, tc := range []struct {
		name   string
		mutate func(*backstore.Options)
		want   string
	}{
		{"missing image without a size", func(o *backstore.Options) {}, "no such file"},
		{"missing pool", func(o *backstore.Options) { o.Pool = "nopool"; o.Size = 1 << 20 }, `pool "nopool"`},
		{"missing ceph.conf", func(o *backstore.Options) { o.CephConf = "/nonexistent/ceph.conf" }, "/nonexistent/ceph.conf"},
		{"no pool", func(o *backstore.Options) { o.Pool = "" }, "pool and image must be set"},
		{"size not a multiple of the block size", func(o *backstore.Options) { o.Size = 1000 }, "block_size"},
		{"encrypt", func(o *backstore.Options) { o.KeyFile = "/tmp/k"; o.Size = 1 << 20 }, "encrypt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := base
			tc.mutate(&opts)
			b, err := backstore.Open(opts)
			if err == nil {
				b.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "rbd") {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
	// A smaller configured size than the image's is refused.
	_, opts := newImage(t, 2<<20)
	opts.Size = 1 << 20
	if b, err := backstore.Open(opts); err == nil || !strings.Contains(err.Error(), "never shrunk") {
		if b != nil {
			b.Close()
		}
		t.Fatalf("shrinking open: %v", err)
	}
}

func TestCloseWaitsForIO(t *testing.T) {
	img, _ := newImage(t, 8<<20)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				if _, err := img.WriteAt(make([]byte, 65536), int64(i)*65536, false); err != nil {
					if !errors.Is(err, backstore.ErrClosed) {
						failed.Add(1)
					}
					return
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d writers failed with another error than ErrClosed", failed.Load())
	}
	if _, err := img.ReadAt(make([]byte, 512), 0); !errors.Is(err, backstore.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
}

func TestMismatchOffset(t *testing.T) {
	const obj = 4 << 20
	for _, tc := range []struct {
		reported uint64
		off      int64
		want     int64
	}{
		{100, 8192, 100},                // Pacific, object 0: object start + index
		{obj + 100, obj + 8192, 100},    // Pacific, object 1
		{8192 + 100, 8192, 100},         // Quincy and later: off + index
		{obj + 8292, obj + 8192, 100},   // later, object 1
		{obj + 7, obj, 7},               // off starts its object: both agree
		{123456789, obj + 8192, 0},      // neither: the first byte
		{3*obj + 511, 3*obj + 512, 511}, // Pacific, last byte of a sector
	} {
		if got := mismatchOffset(tc.reported, tc.off, 512, obj); got != tc.want {
			t.Errorf("mismatchOffset(%d, %d) = %d, want %d", tc.reported, tc.off, got, tc.want)
		}
	}
}

// TestRecordsFenceGatewayThatDidNotTakeNote: a member that answers that it
// could not take a fencing note in is blocklisted: its writes to the image
// fail from then on, the notifier's go on.
func TestRecordsFenceGatewayThatDidNotTakeNote(t *testing.T) {
	a, opts := newImage(t, 1<<20)
	b := openAgain(t, opts)
	ra, err := a.Record("pr")
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.Record("pr")
	if err != nil {
		t.Fatal(err)
	}
	if err := ra.Watch(func([]byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := rb.Watch(func([]byte) error { return errors.New("tasks stuck") }); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WriteAt(make([]byte, 512), 0, false); err != nil {
		t.Fatal("b writes before the fence:", err)
	}
	// Without fence nothing happens to b.
	if err := ra.Notify([]byte("{}"), false); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WriteAt(make([]byte, 512), 0, false); err != nil {
		t.Fatal("b writes after a note without fence:", err)
	}
	if err := ra.Notify([]byte("{}"), true); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := b.WriteAt(bytes.Repeat([]byte{'b'}, 512), 0, false)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a fenced gateway's write succeeded")
		}
		t.Logf("fenced gateway's write: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("a fenced gateway's write neither failed nor finished in 60 s")
	}
	if _, err := a.WriteAt(bytes.Repeat([]byte{'a'}, 512), 0, false); err != nil {
		t.Fatal("the fencing gateway cannot write:", err)
	}
	got := make([]byte, 512)
	if _, err := a.ReadAt(got, 0); err != nil || got[0] != 'a' {
		t.Fatalf("block 0 after the fence: %q, %v", got[:1], err)
	}
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	select {
	case <-closed:
	case <-time.After(60 * time.Second):
		t.Fatal("closing a fenced image hangs")
	}
}

func TestSplitAddrs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"127.0.0.1:0/123", []string{"127.0.0.1:0/123"}},
		{"[2001:db8::1]:0/123", []string{"[2001:db8::1]:0/123"}},
		{"[v2:127.0.0.1:0/5,v1:127.0.0.1:0/5]", []string{"v2:127.0.0.1:0/5", "v1:127.0.0.1:0/5"}},
		{"[v2:[2001:db8::1]:0/5,v1:[2001:db8::1]:0/5]", []string{"v2:[2001:db8::1]:0/5", "v1:[2001:db8::1]:0/5"}},
	} {
		if got := splitAddrs(tc.in); strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("splitAddrs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
