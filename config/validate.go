package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

var (
	backstoreKinds = []string{BackstoreFile, BackstoreSparse, BackstoreBlock, BackstoreMemory, BackstoreRBD}
	logLevels      = []string{"debug", "info", "warn", "error"}
	logFormats     = []string{"text", "json"}
)

// validate checks the meaning of a decoded (or hand-built) Config. Keys are
// indexed paths, so with the reporter's line table every problem gets the
// line of its key. checkFiles enables the checks that stat LUN files.
func validate(c *Config, r *reporter, checkFiles bool) {
	validateServer(&c.Server, r)
	validateAccess(c, r, checkFiles)
	validatePortalGroups(c, r) // portalgroup.go
	validateISNS(c, r)         // isns.go

	targetByName := map[string]string{} // canonical name -> key of its first use
	fileByPath := map[string]string{}   // cleaned LUN path -> key of its first use
	lunBySerial := map[string]string{}  // serial -> key of its first use
	for ti := range c.Targets {
		t := &c.Targets[ti]
		tkey := indexKey("target", ti)
		if err := ValidateName(t.Name); err != nil {
			r.add(tkey+".name", "%v", err)
		} else if first, dup := targetByName[canonicalName(t.Name)]; dup {
			r.add(tkey+".name", "target %q is already defined at %s", t.Name, r.where(first))
		} else {
			targetByName[canonicalName(t.Name)] = tkey + ".name"
		}
		if len(t.Alias) > MaxAlias {
			r.add(tkey+".alias", "is %d bytes; the limit is %d (RFC 7143 6.1)", len(t.Alias), MaxAlias)
		} else if i := strings.IndexFunc(t.Alias, func(c rune) bool { return c < 0x20 || c == 0x7f }); i >= 0 {
			r.add(tkey+".alias", "must not contain control characters (byte %d)", i)
		}

		lunByID := map[uint64]string{}
		for li := range t.LUNs {
			lun := &t.LUNs[li]
			lkey := indexKey(tkey+".lun", li)
			if lun.ID > MaxLUN {
				r.add(lkey+".lun", "must be between 0 and %d, not %d", MaxLUN, lun.ID)
			} else if first, dup := lunByID[lun.ID]; dup {
				r.add(lkey+".lun", "LUN %d is already used in this target at %s", lun.ID, r.where(first))
			} else {
				lunByID[lun.ID] = lkey + ".lun"
			}
			validateLUN(lun, lkey, r, checkFiles)
			if lun.Backstore != BackstoreMemory && lun.Path != "" {
				// Two LUNs on one file would each cache and write it
				// without knowing of the other.
				clean := filepath.Clean(lun.Path)
				if first, dup := fileByPath[clean]; dup {
					r.add(lkey+".path", "file %s is already used by the LUN at %s", lun.Path, r.where(first))
				} else {
					fileByPath[clean] = lkey + ".path"
				}
			}
			if lun.Serial != "" {
				// Multipath takes LUNs with one serial for one device.
				if first, dup := lunBySerial[lun.Serial]; dup {
					r.add(lkey+".serial", "serial %q is already used by the LUN at %s", lun.Serial, r.where(first))
				} else {
					lunBySerial[lun.Serial] = lkey + ".serial"
				}
			}
		}
	}
}

func validateServer(s *Server, r *reporter) {
	if len(s.Listen) == 0 {
		r.add("server.listen", "needs at least one address, such as %q", DefaultListen)
	}
	seen := map[string]int{}
	for i, addr := range s.Listen {
		key := indexKey("server.listen", i)
		if err := checkListen(addr); err != nil {
			r.add(key, "%v", err)
		} else if first, dup := seen[addr]; dup {
			r.add(key, "%q is already listed as server.listen[%d]", addr, first)
		} else {
			seen[addr] = i
		}
	}
	if s.StateDir == "" {
		r.add("server.state_dir", "must not be empty")
	}
	if !slices.Contains(logLevels, s.LogLevel) {
		r.add("server.log_level", "%q is not a log level; use one of %s", s.LogLevel, strings.Join(logLevels, ", "))
	}
	if !slices.Contains(logFormats, s.LogFormat) {
		r.add("server.log_format", "%q is not a log format; use one of %s", s.LogFormat, strings.Join(logFormats, ", "))
	}
	if s.MetricsListen != "" {
		if err := checkListen(s.MetricsListen); err != nil {
			r.add("server.metrics_listen", "%v", err)
		}
	}
	if p := s.AdminSocketPath(); len(p) > MaxSocketPath {
		r.add("server.admin_socket", "%q is %d bytes long; a Unix socket path holds at most %d (set admin_socket to a shorter path, or \"off\")",
			p, len(p), MaxSocketPath)
	}
}

