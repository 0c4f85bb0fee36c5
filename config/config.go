// Package config loads Blockport's TOML configuration into plain, validated
// structs with defaults applied. It is the only package that reads
// configuration files. Every problem found is reported, each as
// "FILE:LINE: key.path: what is wrong", in one *Error.
package config

import (
	_ "embed"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Config is a whole configuration.
type Config struct {
	Server    Server
	Discovery Discovery // [discovery]: authentication of discovery sessions
	Limits    Limits    // [limits]: resource bounds, with defaults
	Targets   []Target
	// ISNS is [isns] (isns.go): registration with an iSNS server; nil
	// without the table, and then there is no iSNS traffic.
	ISNS *ISNS
}

// Server holds the process-wide settings ([server]).
type Server struct {
	Listen    []string // portals, "host:port"; IPv6 as "[::1]:3260"
	StateDir  string   // where persistent state (reservations, ...) lives
	LogLevel  string   // debug, info, warn or error
	LogFormat string   // text or json
	// MetricsListen (metrics_listen) is the host:port of the HTTP listener
	// that serves /metrics, /healthz and /readyz; empty (the default) means
	// no such listener.
	MetricsListen string
	// AdminSocket (admin_socket) is the Unix socket of the admin API that
	// `blockport status` and `blockport reload` use, created mode 0600;
	// empty means "<state_dir>/admin.sock", "off" turns the API off. Use
	// AdminSocketPath.
	AdminSocket string
	// BusyPoll (busy_poll) is how long a connection's reader keeps
	// reading an empty socket before it waits for the next PDU; 0 (the
	// default) waits at once. At most one reader spins at a time. It
	// lowers queue-depth-1 latency at the cost of CPU, for hosts with a
	// core to spare.
	BusyPoll time.Duration
}

// AdminSocketPath is the admin socket's path, or "" when it is off.
func (s Server) AdminSocketPath() string {
	switch s.AdminSocket {
	case AdminSocketOff:
		return ""
	case "":
		return filepath.Join(s.StateDir, DefaultAdminSocket)
	}
	return s.AdminSocket
}

// Target is one iSCSI target ([[target]]).
type Target struct {
	Name              string // iqn., eui. or naa. name, see ValidateName
	Alias             string // TargetAlias (RFC 7143 13.6), may be empty
	AllowAnyInitiator bool   // admit initiators with no ACL entry: they see every LUN, must pass the target's chap
	LUNs              []LUN
	ACLs              []ACL    // [[target.acl]]: initiators allowed in, LUN masking
	CHAP              *CHAP    // chap = {...}: one-way CHAP required of every initiator
	MutualCHAP        *CHAP    // mutual_chap = {...}: the target's own CHAP credentials
	CHAPAlgorithms    []string // chap_algorithms: restricts CHAP_A (MD5, SHA-1, SHA-256, SHA3-256)
	// PortalGroups ([[target.portal_group]], portalgroup.go) place the
	// server's listen addresses in target portal groups with ALUA states;
	// none: every address is in group 1, active/optimized.
	PortalGroups []PortalGroup
}

// LUN is one logical unit of a target ([[target.lun]]).
type LUN struct {
	ID        uint64 // 0..MaxLUN, unique within the target
	Backstore string // BackstoreFile, BackstoreSparse, BackstoreBlock or BackstoreMemory
	Path      string // image or device; absolute, or relative to the process directory when no base dir was given
	Size      int64  // bytes; 0 means the size of the existing file (always 0 for block: the device's size)
	BlockSize uint32 // 512 or 4096; 0 for a block device: the device's logical block size
	// PhysicalBlockSize (physical_block_size) is reported as the physical
	// block size (READ CAPACITY 16 LOGICAL BLOCKS PER PHYSICAL BLOCK
	// EXPONENT); 0 takes the backstore's own (a block device's BLKPBSZGET,
	// else the logical block size).
	PhysicalBlockSize uint32
	DirectIO          bool
	WriteCache        bool
	ReadOnly          bool
	Serial            string // VPD page 0x80 unit serial number; empty means derived
	// ThinThresholdPercent (thin_threshold_percent, 1..100; 0 = off, sparse
	// only) raises the SBC thin provisioning soft threshold unit attention
	// when the image's allocated storage crosses that share of its size.
	ThinThresholdPercent uint8
	// Removable makes the LUN a removable medium (INQUIRY RMB=1): START
	// STOP UNIT with LOEJ ejects and loads it, PREVENT ALLOW MEDIUM REMOVAL
	// locks it in; with the medium ejected, I/O fails with MEDIUM NOT PRESENT.
	Removable bool
	// Encrypt (encrypt) keeps the data enciphered at rest (AES-256-XTS)
	// with a per-LU key in state_dir/keys, so that SANITIZE CRYPTOGRAPHIC
	// ERASE can erase the whole LU at once. File, sparse and block only.
	Encrypt bool
	// Ceph RBD (backstore = "rbd", in binaries built with -tags ceph):
	// the image Image of pool Pool in the cluster CephConf describes
	// (default /etc/ceph/ceph.conf), as client.ClientID (default admin)
	// with the key in Keyring (default: the one ceph.conf names).
	Pool, Image, CephConf, ClientID, Keyring string
	Vendor                                   string // INQUIRY VENDOR IDENTIFICATION, up to 8 printable ASCII bytes; empty means "BLOCKPRT"
	Product                                  string // INQUIRY PRODUCT IDENTIFICATION, up to 16 printable ASCII bytes; empty means "Blockport Disk"
}

// Backstore kinds.
const (
	BackstoreFile   = "file"   // raw image, fully allocated when created
	BackstoreSparse = "sparse" // thin image: allocates on write, UNMAP punches holes
	BackstoreBlock  = "block"  // block device; size and block sizes come from the device
	BackstoreMemory = "memory" // volatile: the data is lost when the server stops
	BackstoreRBD    = "rbd"    // Ceph RBD image; several gateways may serve one (built with -tags ceph)
)

// Limits and defaults.
const (
	// MaxLUN is the largest LUN number: SAM-6 4.7.6 peripheral and flat
	// space addressing reach 16383.
	MaxLUN = 16383
	// MaxSerial is the longest unit serial number accepted. VPD 0x80 has
	// room for more, but initiators commonly keep only 32 bytes.
	MaxSerial = 32
	// MaxAlias bounds TargetAlias: RFC 7143 6.1 caps text values at 255 bytes.
	MaxAlias = 255

	DefaultListen    = "127.0.0.1:3260" // loopback unless asked otherwise: an open target is a disk for anyone
	DefaultStateDir  = "blockport-data"
	DefaultLogLevel  = "info"
	DefaultLogFormat = "text"
	// DefaultAdminSocket is the admin socket's name inside state_dir.
	DefaultAdminSocket = "admin.sock"
	AdminSocketOff     = "off" // admin_socket value that disables the admin API
	// MaxSocketPath bounds a Unix socket path (sun_path is 108 bytes with its NUL).
	MaxSocketPath    = 107
	DefaultBlockSize = 512
	// MaxBusyPoll bounds server.busy_poll: a queue-depth-1 round trip is
	// tens of microseconds, and spinning longer than this only burns the
	// core that the wake-up would have used.
	MaxBusyPoll = time.Millisecond
)

// maxConfigSize bounds what Load reads; a real config is a few kilobytes.
const maxConfigSize = 4 << 20

//go:embed default.toml
var defaultTOML []byte

// DefaultTOML returns the text of the built-in configuration, e.g. for a
// command that writes an example config.
func DefaultTOML() []byte { return append([]byte(nil), defaultTOML...) }

// Default returns the built-in configuration: one target
// iqn.2026-11.io.blockport:lab open to any initiator, whose LUN 0 is a 1 GiB
// sparse image ./blockport-data/lab0.img, served on 127.0.0.1:3260. Relative paths
// in it are relative to the process's working directory. It touches no files.
func Default() *Config {
	c, err := parse("default.toml", defaultTOML, "", false)
	if err != nil {
		// The embedded text is fixed at build time and covered by tests.
		panic("config: built-in default.toml is invalid: " + err.Error())
	}
	return c
}

// Load reads and parses the configuration file at path. Relative paths in it
// are taken relative to the file's directory. A file that cannot be read is
// returned as a wrapped os error; everything wrong inside it as an *Error.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	if len(data) > maxConfigSize {
		return nil, &Error{Problems: []Problem{{File: path, Msg: fmt.Sprintf("file is larger than %d bytes", maxConfigSize)}}}
	}
	baseDir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	return Parse(path, data, baseDir)
}

// Parse parses configuration text. name is the file name used in errors.
// Relative paths (state_dir, lun paths) are joined to baseDir; with an empty
// baseDir they are kept as written. A file LUN without a size must name an
// existing file, which Parse checks.
func Parse(name string, data []byte, baseDir string) (*Config, error) {
	return parse(name, data, baseDir, true)
}

// Validate checks a Config built or changed in code by the same rules Parse
// applies after decoding, including the file checks. It does not apply
// defaults: an unset BlockSize, for example, is an error here.
func (c *Config) Validate() error {
	r := newReporter("", nil)
	validate(c, r, true)
	return r.err()
}

func parse(name string, data []byte, baseDir string, checkFiles bool) (*Config, error) {
	r := newReporter(name, nil)
	doc, ok := decodeTOML(data, r)
	if !ok {
		return nil, r.err()
	}
	r.lines = scanKeyLines(string(data))
	c := decodeConfig(doc, baseDir, r)
	validate(c, r, checkFiles)
	if err := r.err(); err != nil {
		return nil, err
	}
	return c, nil
}
