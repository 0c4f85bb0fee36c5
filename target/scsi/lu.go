package scsi

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/blockport/blockport/backstore"
	"github.com/blockport/blockport/target/scsi/pr"
	"github.com/blockport/blockport/target/scsi/sense"
)

// LUConfig describes one logical unit.
type LUConfig struct {
	Backstore backstore.Backstore
	BlockSize uint32 // 512 or 4096 (0 means 512)
	// PhysicalBlockSize overrides the physical block size the backstore
	// reports (backstore.Geometry) when non-zero: a power of two multiple
	// of BlockSize.
	PhysicalBlockSize uint32
	ReadOnly          bool
	WriteCache        bool // reported as WCE in the caching mode page
	// Removable makes a removable medium LU (RMB=1): START STOP UNIT
	// loads and ejects it, PREVENT ALLOW MEDIUM REMOVAL locks it in.
	Removable bool
	// ThinThresholdPercent (1..100, 0 = off) raises THIN PROVISIONING SOFT
	// THRESHOLD REACHED when a thin LU's storage crosses that share of its
	// capacity (provisioning.go).
	ThinThresholdPercent uint8

	Vendor   string // default "BLOCKPRT" (8 chars, space padded in INQUIRY)
	Product  string // default "Blockport Disk" (16)
	Revision string // default "0001"
	Serial   string // VPD 0x80; default: the NAA designator in hex
	// NAA is the NAA IEEE Registered Extended (type 6) designator for VPD
	// 0x83. The caller derives it stably across restarts, e.g. with NewNAA.
	NAA [16]byte
	// PRFile is where the LU's persistent reservation state is kept when
	// an initiator sets APTPL (pr.go); "" keeps it in memory only. The
	// caller names it by the NAA designator so it follows the LU's identity.
	PRFile string
	// PRShared, when set, holds the LU's persistent reservation state
	// instead of PRFile: a record that every server serving the medium
	// shares (pr/shared.go; an RBD image's, backstore.Shared).
	PRShared pr.Shared
}

// Defaults for LUConfig's identification strings.
const (
	DefaultVendor   = "BLOCKPRT"
	DefaultProduct  = "Blockport Disk"
	DefaultRevision = "0001"
)

// maxTransferBytes bounds a single data transfer (VPD 0xB0 MAXIMUM TRANSFER
// LENGTH); it also bounds the buffer the fabric allocates for one command.
const maxTransferBytes = 8 << 20

// optimalTransferBytes is reported as the OPTIMAL TRANSFER LENGTH (VPD 0xB0).
const optimalTransferBytes = 1 << 20

// LU is one logical unit: a backstore seen as blocks, its identity, and its
// per-nexus unit attention state. Everything but the UA table and the
// capacity (which only grows, Resize) is immutable after NewLU, so commands
// read it without locks.
type LU struct {
	cfg        LUConfig
	store      backstore.Backstore
	immediate  bool // store is a backstore.Immediate (Command.Immediate)
	blockSize  uint32
	blockShift uint          // log2(blockSize)
	blocks     atomic.Uint64 // capacity in logical blocks; grows with Resize
	resizeMu   sync.Mutex    // serializes Resize
	maxXfer    uint32        // maximum transfer length in blocks (VPD 0xB0)

	stdInquiry []byte           // standard INQUIRY data (SPC-5), prebuilt
	vpd        map[uint8][]byte // VPD pages by page code, prebuilt

	ua        uaTable
	pr        *pr.State // reservations (pr.go)
	prWatched bool      // pr's shared record is watched (Device.AddLU); guarded by the Device's mu

	locks lbaLocker    // LBA range locks (lbalock.go)
	media mediaState   // removable medium and PREVENT ALLOW state (removable.go)
	modes modeState    // MODE SELECT changeable parameters (modeselect.go)
	prov  provisioning // thin provisioning capabilities (provisioning.go)

	copies copyManager   // EXTENDED COPY list identifiers and results (xcopy.go)
	san    sanitizeState // SANITIZE in progress or failed (sanitize.go)

	stats luStats // command counters and latency, atomics (stats.go)
	use   luUse   // commands executing; removal (drain.go)
}

