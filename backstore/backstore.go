// Package backstore stores the blocks behind a logical unit. A backstore
// knows offsets and lengths in bytes and nothing of SCSI: the SCSI layer
// turns LBAs into byte ranges, checks them against Size, and calls the
// positional methods below (io.ReaderAt/io.WriterAt style).
package backstore

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
)

// Backstore is the storage behind one logical unit. All methods are safe
// for concurrent use; concurrent writes to overlapping ranges leave one of
// the writers' data in each block, as on a disk (SAM-5: tasks with the SIMPLE
// task attribute have no order among themselves).
type Backstore interface {
	// ReadAt reads len(p) bytes at off. It follows io.ReaderAt: a read
	// that reaches Size returns the bytes before it and io.EOF.
	ReadAt(p []byte, off int64) (int, error)
	// WriteAt writes p at off. When fua is true the data is on stable
	// storage when WriteAt returns (SBC-4 WRITE(10)/(16): the FUA bit). A write
	// that does not fit below Size is refused whole with ErrOutOfRange.
	WriteAt(p []byte, off int64, fua bool) (int, error)
	// Sync flushes volatile caches (SBC-4 SYNCHRONIZE CACHE (10)/(16)).
	Sync() error
	// Size is the capacity in bytes, a multiple of the block size.
	Size() int64
	// Close flushes and releases the backstore. I/O after Close returns
	// ErrClosed.
	Close() error
}

// Options describe a backstore to open. They come from the config package
// already validated for syntax; Open checks what only it can check.
type Options struct {
	Kind      string // "file" | "sparse" | "block" | "memory" | KindRBD (built with -tags ceph)
	Path      string // image or device path, for "file", "sparse" and "block"
	Size      int64  // bytes; 0 with an existing file = use the file size; a block device gives its own
	BlockSize uint32 // 512 or 4096; 0 means 512
	// DirectIO opens the image with O_DIRECT so the host page cache holds
	// no copy of LUN data (the initiator caches it already).
	DirectIO bool
	// WriteCache false is write-through: every acknowledged write is on
	// stable storage. True is write-back: data is stable only after Sync
	// or a FUA write; the SCSI layer reports WCE=1 in the caching mode page.
	WriteCache bool
	ReadOnly   bool
	// Progress, when not nil, is called as a file image is preallocated
	// (created or grown) with the bytes done so far and the total.
	Progress func(done, total int64)
	// KeyFile, when set, encrypts the data at rest with the key kept in
	// that file, created when missing (crypt.go); file, sparse and block
	// backstores only. It makes CRYPTOGRAPHIC ERASE possible.
	KeyFile string

	// Ceph RBD (Kind KindRBD): the image Pool/Image of the cluster that
	// CephConf describes, reached as client.ClientID with the secret in
	// Keyring (empty: the one ceph.conf names).
	Pool, Image, CephConf, ClientID, Keyring string

	// Logger, when set, takes what a backstore has to report while it
	// serves (an RBD gateway fencing another); nil is slog.Default().
	Logger *slog.Logger
}

// KindRBD is the Ceph RBD backstore's kind. Package backstore/rbd
// registers it when the binary is built with the ceph build tag.
const KindRBD = "rbd"

// DefaultBlockSize is used when Options.BlockSize is 0.
const DefaultBlockSize = 512

var (
	// ErrOutOfRange: an offset or length outside [0, Size). The SCSI
	// layer checks LBA ranges first, so seeing it means a bug upstream.
	ErrOutOfRange = errors.New("backstore: range outside the backstore")
	// ErrReadOnly: a write to a backstore opened read-only.
	ErrReadOnly = errors.New("backstore: read-only")
	// ErrClosed: I/O after Close.
	ErrClosed = errors.New("backstore: closed")
	// ErrDirectIOUnsupported: the filesystem refused O_DIRECT.
	ErrDirectIOUnsupported = errors.New("filesystem does not support O_DIRECT; set direct_io = false for this backstore")
)

// OpenFunc opens one kind of backstore from options that Open has already
// checked for kind-independent rules (block size, size alignment).
type OpenFunc func(opts Options) (Backstore, error)

