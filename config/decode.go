package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// The keys each table accepts; anything else is an unknown key.
var (
	rootKeys   = []string{"server", "discovery", "limits", "target", "isns"}
	serverKeys = []string{"listen", "state_dir", "log_level", "log_format", "metrics_listen", "admin_socket", "busy_poll"}
	targetKeys = []string{"name", "alias", "allow_any_initiator", "lun", "acl", "chap", "mutual_chap", "chap_algorithms", "portal_group"}
	lunKeys    = []string{"lun", "backstore", "path", "size", "block_size", "direct_io", "write_cache", "read_only", "serial", "removable", "vendor", "product", "thin_threshold_percent", "physical_block_size", "encrypt", "pool", "image", "ceph_conf", "client_id", "keyring"}
)

// decodeTOML parses the text into generic maps. Decoding into maps cannot
// fail on types, so every type problem is found later, key by key, instead
// of the decoder stopping at the first one.
func decodeTOML(data []byte, r *reporter) (map[string]any, bool) {
	var doc map[string]any
	_, err := toml.Decode(string(data), &doc)
	if err == nil {
		return doc, true
	}
	var pe toml.ParseError
	if errors.As(err, &pe) {
		r.problems = append(r.problems, Problem{File: r.file, Line: pe.Position.Line, Key: pe.LastKey, Msg: pe.Message})
	} else {
		r.problems = append(r.problems, Problem{File: r.file, Msg: err.Error()})
	}
	return nil, false
}

// table reads typed values out of one decoded TOML table, reporting values
// of the wrong type and, in checkUnknown, keys that are not in known.
type table struct {
	r     *reporter
	path  string // indexed key path of the table; "" for the root
	m     map[string]any
	known []string
}

func (t table) key(k string) string { return joinKey(t.path, k) }

func (t table) has(k string) bool {
	_, ok := t.m[k]
	return ok
}

func (t table) wrongType(k, want string) {
	t.r.add(t.key(k), "must be %s, not %s", want, tomlType(t.m[k]))
}

// str stores the string at k in dst; it reports whether k held a string.
func (t table) str(k string, dst *string) bool {
	v, ok := t.m[k]
	if !ok {
		return false
	}
	s, ok := v.(string)
	if !ok {
		t.wrongType(k, "a string")
		return false
	}
	*dst = s
	return true
}

func (t table) integer(k string, dst *int64) bool {
	v, ok := t.m[k]
	if !ok {
		return false
	}
	n, ok := v.(int64)
	if !ok {
		t.wrongType(k, "an integer")
		return false
	}
	*dst = n
	return true
}

func (t table) boolean(k string, dst *bool) bool {
	v, ok := t.m[k]
	if !ok {
		return false
	}
	b, ok := v.(bool)
	if !ok {
		t.wrongType(k, "true or false")
		return false
	}
	*dst = b
	return true
}

func (t table) stringList(k string, dst *[]string) bool {
	v, ok := t.m[k]
	if !ok {
		return false
	}
	list, ok := v.([]any)
	if !ok {
		t.wrongType(k, "an array of strings")
		return false
	}
	out := make([]string, 0, len(list))
	good := true
	for i, e := range list {
		s, ok := e.(string)
		if !ok {
			t.r.add(indexKey(t.key(k), i), "must be a string, not %s", tomlType(e))
			good = false
			continue
		}
		out = append(out, s)
	}
	if good {
		*dst = out
	}
	return good
}

// sub returns the table at k, if it is one.
func (t table) sub(k string, known []string) (table, bool) {
	v, ok := t.m[k]
	if !ok {
		return table{}, false
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.wrongType(k, "a table")
		return table{}, false
	}
	return table{r: t.r, path: t.key(k), m: m, known: known}, true
}