// NewLU validates cfg, fills defaults and builds the LU's fixed responses.
func NewLU(cfg LUConfig) (*LU, error) {
	if cfg.Backstore == nil {
		return nil, errors.New("scsi: LU needs a backstore")
	}
	switch cfg.BlockSize {
	case 0:
		cfg.BlockSize = 512
	case 512, 4096:
	default:
		return nil, fmt.Errorf("scsi: block size %d: must be 512 or 4096", cfg.BlockSize)
	}
	if p := cfg.PhysicalBlockSize; p != 0 && (p < cfg.BlockSize || p&(p-1) != 0 || p/cfg.BlockSize > 1<<15) {
		return nil, fmt.Errorf("scsi: physical block size %d: must be a power of two from the block size %d to 32768 times it", p, cfg.BlockSize)
	}
	if cfg.NAA == ([16]byte{}) {
		return nil, errors.New("scsi: LU needs an NAA designator (see NewNAA)")
	}
	if cfg.NAA[0]>>4 != 6 {
		return nil, fmt.Errorf("scsi: NAA designator starts with NAA %d, want 6 (IEEE Registered Extended)", cfg.NAA[0]>>4)
	}
	if cfg.Vendor == "" {
		cfg.Vendor = DefaultVendor
	}
	if cfg.Product == "" {
		cfg.Product = DefaultProduct
	}
	if cfg.Revision == "" {
		cfg.Revision = DefaultRevision
	}
	if cfg.Serial == "" {
		cfg.Serial = hex.EncodeToString(cfg.NAA[:])
	}
	for _, f := range []struct {
		name, value string
		max         int
	}{{"vendor", cfg.Vendor, 8}, {"product", cfg.Product, 16}, {"revision", cfg.Revision, 4}, {"serial", cfg.Serial, 240}} {
		if len(f.value) > f.max {
			return nil, fmt.Errorf("scsi: %s %q: longer than %d bytes", f.name, f.value, f.max)
		}
		// SPC-5: ASCII data fields hold only 20h..7Eh.
		for i := 0; i < len(f.value); i++ {
			if c := f.value[i]; c < 0x20 || c > 0x7E {
				return nil, fmt.Errorf("scsi: %s %q: only printable ASCII is allowed", f.name, f.value)
			}
		}
	}
	size := cfg.Backstore.Size()
	if size < int64(cfg.BlockSize) {
		return nil, fmt.Errorf("scsi: backstore of %d bytes holds no %d-byte block", size, cfg.BlockSize)
	}
	lu := &LU{
		cfg:        cfg,
		store:      cfg.Backstore,
		blockSize:  cfg.BlockSize,
		blockShift: uint(bits.TrailingZeros32(cfg.BlockSize)),
		maxXfer:    maxTransferBytes / cfg.BlockSize,
	}
	if im, ok := cfg.Backstore.(backstore.Immediate); ok {
		lu.immediate = im.Immediate()
	}
	lu.blocks.Store(uint64(size) / uint64(cfg.BlockSize))
	lu.ua.init()
	var prState *pr.State
	var err error
	if cfg.PRShared != nil {
		prState, err = pr.NewShared(cfg.PRShared)
	} else {
		prState, err = pr.New(cfg.PRFile)
	}
	if err != nil {
		return nil, err
	}
	lu.pr = prState
	lu.modes.init(cfg.WriteCache)
	lu.initProvisioning()
	lu.stdInquiry = lu.buildStandardInquiry()
	lu.vpd = lu.buildVPD()
	return lu, nil
}

// BlockSize is the logical block length in bytes.
func (lu *LU) BlockSize() uint32 { return lu.blockSize }

// Blocks is the capacity in logical blocks.
func (lu *LU) Blocks() uint64 { return lu.blocks.Load() }

// Resize grows the LU to size bytes (0: to whatever its medium now holds,
// a block device that grew) through its backstore (backstore.Resizer).
// When the capacity changed, every I_T nexus gets UNIT ATTENTION /
// CAPACITY DATA HAS CHANGED (SBC-4 4.6). A LU never shrinks: data past the
// new end would vanish under its initiators, so a smaller size is refused
// and changes nothing.
func (lu *LU) Resize(size int64) (changed bool, err error) {
	r, ok := lu.store.(backstore.Resizer)
	if !ok {
		return false, errors.New("scsi: this backstore cannot change size while it serves")
	}
	lu.resizeMu.Lock()
	defer lu.resizeMu.Unlock()
	old := lu.blocks.Load()
	if size != 0 && (size < int64(old<<lu.blockShift)) {
		return false, fmt.Errorf("scsi: size %d bytes is smaller than the LU's %d; a LU does not shrink", size, old<<lu.blockShift)
	}
	if size%int64(lu.blockSize) != 0 {
		return false, fmt.Errorf("scsi: size %d bytes is not a multiple of the block size %d", size, lu.blockSize)
	}
	got, err := r.Resize(size)
	if err != nil {
		return false, err
	}
	// The backstore has grown before the LU admits LBAs beyond the old
	// end, so no command addresses storage that is not there yet.
	blocks := uint64(got) >> lu.blockShift
	if blocks <= old {
		return false, nil
	}
	lu.blocks.Store(blocks)
	lu.ua.establish(sense.CapacityDataChanged, nil)
	return true, nil
}

// ReadOnly reports whether the LU refuses writes (DATA PROTECT).
func (lu *LU) ReadOnly() bool { return lu.cfg.ReadOnly }

// Backstore is the LU's backstore; the caller that created the LU closes it.
func (lu *LU) Backstore() backstore.Backstore { return lu.store }

// naaCompanyID is the 24-bit IEEE COMPANY_ID in the designators NewNAA makes.
// Blockport has no IEEE-registered OUI/CID, so this value has the X (locally
// administered) bit of its first octet set: it can never equal an
// IEEE-assigned OUI, so designators cannot collide with real vendors'.
// Replace it if the project registers a CID.
const naaCompanyID = 0x0A4250

// NewNAA builds an NAA IEEE Registered Extended designator (SPC-5,
// NAA 6h: 4-bit NAA, 24-bit company ID, 36-bit vendor specific identifier,
// 64-bit extension) whose 100 vendor bits are a SHA-256 hash of seed. The
// same seed always gives the same designator, so a caller that keeps the
// seed (e.g. target name + LUN + a per-install random id) keeps the LU's
// identity across restarts.
func NewNAA(seed []byte) [16]byte {
	h := sha256.Sum256(seed)
	var d [16]byte
	d[0] = 0x60 | byte(naaCompanyID>>20&0x0F)
	d[1] = byte(naaCompanyID >> 12 & 0xFF)
	d[2] = byte(naaCompanyID >> 4 & 0xFF)
	d[3] = byte(naaCompanyID&0x0F)<<4 | h[0]&0x0F
	copy(d[4:], h[1:13])
	return d
}
