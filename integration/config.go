package integration

import (
	"fmt"
	"strings"
)

// LUN describes one [[target.lun]] table for Config.
type LUN struct {
	LUN       int
	Backstore string // "file", "sparse", "block" or "memory"
	Path      string // file backstores; relative to the config file
	Size      string // e.g. "64MiB"
	BlockSize int    // 512 or 4096; 0 leaves the default
	// PhysicalBlockSize sets physical_block_size; 0 omits it.
	PhysicalBlockSize int
	DirectIO          bool // not for memory
	WriteCache        bool // not for memory
	ReadOnly          bool
	Removable         bool // removable medium (START STOP UNIT load/eject)
	Encrypt           bool // data enciphered at rest (CRYPTOGRAPHIC ERASE)
	// ThinThresholdPercent sets thin_threshold_percent (sparse only); 0 omits it.
	ThinThresholdPercent int
	// Pool, Image and CephConf name an rbd backstore's image.
	Pool, Image, CephConf string
}

// Config renders a one-target config that lets any initiator in, with the
// state directory inside the server's working directory.
func Config(iqn string, luns ...LUN) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[server]\nlisten = [\"127.0.0.1:3260\"] # tests override it with --listen\nstate_dir = \"{{DIR}}/state\"\n\n")
	fmt.Fprintf(&b, "[[target]]\nname = %q\nalias = \"integration\"\nallow_any_initiator = true\n", iqn)
	for _, l := range luns {
		fmt.Fprintf(&b, "\n  [[target.lun]]\n  lun = %d\n  backstore = %q\n", l.LUN, l.Backstore)
		if l.Path != "" {
			fmt.Fprintf(&b, "  path = %q\n", l.Path)
		}
		if l.Size != "" { // "": the size of the existing image or device
			fmt.Fprintf(&b, "  size = %q\n", l.Size)
		}
		if l.BlockSize != 0 {
			fmt.Fprintf(&b, "  block_size = %d\n", l.BlockSize)
		}
		if l.Backstore == "rbd" {
			fmt.Fprintf(&b, "  pool = %q\n  image = %q\n  ceph_conf = %q\n  write_cache = %t\n", l.Pool, l.Image, l.CephConf, l.WriteCache)
		} else if l.Backstore != "memory" { // file, sparse, block
			fmt.Fprintf(&b, "  direct_io = %t\n  write_cache = %t\n", l.DirectIO, l.WriteCache)
		}
		if l.PhysicalBlockSize != 0 {
			fmt.Fprintf(&b, "  physical_block_size = %d\n", l.PhysicalBlockSize)
		}
		if l.ThinThresholdPercent != 0 {
			fmt.Fprintf(&b, "  thin_threshold_percent = %d\n", l.ThinThresholdPercent)
		}
		if l.ReadOnly {
			b.WriteString("  read_only = true\n")
		}
		if l.Removable {
			b.WriteString("  removable = true\n")
		}
		if l.Encrypt {
			b.WriteString("  encrypt = true\n")
		}
	}
	return b.String()
}