// tables returns the array of tables at k ([[k]] sections, or an inline
// array of inline tables).
func (t table) tables(k string, known []string) []table {
	v, ok := t.m[k]
	if !ok {
		return nil
	}
	var maps []map[string]any
	switch v := v.(type) {
	case []map[string]any:
		maps = v
	case []any:
		for i, e := range v {
			m, ok := e.(map[string]any)
			if !ok {
				t.r.add(indexKey(t.key(k), i), "must be a table, not %s", tomlType(e))
				continue
			}
			maps = append(maps, m)
		}
	case map[string]any:
		t.r.add(t.key(k), "must be an array of tables: write [[%s]], not [%s]", t.key(k), t.key(k))
		return nil
	default:
		t.wrongType(k, "an array of tables")
		return nil
	}
	out := make([]table, len(maps))
	for i, m := range maps {
		out[i] = table{r: t.r, path: indexKey(t.key(k), i), m: m, known: known}
	}
	return out
}

// checkUnknown reports every key of the table that is not in t.known; a
// misspelt key would otherwise silently fall back to its default.
func (t table) checkUnknown() {
	var unknown []string
	for k := range t.m {
		if !slices.Contains(t.known, k) {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		where := "here"
		if t.path != "" {
			where = "in [" + stripIndexes(t.path) + "]"
		}
		t.r.add(t.key(k), "unknown key; valid keys %s: %s", where, strings.Join(t.known, ", "))
	}
}

func decodeConfig(doc map[string]any, baseDir string, r *reporter) *Config {
	root := table{r: r, m: doc, known: rootKeys}
	root.checkUnknown()
	c := &Config{Server: Server{
		Listen:    []string{DefaultListen},
		StateDir:  DefaultStateDir,
		LogLevel:  DefaultLogLevel,
		LogFormat: DefaultLogFormat,
	}}
	if baseDir == "" {
		c.Server.StateDir = "./" + DefaultStateDir
	}
	adminSocket, adminSet := "", false
	if server, ok := root.sub("server", serverKeys); ok {
		server.checkUnknown()
		server.stringList("listen", &c.Server.Listen)
		server.str("state_dir", &c.Server.StateDir)
		server.str("log_level", &c.Server.LogLevel)
		server.str("log_format", &c.Server.LogFormat)
		server.str("metrics_listen", &c.Server.MetricsListen)
		adminSet = server.str("admin_socket", &adminSocket)
		server.shortDuration("busy_poll", MaxBusyPoll, &c.Server.BusyPoll)
	}
	c.Server.StateDir = resolvePath(baseDir, c.Server.StateDir)
	// admin_socket: "" (unset) is the default inside state_dir, "off" turns
	// the admin API off (see Server.AdminSocketPath).
	if adminSet {
		c.Server.AdminSocket = adminSocket
		if adminSocket != "" && adminSocket != AdminSocketOff {
			c.Server.AdminSocket = resolvePath(baseDir, adminSocket)
		}
	}
	decodeAccess(root, c, baseDir)
	decodeISNS(root, c) // isns.go
	for _, tt := range root.tables("target", targetKeys) {
		c.Targets = append(c.Targets, decodeTarget(tt, baseDir))
	}
	return c
}

func decodeTarget(t table, baseDir string) Target {
	t.checkUnknown()
	var target Target
	if !t.str("name", &target.Name) && !t.has("name") {
		t.r.add(t.key("name"), "missing: every target needs an iSCSI name such as iqn.2026-11.com.example:disk1")
	}
	t.str("alias", &target.Alias)
	t.boolean("allow_any_initiator", &target.AllowAnyInitiator)
	for _, lt := range t.tables("lun", lunKeys) {
		target.LUNs = append(target.LUNs, decodeLUN(lt, baseDir))
	}
	decodeTargetAccess(t, &target, baseDir)
	decodePortalGroups(t, &target) // portalgroup.go
	return target
}

func decodeLUN(t table, baseDir string) LUN {
	t.checkUnknown()
	lun := LUN{BlockSize: DefaultBlockSize}
	var id int64
	switch {
	case t.integer("lun", &id):
		if id < 0 {
			t.r.add(t.key("lun"), "must be between 0 and %d, not %d", MaxLUN, id)
		} else {
			lun.ID = uint64(id)
		}
	case !t.has("lun"):
		t.r.add(t.key("lun"), "missing: every LUN needs a number (lun = 0 .. %d)", MaxLUN)
	}
	if !t.str("backstore", &lun.Backstore) && !t.has("backstore") {
		t.r.add(t.key("backstore"), "missing: choose one of %s", strings.Join(backstoreKinds, ", "))
	}
	if t.str("path", &lun.Path) {
		lun.Path = resolvePath(baseDir, lun.Path)
	}
	if t.has("size") {
		switch v := t.m["size"].(type) {
		case string:
			n, err := ParseSize(v)
			if err != nil {
				t.r.add(t.key("size"), "%v", err)
			} else {
				lun.Size = n
			}
		case int64:
			if v < 0 {
				t.r.add(t.key("size"), "must not be negative")
			} else {
				lun.Size = v
			}
		default:
			t.wrongType("size", `a size such as "1GiB" or a number of bytes`)
		}
		if lun.Size == 0 && !t.r.reported[t.key("size")] {
			t.r.add(t.key("size"), "must be greater than 0 (leave it out to use the size of the existing file)")
		}
	}
	var blockSize int64
	if t.integer("block_size", &blockSize) {
		if blockSize <= 0 || blockSize > 1<<31 {
			t.r.add(t.key("block_size"), "must be 512 or 4096, not %d", blockSize)
		} else {
			lun.BlockSize = uint32(blockSize)
		}
	}
	var physical int64
	if t.integer("physical_block_size", &physical) {
		if physical <= 0 || physical > 1<<31 {
			t.r.add(t.key("physical_block_size"), "must be a power of two from block_size to 32768 times it, not %d", physical)
		} else {
			lun.PhysicalBlockSize = uint32(physical)
		}
	}
	if !t.has("block_size") && lun.Backstore == BackstoreBlock {
		// A block device's own logical block size (BLKSSZGET), so a 4Kn
		// device needs no setting.
		lun.BlockSize = 0
	}
	// O_DIRECT keeps the page cache out of the data path; files and devices
	// have one, memory does not.
	lun.DirectIO = lun.Backstore == BackstoreFile || lun.Backstore == BackstoreSparse || lun.Backstore == BackstoreBlock
	var threshold int64
	if t.integer("thin_threshold_percent", &threshold) {
		if threshold < 1 || threshold > 100 {
			t.r.add(t.key("thin_threshold_percent"), "must be between 1 and 100, not %d", threshold)
		} else {
			lun.ThinThresholdPercent = uint8(threshold)
		}
	}
	t.boolean("direct_io", &lun.DirectIO)
	t.boolean("write_cache", &lun.WriteCache)
	t.boolean("read_only", &lun.ReadOnly)
	t.str("serial", &lun.Serial)
	t.boolean("removable", &lun.Removable)
	t.boolean("encrypt", &lun.Encrypt)
	t.str("vendor", &lun.Vendor)
	t.str("product", &lun.Product)
	t.str("pool", &lun.Pool)
	t.str("image", &lun.Image)
	if t.str("ceph_conf", &lun.CephConf) {
		lun.CephConf = resolvePath(baseDir, lun.CephConf)
	}
	t.str("client_id", &lun.ClientID)
	if t.str("keyring", &lun.Keyring) {
		lun.Keyring = resolvePath(baseDir, lun.Keyring)
	}
	return lun
}

// resolvePath makes p relative to baseDir; with no baseDir it is kept as
// written.
func resolvePath(baseDir, p string) string {
	if p == "" || baseDir == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(baseDir, p)
}

// tomlType names the TOML type of a decoded value, for error messages.
func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date-time"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("%T", v)
}

// stripIndexes turns "target[0].lun[1]" into "target.lun", the way the
// table is written in a section header.
func stripIndexes(path string) string {
	var b strings.Builder
	skipping := false
	for i := 0; i < len(path); i++ {
		switch c := path[i]; {
		case c == '[':
			skipping = true
		case c == ']':
			skipping = false
		case !skipping:
			b.WriteByte(c)
		}
	}
	return b.String()
}
