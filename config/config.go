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
)

// Config is a whole configuration.
type Config struct {
	Server  Server
	Targets []Target
}

// Server holds the process-wide settings ([server]).
type Server struct {
	Listen    []string // portals, "host:port"; IPv6 as "[::1]:3260"
	StateDir  string   // where persistent state (reservations, ...) lives
	LogLevel  string   // debug, info, warn or error
	LogFormat string   // text or json
}

// Target is one iSCSI target ([[target]]).
type Target struct {
	Name              string // iqn., eui. or naa. name, see ValidateName
	Alias             string // TargetAlias (RFC 7143 13.6), may be empty
	AllowAnyInitiator bool
	LUNs              []LUN
}

// LUN is one logical unit of a target ([[target.lun]]).
type LUN struct {
	ID         uint64 // 0..MaxLUN, unique within the target
	Backstore  string // BackstoreFile or BackstoreMemory
	Path       string // file backstore only; absolute, or relative to the process directory when no base dir was given
	Size       int64  // bytes; 0 means the size of the existing file
	BlockSize  uint32 // 512 or 4096
	DirectIO   bool
	WriteCache bool
	ReadOnly   bool
	Serial     string // VPD page 0x80 unit serial number; empty means derived
}

// Backstore kinds.
const (
	BackstoreFile   = "file"
	BackstoreMemory = "memory"
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
	DefaultBlockSize = 512
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
// image ./blockport-data/lab0.img, served on 127.0.0.1:3260. Relative paths
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