// checkListen accepts "host:port" where host is an IP address, a host name,
// or empty (all addresses), and port is 1..65535. IPv6 needs brackets.
func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) && strings.Contains(ae.Err, "missing port") {
			if _, perr := netip.ParseAddr(addr); perr == nil && strings.Contains(addr, ":") {
				return fmt.Errorf("%q: an IPv6 address needs brackets and a port, as in \"[%s]:3260\"", addr, addr)
			}
			return fmt.Errorf("%q: missing the port, as in %q", addr, addr+":3260")
		}
		if errors.As(err, &ae) && strings.Contains(ae.Err, "too many colons") {
			return fmt.Errorf("%q: an IPv6 address needs brackets, as in \"[::1]:3260\"", addr)
		}
		return fmt.Errorf("%q: not a host:port address: %v", addr, err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return fmt.Errorf("%q: port %q is not a number from 1 to 65535", addr, port)
	}
	if host == "" {
		return nil
	}
	if strings.Contains(host, ":") || strings.Contains(host, "%") {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("%q: %q is not an IPv6 address", addr, host)
		}
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if !isHostName(host) {
		return fmt.Errorf("%q: %q is neither an IP address nor a host name", addr, host)
	}
	return nil
}

// isHostName checks RFC 1123 syntax: dot-separated labels of letters, digits
// and inner hyphens, at most 253 bytes.
func isHostName(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func validateLUN(lun *LUN, key string, r *reporter, checkFiles bool) {
	blockSizeOK := lun.BlockSize == 512 || lun.BlockSize == 4096
	if lun.BlockSize == 0 && lun.Backstore == BackstoreBlock {
		// The device's; checked when it is opened.
	} else if !blockSizeOK {
		r.add(key+".block_size", "must be 512 or 4096, not %d", lun.BlockSize)
	}
	if lun.Size < 0 {
		r.add(key+".size", "must not be negative")
	} else if blockSizeOK && lun.Size%int64(lun.BlockSize) != 0 {
		r.add(key+".size", "%d bytes is not a multiple of block_size %d", lun.Size, lun.BlockSize)
	}
	if lun.Serial != "" {
		if len(lun.Serial) > MaxSerial {
			r.add(key+".serial", "is %d bytes; the limit is %d", len(lun.Serial), MaxSerial)
		} else if i := strings.IndexFunc(lun.Serial, func(c rune) bool { return c < 0x20 || c > 0x7e }); i >= 0 {
			// SPC-5 7.7.13: the PRODUCT SERIAL NUMBER field is ASCII.
			r.add(key+".serial", "must be printable ASCII; byte %d is not", i)
		}
	}

	validateInquiryStrings(lun, key, r)

	// SBC-4: the exponent is 4 bits, so at most 2^15 logical blocks per
	// physical block.
	if p := lun.PhysicalBlockSize; p != 0 && blockSizeOK && (p < lun.BlockSize || p&(p-1) != 0 || p/lun.BlockSize > 1<<15) {
		r.add(key+".physical_block_size", "must be a power of two from block_size (%d) to 32768 times it, not %d", lun.BlockSize, p)
	}
	if lun.Encrypt && lun.Backstore == BackstoreMemory {
		r.add(key+".encrypt", "a memory backstore keeps nothing at rest to encrypt; use file, sparse or block")
	}
	if lun.ThinThresholdPercent > 0 && lun.Backstore != BackstoreSparse {
		r.add(key+".thin_threshold_percent", "only a sparse backstore is thin provisioned; %s allocates up front", lun.Backstore)
	} else if lun.ThinThresholdPercent > 100 {
		r.add(key+".thin_threshold_percent", "must be between 1 and 100, not %d", lun.ThinThresholdPercent)
	}
	switch lun.Backstore {
	case BackstoreFile, BackstoreSparse:
		if lun.Path == "" {
			r.add(key+".path", "missing: a %s backstore needs the path of its image", lun.Backstore)
			return
		}
		if checkFiles {
			checkLUNFile(lun, key, r, blockSizeOK)
		}
	case BackstoreBlock:
		// The device gives the size (BLKGETSIZE64); a configured one could
		// only disagree with it.
		if lun.Size != 0 {
			r.add(key+".size", "not allowed for a block backstore: the size comes from the device")
		}
		if lun.Path == "" {
			r.add(key+".path", "missing: a block backstore needs the path of its device, such as /dev/sdb")
			return
		}
		if checkFiles {
			checkLUNDevice(lun, key, r)
		}
	case BackstoreMemory:
		if lun.Path != "" {
			r.add(key+".path", "not allowed for a memory backstore, which keeps no file")
		}
		if lun.Size == 0 {
			r.add(key+".size", "missing: a memory backstore needs a size, such as \"64MiB\"")
		}
		if lun.DirectIO {
			r.add(key+".direct_io", "not supported by a memory backstore")
		}
	case BackstoreRBD:
		validateRBD(lun, key, r, checkFiles)
	default:
		r.add(key+".backstore", "unknown kind %q; valid kinds: %s", lun.Backstore, strings.Join(backstoreKinds, ", "))
	}
	if lun.Backstore != BackstoreRBD {
		for _, k := range []struct{ name, value string }{{"pool", lun.Pool}, {"image", lun.Image}, {"ceph_conf", lun.CephConf}, {"client_id", lun.ClientID}, {"keyring", lun.Keyring}} {
			if k.value != "" {
				r.add(key+"."+k.name, "only for an rbd backstore")
			}
		}
	}
}

// validateRBD checks the keys of a Ceph RBD LUN.
func validateRBD(lun *LUN, key string, r *reporter, checkFiles bool) {
	if lun.Path != "" {
		r.add(key+".path", "not allowed for an rbd backstore; name the image with pool and image")
	}
	if lun.Pool == "" {
		r.add(key+".pool", "missing: an rbd backstore needs the pool of its image")
	}
	if lun.Image == "" {
		r.add(key+".image", "missing: an rbd backstore needs the name of its image (created when missing and size is set)")
	}
	if lun.DirectIO {
		r.add(key+".direct_io", "not supported by an rbd backstore: librbd has no page cache to bypass (write_cache sets its own cache)")
	}
	if lun.Encrypt {
		r.add(key+".encrypt", "not supported by an rbd backstore; use Ceph's own image encryption")
	}
	if !checkFiles {
		return
	}
	for _, f := range []struct{ name, path string }{{"ceph_conf", lun.CephConf}, {"keyring", lun.Keyring}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			r.add(key+"."+f.name, "%v", err)
		}
	}
}