// registry maps Options.Kind to its opener. It is filled from init
// functions of this package (and later from wrappers), like image.RegisterFormat.
var registry = struct {
	sync.RWMutex
	kinds map[string]OpenFunc // guarded by the RWMutex
}{kinds: make(map[string]OpenFunc)}

// Register makes a backstore kind available to Open. Registering a kind
// twice or a nil opener is a programming error and panics, as sql.Register does.
func Register(kind string, open OpenFunc) {
	registry.Lock()
	defer registry.Unlock()
	if open == nil {
		panic("backstore: Register of nil OpenFunc for kind " + kind)
	}
	if _, dup := registry.kinds[kind]; dup {
		panic("backstore: Register called twice for kind " + kind)
	}
	registry.kinds[kind] = open
}

// Kinds lists the registered kinds, sorted.
func Kinds() []string {
	registry.RLock()
	defer registry.RUnlock()
	kinds := make([]string, 0, len(registry.kinds))
	for k := range registry.kinds {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	return kinds
}

// Open opens the backstore described by opts. Errors name the kind and path.
func Open(opts Options) (Backstore, error) {
	registry.RLock()
	open, ok := registry.kinds[opts.Kind]
	registry.RUnlock()
	if !ok && opts.Kind == KindRBD {
		return nil, fmt.Errorf("open rbd backstore %s/%s: this binary has no RBD support; build it with `make build CEPH=1` (go build -tags ceph,pacific), which needs librbd-dev and librados-dev", opts.Pool, opts.Image)
	}
	if !ok {
		return nil, fmt.Errorf("open backstore %q: unknown kind %q (known: %v)", opts.Path, opts.Kind, Kinds())
	}
	wrap := func(err error) error {
		if opts.Kind == KindRBD {
			return fmt.Errorf("open rbd backstore %s/%s: %w", opts.Pool, opts.Image, err)
		}
		if opts.Path == "" {
			return fmt.Errorf("open %s backstore: %w", opts.Kind, err)
		}
		return fmt.Errorf("open %s backstore %q: %w", opts.Kind, opts.Path, err)
	}
	if err := checkOptions(&opts); err != nil {
		return nil, wrap(err)
	}
	b, err := open(opts)
	if err != nil {
		return nil, wrap(err)
	}
	if ce, ok := b.(CryptoEraser); opts.KeyFile != "" && (!ok || !ce.Encrypted()) {
		b.Close()
		return nil, wrap(fmt.Errorf("a %s backstore cannot encrypt", opts.Kind))
	}
	return b, nil
}

// checkOptions applies the rules common to all kinds and fills defaults.
func checkOptions(opts *Options) error {
	switch opts.BlockSize {
	case 0:
		if opts.Kind == "block" {
			break // the device's logical block size (block.go)
		}
		opts.BlockSize = DefaultBlockSize
	case 512, 4096:
	default:
		return fmt.Errorf("block_size %d: must be 512 or 4096", opts.BlockSize)
	}
	if opts.Size < 0 {
		return fmt.Errorf("size %d: must not be negative", opts.Size)
	}
	if opts.BlockSize != 0 && opts.Size%int64(opts.BlockSize) != 0 {
		return fmt.Errorf("size %d: not a multiple of block_size %d", opts.Size, opts.BlockSize)
	}
	return nil
}

// ClipRead applies io.ReaderAt rules shared by the kinds: it returns how
// many bytes of a len-byte read at off lie below size, and the error to
// return once those are read (io.EOF when the read was cut short).
func ClipRead(length int, off, size int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read at offset %d: %w", off, ErrOutOfRange)
	}
	if off >= size {
		if length == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	if int64(length) > size-off {
		return int(size - off), io.EOF
	}
	return length, nil
}

// CheckWrite refuses writes that do not fit whole below size: a partial
// write would leave the LU in a state no command asked for.
func CheckWrite(length int, off, size int64) error {
	if off < 0 || off > size || int64(length) > size-off {
		return fmt.Errorf("write of %d bytes at offset %d with size %d: %w", length, off, size, ErrOutOfRange)
	}
	return nil
}
