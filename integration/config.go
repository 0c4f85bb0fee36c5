package integration

import (
	"fmt"
	"strings"
)

// LUN describes one [[target.lun]] table for Config.
type LUN struct {
	LUN        int
	Backstore  string // "file" or "memory"
	Path       string // file backstores; relative to the config file
	Size       string // e.g. "64MiB"
	BlockSize  int    // 512 or 4096; 0 leaves the default
	DirectIO   bool   // file backstores only
	WriteCache bool   // file backstores only
	ReadOnly   bool
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
		fmt.Fprintf(&b, "  size = %q\n", l.Size)
		if l.BlockSize != 0 {
			fmt.Fprintf(&b, "  block_size = %d\n", l.BlockSize)
		}
		if l.Backstore == "file" {
			fmt.Fprintf(&b, "  direct_io = %t\n  write_cache = %t\n", l.DirectIO, l.WriteCache)
		}
		if l.ReadOnly {
			b.WriteString("  read_only = true\n")
		}
	}
	return b.String()
}
