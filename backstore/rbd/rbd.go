//go:build ceph && linux

// Package rbd is the Ceph RBD backstore (backstore = "rbd"): a LUN whose
// blocks are an RBD image in a Ceph cluster, so that several Blockport
// gateways can serve one image. It is built only with the ceph build tag
// (cgo, librbd and librados from Debian's librbd-dev and librados-dev);
// importing it registers the kind.
//
// The cluster connection, pool I/O context and the shared records
// (record.go) go through github.com/ceph/go-ceph. The data path calls
// librbd's asynchronous C API directly: go-ceph's rbd package offers only
// blocking calls, which hold an OS thread per I/O in flight, and no
// compare-and-write. Completions are signalled on an eventfd that the Go
// netpoller watches (rbd_set_image_notification, rbd_poll_io_events), as
// the file backstore's Linux AIO does, so no thread waits per request and
// no C code calls back into Go.
package rbd

/*
#cgo LDFLAGS: -lrbd -lrados
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <rados/librados.h>
#include <rbd/librbd.h>

// notifyEventfd is librbd's image update callback: arg carries an eventfd
// that the Go side reads, so a size change reaches Go without a call from
// a librbd thread into the Go runtime.
static void notifyEventfd(void *arg) {
	uint64_t one = 1;
	ssize_t r = write((int)(intptr_t)arg, &one, sizeof one);
	(void)r;
}

static int watchUpdates(rbd_image_t image, uint64_t *handle, int fd) {
	return rbd_update_watch(image, handle, notifyEventfd, (void *)(intptr_t)fd);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/ceph/go-ceph/rados"
	"golang.org/x/sys/unix"

	"github.com/blockport/blockport/backstore"
)

func init() {
	backstore.Register(backstore.KindRBD, Open)
}

// Defaults for options left empty.
const (
	DefaultCephConf = "/etc/ceph/ceph.conf"
	DefaultClientID = "admin"
)

// casSector is the span within which Pacific's librbd compares and writes.
const casSector = 512

// maxPoll is how many completions one rbd_poll_io_events call collects.
const maxPoll = 64

// Image is an open RBD image.
type Image struct {
	name       string // pool/image, for messages
	conn       *rados.Conn
	ioctx      *rados.IOContext
	image      C.rbd_image_t
	readOnly   bool
	writeCache bool
	id         string // stable identity, see Identity
	objectSize int64  // bytes per RADOS object of the image

	size atomic.Int64

	// Completions: librbd counts them on completionFD; reap collects
	// them with rbd_poll_io_events and wakes the waiting request.
	completionFD *os.File
	mu           sync.Mutex
	waiting      map[unsafe.Pointer]chan int64 // completion -> its waiter; guarded by mu
	closed       bool                          // guarded by mu
	inflight     sync.WaitGroup
	stopping     atomic.Bool // set by Close: reap returns
	reaped       chan struct{}

	// Header updates (a resize by `rbd resize` or another gateway).
	updateFD     *os.File
	updateHandle C.uint64_t
	watched      chan struct{}
	onResize     atomic.Pointer[func()]

	records recordSet
}

// Open opens (and with Options.Size, creates or grows) the image
// opts.Pool/opts.Image.
func Open(opts backstore.Options) (backstore.Backstore, error) {
	if opts.Pool == "" || opts.Image == "" {
		return nil, errors.New("rbd: pool and image must be set")
	}
	if opts.KeyFile != "" {
		return nil, errors.New("rbd: encrypt is not supported; use Ceph's own encryption (rbd encryption format)")
	}
	conf := opts.CephConf
	if conf == "" {
		conf = DefaultCephConf
	}
	client := opts.ClientID
	if client == "" {
		client = DefaultClientID
	}
	conn, err := newConn(conf, client, opts.Keyring, nil)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (backstore.Backstore, error) {
		conn.Shutdown()
		return nil, err
	}
	// librbd's own write-back cache is the LUN's volatile write cache:
	// off unless write_cache says so, so that an acknowledged write is on
	// the OSDs. With it on, SYNCHRONIZE CACHE and FUA flush it.
	cache := "false"
	if opts.WriteCache {
		cache = "true"
	}
	if err := conn.SetConfigOption("rbd_cache", cache); err != nil {
		return fail(err)
	}
	// A discard of part of an object zeroes that part instead of leaving
	// the data (Pacific skips partial discards by default), so unmapped
	// blocks read as zeros (LBPRZ).
	for opt, val := range map[string]string{"rbd_skip_partial_discard": "false", "rbd_discard_granularity_bytes": "4096"} {
		if err := conn.SetConfigOption(opt, val); err != nil {
			return fail(fmt.Errorf("rbd: %s: %w", opt, err))
		}
	}
	if err := conn.Connect(); err != nil {
		return fail(fmt.Errorf("rbd: connect to the cluster of %s as client.%s: %w", conf, client, err))
	}
	// The shared records' connection: every operation bounded.
	recordsConn := func() (*rados.Conn, error) {
		c, err := newConn(conf, client, opts.Keyring, map[string]string{
			"rados_osd_op_timeout": opTimeout, "rados_mon_op_timeout": opTimeout})
		if err != nil {
			return nil, err
		}
		if err := c.Connect(); err != nil {
			c.Shutdown()
			return nil, fmt.Errorf("rbd: connect to the cluster of %s as client.%s: %w", conf, client, err)
		}
		return c, nil
	}
	ioctx, err := conn.OpenIOContext(opts.Pool)
	if err != nil {
		return fail(fmt.Errorf("rbd: pool %q: %w", opts.Pool, err))
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	img := &Image{
		name:       opts.Pool + "/" + opts.Image,
		conn:       conn,
		ioctx:      ioctx,
		readOnly:   opts.ReadOnly,
		writeCache: opts.WriteCache,
		waiting:    make(map[unsafe.Pointer]chan int64),
		reaped:     make(chan struct{}),
		watched:    make(chan struct{}),
	}
	img.records.connect, img.records.pool, img.records.dataConn = recordsConn, opts.Pool, conn
	img.records.log = log
	if err := img.open(opts); err != nil {
		ioctx.Destroy()
		return fail(err)
	}
	return img, nil
}

// clientAddrs returns the addresses of connected clients in the form the
// blocklist takes (ip:port/nonce), from rados_getaddrs's list of
// [v2:ip:port/nonce,v1:ip:port/nonce].
func clientAddrs(conns ...*rados.Conn) ([]string, error) {
	var out []string
	for _, c := range conns {
		var cs *C.char
		if r := C.rados_getaddrs(C.rados_t(c.Cluster()), &cs); r < 0 {
			return nil, fmt.Errorf("rbd: client addresses: %w", errno(r))
		}
		list := C.GoString(cs)
		C.free(unsafe.Pointer(cs))
		for _, a := range splitAddrs(list) {
			a = strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(a), "v2:"), "v1:")
			a = strings.TrimPrefix(a, "any:")
			if a != "" && !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out, nil
}

// splitAddrs splits rados_getaddrs's text: one address
// ("127.0.0.1:0/123", "[2001:db8::1]:0/123") or a vector of them in
// brackets ("[v2:127.0.0.1:0/123,v1:127.0.0.1:0/123]"). An address ends in
// its /nonce, so only a vector ends in "]".
func splitAddrs(list string) []string {
	list = strings.TrimSpace(list)
	if strings.HasPrefix(list, "[") && strings.HasSuffix(list, "]") {
		list = list[1 : len(list)-1]
	}
	return strings.Split(list, ",")
}

// newConn prepares (does not connect) a cluster connection from a
// ceph.conf, a client name and a keyring, with options on top.
func newConn(conf, client, keyring string, options map[string]string) (*rados.Conn, error) {
	conn, err := rados.NewConnWithUser(client)
	if err != nil {
		return nil, fmt.Errorf("rbd: client %q: %w", client, err)
	}
	if err := conn.ReadConfigFile(conf); err != nil {
		conn.Shutdown()
		return nil, fmt.Errorf("rbd: read %s: %w", conf, err)
	}
	if keyring != "" {
		if err := conn.SetConfigOption("keyring", keyring); err != nil {
			conn.Shutdown()
			return nil, fmt.Errorf("rbd: keyring %s: %w", keyring, err)
		}
	}
	// A cluster that cannot be reached fails the open instead of hanging
	// the server's start.
	if options == nil {
		options = map[string]string{}
	}
	options["client_mount_timeout"] = "30"
	for opt, val := range options {
		if err := conn.SetConfigOption(opt, val); err != nil {
			conn.Shutdown()
			return nil, fmt.Errorf("rbd: %s: %w", opt, err)
		}
	}
	return conn, nil
}

// open opens the image, creating or growing it to opts.Size, and starts
// the completion and update watchers.
func (img *Image) open(opts backstore.Options) error {
	cname := C.CString(opts.Image)
	defer C.free(unsafe.Pointer(cname))
	ioctx := C.rados_ioctx_t(img.ioctx.Pointer())
	var r C.int
	if opts.ReadOnly {
		r = C.rbd_open_read_only(ioctx, cname, &img.image, nil)
	} else {
		r = C.rbd_open(ioctx, cname, &img.image, nil)
	}
	if r == -C.ENOENT && opts.Size > 0 && !opts.ReadOnly {
		// A new image of the configured size (librbd's default features
		// and 4 MiB objects), as a file image is created.
		order := C.int(0)
		if r = C.rbd_create(ioctx, cname, C.uint64_t(opts.Size), &order); r < 0 {
			return fmt.Errorf("rbd: create image %s: %w", img.name, errno(r))
		}
		r = C.rbd_open(ioctx, cname, &img.image, nil)
	}
	if r < 0 {
		return fmt.Errorf("rbd: open image %s: %w", img.name, errno(r))
	}
	closeImage := func() { C.rbd_close(img.image) }
	size, err := img.imageSize()
	if err != nil {
		closeImage()
		return err
	}
	if opts.Size > 0 && opts.Size != size {
		if opts.Size < size || opts.ReadOnly {
			closeImage()
			return fmt.Errorf("rbd: image %s has %d bytes, the config says %d; an image is grown, never shrunk (rbd resize it by hand)", img.name, size, opts.Size)
		}
		if r := C.rbd_resize(img.image, C.uint64_t(opts.Size)); r < 0 {
			closeImage()
			return fmt.Errorf("rbd: grow image %s to %d bytes: %w", img.name, opts.Size, errno(r))
		}
		size = opts.Size
	}
	if size%int64(opts.BlockSize) != 0 {
		closeImage()
		return fmt.Errorf("rbd: image %s has %d bytes, not a multiple of block_size %d", img.name, size, opts.BlockSize)
	}
	img.size.Store(size)
	var info C.rbd_image_info_t
	if r := C.rbd_stat(img.image, &info, C.size_t(unsafe.Sizeof(info))); r < 0 {
		closeImage()
		return fmt.Errorf("rbd: stat image %s: %w", img.name, errno(r))
	}
	img.objectSize = int64(info.obj_size)
	var idbuf [64]C.char
	idlen := C.size_t(len(idbuf))
	if r := C.rbd_get_id(img.image, &idbuf[0], idlen); r < 0 {
		closeImage()
		return fmt.Errorf("rbd: id of image %s: %w", img.name, errno(r))
	}
	fsid, err := img.conn.GetFSID()
	if err != nil {
		closeImage()
		return fmt.Errorf("rbd: cluster fsid: %w", err)
	}
	img.records.imageID = C.GoString(&idbuf[0])
	img.id = fmt.Sprintf("rbd:%s/%d/%s", fsid, img.ioctx.GetPoolID(), img.records.imageID)

	cfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		closeImage()
		return fmt.Errorf("rbd: eventfd: %w", err)
	}
	if r := C.rbd_set_image_notification(img.image, C.int(cfd), C.EVENT_TYPE_EVENTFD); r < 0 {
		unix.Close(cfd)
		closeImage()
		return fmt.Errorf("rbd: completion notification: %w", errno(r))
	}
	img.completionFD = os.NewFile(uintptr(cfd), "rbd-completions")
	ufd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		img.completionFD.Close()
		closeImage()
		return fmt.Errorf("rbd: eventfd: %w", err)
	}
	if r := C.watchUpdates(img.image, &img.updateHandle, C.int(ufd)); r < 0 {
		unix.Close(ufd)
		img.completionFD.Close()
		closeImage()
		return fmt.Errorf("rbd: watch image %s: %w", img.name, errno(r))
	}
	img.updateFD = os.NewFile(uintptr(ufd), "rbd-updates")
	go img.reap()
	go img.watchUpdates()
	return nil
}

func (img *Image) imageSize() (int64, error) {
	var size C.uint64_t
	if r := C.rbd_get_size(img.image, &size); r < 0 {
		return 0, fmt.Errorf("rbd: size of image %s: %w", img.name, errno(r))
	}
	return int64(size), nil
}

// errno turns a negative librbd return into a syscall.Errno error.
func errno(r C.int) error { return syscall.Errno(-r) }

// reap hands each completed request its return value.
func (img *Image) reap() {
	defer close(img.reaped)
	var count [8]byte
	var comps [maxPoll]C.rbd_completion_t
	for {
		if _, err := img.completionFD.Read(count[:]); err != nil || img.stopping.Load() {
			return // Close: nothing is in flight
		}
		for {
			n := C.rbd_poll_io_events(img.image, &comps[0], C.int(len(comps)))
			if n <= 0 {
				break
			}
			for _, c := range comps[:n] {
				ret := int64(C.rbd_aio_get_return_value(c))
				img.mu.Lock()
				done, ok := img.waiting[unsafe.Pointer(c)]
				delete(img.waiting, unsafe.Pointer(c))
				img.mu.Unlock()
				if !ok {
					// Not one of ours to finish (a completion waited
					// for with waitBlocking): its owner releases it.
					continue
				}
				C.rbd_aio_release(c)
				done <- ret
			}
			if int(n) < len(comps) {
				break
			}
		}
	}
}

// watchUpdates calls the resize observer when librbd reports a header
// update (resize, snapshot, feature change) that changed the size.
func (img *Image) watchUpdates() {
	defer close(img.watched)
	var count [8]byte
	for {
		if _, err := img.updateFD.Read(count[:]); err != nil {
			return
		}
		size, err := img.imageSize()
		if err != nil || size == img.size.Load() {
			continue
		}
		if fn := img.onResize.Load(); fn != nil {
			(*fn)()
		}
	}
}

// request is one asynchronous librbd call in flight. Buffers given to
// librbd are pinned until the completion: librbd keeps their addresses
// after the submitting call returns.
type request struct {
	img    *Image
	comp   C.rbd_completion_t
	done   chan int64
	pinner runtime.Pinner
}

var requestPool = sync.Pool{New: func() any { return &request{done: make(chan int64, 1)} }}

// start registers a new completion; the caller submits with it, then
// calls wait (or abandon when the submit failed).
func (img *Image) start() (*request, error) {
	img.mu.Lock()
	if img.closed {
		img.mu.Unlock()
		return nil, backstore.ErrClosed
	}
	img.inflight.Add(1)
	img.mu.Unlock()
	req := requestPool.Get().(*request)
	req.img = img
	if r := C.rbd_aio_create_completion(nil, nil, &req.comp); r < 0 {
		img.inflight.Done()
		requestPool.Put(req)
		return nil, errno(r)
	}
	img.mu.Lock()
	img.waiting[unsafe.Pointer(req.comp)] = req.done
	img.mu.Unlock()
	return req, nil
}

// pin keeps p (or its first byte's array) in place for librbd.
func (req *request) pin(p []byte) *C.char {
	if len(p) == 0 {
		return nil
	}
	req.pinner.Pin(&p[0])
	return (*C.char)(unsafe.Pointer(&p[0]))
}

// wait returns the request's result once librbd completed it. submitted
// is the submitting call's return: when negative, nothing was queued.
func (req *request) wait(submitted C.int) int64 {
	img := req.img
	var ret int64
	if submitted < 0 {
		img.mu.Lock()
		delete(img.waiting, unsafe.Pointer(req.comp))
		img.mu.Unlock()
		C.rbd_aio_release(req.comp)
		ret = int64(submitted)
	} else {
		ret = <-req.done
	}
	req.finish()
	return ret
}

// waitBlocking is wait for the librbd calls whose completion does not go
// through the image's event notification (Pacific's compare-and-write
// submits it as not natively asynchronous): the calling thread waits in
// librbd. The completion must have been withdrawn from the reaper with
// unlist before the submit.
func (req *request) waitBlocking(submitted C.int) int64 {
	ret := int64(submitted)
	if submitted >= 0 {
		C.rbd_aio_wait_for_complete(req.comp)
		ret = int64(C.rbd_aio_get_return_value(req.comp))
	}
	C.rbd_aio_release(req.comp)
	req.finish()
	return ret
}

// unlist takes the request's completion out of the reaper's map.
func (req *request) unlist() {
	req.img.mu.Lock()
	delete(req.img.waiting, unsafe.Pointer(req.comp))
	req.img.mu.Unlock()
}

func (req *request) finish() {
	img := req.img
	req.pinner.Unpin()
	req.img, req.comp = nil, nil
	requestPool.Put(req)
	img.inflight.Done()
}

// ReadAt implements backstore.Backstore.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	n, eof := backstore.ClipRead(len(p), off, img.size.Load())
	if n == 0 {
		return 0, eof
	}
	req, err := img.start()
	if err != nil {
		return 0, err
	}
	buf := req.pin(p)
	ret := req.wait(C.rbd_aio_read(img.image, C.uint64_t(off), C.size_t(n), buf, req.comp))
	if ret < 0 {
		return 0, fmt.Errorf("rbd: read %d bytes at %d of %s: %w", n, off, img.name, syscall.Errno(-ret))
	}
	if int(ret) < n {
		// The image shrank under us.
		return int(ret), io.EOF
	}
	return n, eof
}

func (img *Image) checkWrite(length int, off int64) error {
	if img.readOnly {
		return backstore.ErrReadOnly
	}
	return backstore.CheckWrite(length, off, img.size.Load())
}

// WriteAt implements backstore.Backstore. With librbd's cache off the
// write is on the OSDs when it completes; with it on, fua flushes.
func (img *Image) WriteAt(p []byte, off int64, fua bool) (int, error) {
	if err := img.checkWrite(len(p), off); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	req, err := img.start()
	if err != nil {
		return 0, err
	}
	buf := req.pin(p)
	ret := req.wait(C.rbd_aio_write(img.image, C.uint64_t(off), C.size_t(len(p)), buf, req.comp))
	if ret < 0 {
		return 0, fmt.Errorf("rbd: write %d bytes at %d of %s: %w", len(p), off, img.name, syscall.Errno(-ret))
	}
	if fua {
		// Even with rbd_cache off for this connection, an image may turn
		// the cache on for itself (rbd config image set ... rbd_cache):
		// a flush is cheap when there is nothing to flush.
		if err := img.Sync(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Sync implements backstore.Backstore: rbd_aio_flush writes librbd's cache
// back (a no-op when the cache is off).
func (img *Image) Sync() error {
	req, err := img.start()
	if err != nil {
		return err
	}
	if ret := req.wait(C.rbd_aio_flush(img.image, req.comp)); ret < 0 {
		return fmt.Errorf("rbd: flush %s: %w", img.name, syscall.Errno(-ret))
	}
	return nil
}

// Size implements backstore.Backstore.
func (img *Image) Size() int64 { return img.size.Load() }

// Close implements backstore.Backstore: it waits for the requests in
// flight, flushes and releases the image and the cluster connection.
func (img *Image) Close() error {
	img.mu.Lock()
	if img.closed {
		img.mu.Unlock()
		return backstore.ErrClosed
	}
	img.closed = true
	img.mu.Unlock()
	img.inflight.Wait()
	img.records.close()
	// Nothing is in flight. Stop the goroutines that call into librbd
	// before the image goes: the reaper (woken through its eventfd to see
	// stopping) and the update watcher (after librbd's last callback).
	img.stopping.Store(true)
	one := [8]byte{1}
	unix.Write(int(img.completionFD.Fd()), one[:])
	<-img.reaped
	C.rbd_update_unwatch(img.image, img.updateHandle)
	img.updateFD.Close()
	<-img.watched
	var err error
	if !img.readOnly {
		if r := C.rbd_flush(img.image); r < 0 {
			err = fmt.Errorf("rbd: flush %s: %w", img.name, errno(r))
		}
	}
	if r := C.rbd_close(img.image); r < 0 && err == nil {
		err = fmt.Errorf("rbd: close %s: %w", img.name, errno(r))
	}
	// Only now: librbd held the eventfd's number until rbd_close.
	img.completionFD.Close()
	img.ioctx.Destroy()
	img.conn.Shutdown()
	return err
}

// Unmap implements backstore.Unmapper with rbd_aio_discard.
func (img *Image) Unmap(off, length int64, fua bool) error {
	if err := img.checkWrite(int(min(length, 1<<62)), off); err != nil {
		return err
	}
	req, err := img.start()
	if err != nil {
		return err
	}
	if ret := req.wait(C.rbd_aio_discard(img.image, C.uint64_t(off), C.uint64_t(length), req.comp)); ret < 0 {
		return fmt.Errorf("rbd: discard %d bytes at %d of %s: %w", length, off, img.name, syscall.Errno(-ret))
	}
	if fua {
		return img.Sync()
	}
	return nil
}

// UnmapInfo implements backstore.Unmapper. librbd releases whole objects
// and zeroes partial ones (rbd_skip_partial_discard is off, see Open), so
// discarded bytes read as zeros; the image is thin.
func (img *Image) UnmapInfo() backstore.UnmapInfo {
	return backstore.UnmapInfo{Granularity: 4096, ReadsZero: true, Thin: true}
}

// WriteZeroes implements backstore.Zeroer with rbd_aio_write_zeroes.
func (img *Image) WriteZeroes(off, length int64, fua bool) error {
	if err := img.checkWrite(int(min(length, 1<<62)), off); err != nil {
		return err
	}
	req, err := img.start()
	if err != nil {
		return err
	}
	if ret := req.wait(C.rbd_aio_write_zeroes(img.image, C.uint64_t(off), C.size_t(length), req.comp, 0, 0)); ret < 0 {
		return fmt.Errorf("rbd: write zeroes %d bytes at %d of %s: %w", length, off, img.name, syscall.Errno(-ret))
	}
	if fua {
		return img.Sync()
	}
	return nil
}

// WriteSame implements backstore.SameWriter with rbd_aio_writesame: the
// pattern goes to the OSDs once per object, not once per block.
func (img *Image) WriteSame(pattern []byte, off, length int64, fua bool) error {
	if err := img.checkWrite(int(min(length, 1<<62)), off); err != nil {
		return err
	}
	if len(pattern) == 0 || length%int64(len(pattern)) != 0 {
		return fmt.Errorf("rbd: write same of %d bytes with a %d-byte pattern", length, len(pattern))
	}
	req, err := img.start()
	if err != nil {
		return err
	}
	buf := req.pin(pattern)
	if ret := req.wait(C.rbd_aio_writesame(img.image, C.uint64_t(off), C.size_t(length), buf, C.size_t(len(pattern)), req.comp, 0)); ret < 0 {
		return fmt.Errorf("rbd: write same %d bytes at %d of %s: %w", length, off, img.name, syscall.Errno(-ret))
	}
	if fua {
		return img.Sync()
	}
	return nil
}

// CompareAndWrite implements backstore.AtomicComparer with
// rbd_aio_compare_and_write: the OSD compares and writes in one step, so
// the operation is atomic against every gateway serving the image, not
// only against this server's commands. Pacific's librbd does it only
// within one aligned 512-byte sector (a one-block COMPARE AND WRITE of a
// 512-byte LUN, as VMware's ATS sends); for others it returns
// errors.ErrUnsupported and the SCSI layer compares under its own lock.
func (img *Image) CompareAndWrite(compare, write []byte, off int64, fua bool) (mismatch int64, err error) {
	if err := img.checkWrite(len(write), off); err != nil {
		return -1, err
	}
	if len(write) == 0 || off/casSector != (off+int64(len(write))-1)/casSector {
		return -1, errors.ErrUnsupported
	}
	if len(compare) != len(write) {
		return -1, fmt.Errorf("rbd: compare and write with %d bytes to compare and %d to write", len(compare), len(write))
	}
	req, err := img.start()
	if err != nil {
		return -1, err
	}
	cmp := req.pin(compare)
	buf := req.pin(write)
	mis := (*C.uint64_t)(C.malloc(C.size_t(unsafe.Sizeof(C.uint64_t(0)))))
	defer C.free(unsafe.Pointer(mis))
	*mis = 0
	req.unlist()
	submitted := C.rbd_aio_compare_and_write(img.image, C.uint64_t(off), C.size_t(len(write)), cmp, buf, req.comp, mis, 0)
	ret := req.waitBlocking(C.int(submitted))
	if ret == -int64(C.EILSEQ) {
		return mismatchOffset(uint64(*mis), off, len(compare), img.objectSize), nil
	}
	if ret < 0 {
		return -1, fmt.Errorf("rbd: compare and write %d bytes at %d of %s: %w", len(write), off, img.name, syscall.Errno(-ret))
	}
	if fua {
		if err := img.Sync(); err != nil {
			return -1, err
		}
	}
	return -1, nil
}

// mismatchOffset turns librbd's report of the first differing byte of a
// compare-and-write of length bytes at off into an offset in the compare
// buffer. librbd reports an image offset: since Quincy off plus the index,
// in Pacific the start of the object plus the index. A compare lies within
// one 512-byte sector, so the two readings differ unless off starts its
// object, where they agree.
func mismatchOffset(reported uint64, off int64, length int, objectSize int64) int64 {
	r := int64(reported)
	if r >= off && r-off < int64(length) {
		return r - off
	}
	if objectSize > 0 {
		if start := off / objectSize * objectSize; r >= start && r-start < int64(length) {
			return r - start
		}
	}
	return 0 // not a reading of either kind: the first byte
}

// Resize implements backstore.Resizer: size 0 takes the image's size now
// (grown by `rbd resize` or another gateway), a larger size grows it.
func (img *Image) Resize(size int64) (int64, error) {
	if size != 0 {
		if img.readOnly {
			return 0, backstore.ErrReadOnly
		}
		if size < img.size.Load() {
			return 0, fmt.Errorf("rbd: %d bytes is smaller than the image's %d", size, img.size.Load())
		}
		if r := C.rbd_resize(img.image, C.uint64_t(size)); r < 0 {
			return 0, fmt.Errorf("rbd: grow %s to %d bytes: %w", img.name, size, errno(r))
		}
	}
	now, err := img.imageSize()
	if err != nil {
		return 0, err
	}
	if now < img.size.Load() {
		return 0, fmt.Errorf("rbd: image %s shrank from %d to %d bytes; its initiators may lose data (rbd resize it back)", img.name, img.size.Load(), now)
	}
	img.size.Store(now)
	return now, nil
}

// OnResize implements backstore.ResizeNotifier.
func (img *Image) OnResize(fn func()) { img.onResize.Store(&fn) }

// Identity implements backstore.Identified: the cluster's fsid, the pool
// id and the image id (stable across renames). Two gateways that open the
// same image give its LUN the same serial number and NAA designator.
func (img *Image) Identity() string { return img.id }

// String names the image for logs.
func (img *Image) String() string { return "rbd:" + img.name }