// checkLUNFile looks at the image of a file LUN: it must not be a directory,
// and without a size in the config the existing file gives it.
func checkLUNFile(lun *LUN, key string, r *reporter, blockSizeOK bool) {
	info, err := os.Stat(lun.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if lun.Size == 0 {
			r.add(key+".size", "missing: %s does not exist, so the size to create it with is needed", lun.Path)
		}
	case err != nil:
		r.add(key+".path", "%v", err)
	case info.IsDir():
		r.add(key+".path", "%s is a directory, not an image file", lun.Path)
	case lun.Size == 0 && info.Mode().IsRegular():
		if info.Size() == 0 {
			r.add(key+".size", "missing: %s is empty, so a size is needed", lun.Path)
		} else if blockSizeOK && info.Size()%int64(lun.BlockSize) != 0 {
			r.add(key+".path", "%s is %d bytes, not a multiple of block_size %d", lun.Path, info.Size(), lun.BlockSize)
		}
	}
}

// checkLUNDevice checks that the path of a block LUN is a block device.
func checkLUNDevice(lun *LUN, key string, r *reporter) {
	info, err := os.Stat(lun.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r.add(key+".path", "%s does not exist; a block backstore serves an existing device", lun.Path)
	case err != nil:
		r.add(key+".path", "%v", err)
	case info.Mode()&fs.ModeDevice == 0 || info.Mode()&fs.ModeCharDevice != 0:
		r.add(key+".path", "%s is not a block device (mode %v); use backstore = \"file\" for an image file", lun.Path, info.Mode())
	}
}

// where names the place of an earlier key for "already used at" messages:
// its line when known, else its key.
func (r *reporter) where(key string) string {
	if line := r.lineOf(key); line > 0 {
		return fmt.Sprintf("line %d", line)
	}
	return key
}
