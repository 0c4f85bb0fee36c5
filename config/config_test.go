package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// want is one expected problem: its line, its key, and a part of its message.
type want struct {
	line int
	key  string
	msg  string
}

// problemsOf parses text and returns its problems; it fails the test when
// the error is not an *Error or a problem is not named after the file.
func problemsOf(t *testing.T, text, baseDir string) []Problem {
	t.Helper()
	c, err := Parse("test.toml", []byte(text), baseDir)
	if err == nil {
		if c == nil {
			t.Fatal("Parse returned neither config nor error")
		}
		return nil
	}
	if c != nil {
		t.Errorf("Parse returned a config along with error %v", err)
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %T %v is not a *config.Error", err, err)
	}
	for _, p := range ce.Problems {
		if p.File != "test.toml" {
			t.Errorf("problem %v names file %q", p, p.File)
		}
	}
	return ce.Problems
}

func checkProblems(t *testing.T, got []Problem, wants []want) {
	t.Helper()
	if len(got) != len(wants) {
		t.Errorf("got %d problems, want %d:\n%s", len(got), len(wants), (&Error{Problems: got}).Error())
	}
	for i := 0; i < len(got) && i < len(wants); i++ {
		g, w := got[i], wants[i]
		if g.Line != w.line || g.Key != w.key || !strings.Contains(g.Msg, w.msg) {
			t.Errorf("problem %d = %d %q %q; want %d %q containing %q", i, g.Line, g.Key, g.Msg, w.line, w.key, w.msg)
		}
	}
}

func TestParseProblems(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "odd.img"), make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "empty.img"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		text  string
		wants []want
	}{
		{
			name:  "syntax error",
			text:  "[server]\nlisten = [\"127.0.0.1:3260\"\nlog_level = \"info\"\n",
			wants: []want{{3, "server.listen", "expected"}},
		},
		{
			name:  "duplicate key",
			text:  "[server]\nlog_level = \"info\"\nlog_level = \"debug\"\n",
			wants: []want{{3, "server.log_level", "already been defined"}},
		},
		{
			name: "unknown keys everywhere",
			text: `verbose = true
[server]
listen = ["127.0.0.1:3260"]
port = 3260
[[target]]
name = "iqn.2026-11.io.blockport:a"
acls = []
  [[target.lun]]
  lun = 0
  backstore = "memory"
  size = "1MiB"
  sise = "2MiB"
`,
			wants: []want{
				{1, "verbose", "unknown key"},
				{4, "server.port", "valid keys in [server]: listen"},
				{7, "target[0].acls", "unknown key"},
				{12, "target[0].lun[0].sise", "valid keys in [target.lun]"},
			},
		},
		{
			name: "bad types",
			text: `[server]
listen = "127.0.0.1:3260"
log_level = 3
[[target]]
name = 7
allow_any_initiator = "yes"
  [[target.lun]]
  lun = "0"
  backstore = "memory"
  size = 1.5
  block_size = "512"
  read_only = 1
  serial = false
`,
			wants: []want{
				{2, "server.listen", "must be an array of strings, not a string"},
				{3, "server.log_level", "must be a string, not an integer"},
				{5, "target[0].name", "must be a string, not an integer"},
				{6, "target[0].allow_any_initiator", "must be true or false, not a string"},
				{8, "target[0].lun[0].lun", "must be an integer, not a string"},
				{10, "target[0].lun[0].size", "not a float"},
				{11, "target[0].lun[0].block_size", "must be an integer"},
				{12, "target[0].lun[0].read_only", "must be true or false"},
				{13, "target[0].lun[0].serial", "must be a string, not a boolean"},
			},
		},
		{
			name: "listen element types and addresses",
			text: `[server]
listen = [
  "127.0.0.1:3260",
  3260,
  "::1:3260",
  "[::1]:3260",
  "[::1]",
  "127.0.0.1",
  "127.0.0.1:70000",
  "host_name:3260",
  "[fe80::1%eth0]:3260",
  "storage.example.com:3260",
  ":3260",
]
`,
			wants: []want{
				{4, "server.listen[1]", "must be a string, not an integer"},
			},
		},
		{
			name: "listen addresses",
			text: `[server]
listen = [
  "127.0.0.1:3260",
  "::1:3260",
  "[::1]:3260",
  "127.0.0.1",
  "127.0.0.1:70000",
  "host_name:3260",
  "[fe80::1%eth0]:3260",
  "storage.example.com:3260",
  ":3260",
  "127.0.0.1:3260",
  "[zz::1]:3260",
]
`,
			wants: []want{
				{4, "server.listen[1]", "needs brackets"},
				{6, "server.listen[3]", "missing the port"},
				{7, "server.listen[4]", "port \"70000\""},
				{8, "server.listen[5]", "neither an IP address nor a host name"},
				{12, "server.listen[9]", "already listed as server.listen[0]"},
				{13, "server.listen[10]", "not an IPv6 address"},
			},
		},
		{
			name:  "empty listen",
			text:  "[server]\nlisten = []\n",
			wants: []want{{2, "server.listen", "at least one address"}},
		},
		{
			name: "log level and format, state dir",
			text: `[server]
log_level = "verbose"
log_format = "xml"
state_dir = ""
`,
			wants: []want{
				{2, "server.log_level", "use one of debug, info, warn, error"},
				{3, "server.log_format", "use one of text, json"},
				{4, "server.state_dir", "must not be empty"},
			},
		},
		{
			name: "target names",
			text: `[[target]]
name = "iqn.2026-11.io.blockport:a"
[[target]]
name = "iqn.2026-11.io.blockport:a"
[[target]]
name = "iqn.2026-13.io.blockport:a"
[[target]]
name = "eui.02004567a425678d"
[[target]]
name = "eui.02004567A425678D"
[[target]]
name = "eui.1234"
[[target]]
alias = "nameless"
[[target]]
name = "IQN.2026-11.io.blockport:a"
`,
			wants: []want{
				{4, "target[1].name", "already defined at line 2"},
				{6, "target[2].name", "month 13"},
				{10, "target[4].name", "already defined at line 8"},
				{12, "target[5].name", "needs 16 hex digits"},
				{13, "target[6].name", "missing"},
				{16, "target[7].name", "must be lower case \"iqn.\""},
			},
		},
		{
			name: "target as plain table",
			text: "[target]\nname = \"iqn.2026-11.io.blockport:a\"\n",
			wants: []want{
				{1, "target", "write [[target]], not [target]"},
			},
		},
		{
			name: "alias",
			text: "[[target]]\nname = \"iqn.2026-11.io.blockport:a\"\nalias = \"a\\tb\"\n" +
				"[[target]]\nname = \"iqn.2026-11.io.blockport:b\"\nalias = \"" + strings.Repeat("x", 256) + "\"\n",
			wants: []want{
				{3, "target[0].alias", "control characters"},
				{6, "target[1].alias", "256 bytes"},
			},
		},
		{
			name: "lun numbers",
			text: `[[target]]
name = "iqn.2026-11.io.blockport:a"
  [[target.lun]]
  lun = 3
  backstore = "memory"
  size = "1MiB"
  [[target.lun]]
  lun = 3
  backstore = "memory"
  size = "1MiB"
  [[target.lun]]
  lun = 16384
  backstore = "memory"
  size = "1MiB"
  [[target.lun]]
  lun = -1
  backstore = "memory"
  size = "1MiB"
  [[target.lun]]
  backstore = "memory"
  size = "1MiB"
[[target]]
name = "iqn.2026-11.io.blockport:b"
  [[target.lun]]
  lun = 3
  backstore = "memory"
  size = "1MiB"
`,
			wants: []want{
				{8, "target[0].lun[1].lun", "LUN 3 is already used in this target at line 4"},
				{12, "target[0].lun[2].lun", "between 0 and 16383, not 16384"},
				{16, "target[0].lun[3].lun", "not -1"},
				{19, "target[0].lun[4].lun", "missing"},
			},
		},
		{
			name: "block and sparse backstores",
			text: `[[target]]
name = "iqn.2026-11.io.blockport:a"
  [[target.lun]]
  lun = 0
  backstore = "block"
  path = "/dev/null"
  [[target.lun]]
  lun = 1
  backstore = "block"
  path = "/dev/blockport-no-such-device"
  size = "1GiB"
  [[target.lun]]
  lun = 2
  backstore = "file"
  path = "a.img"
  size = "1MiB"
  thin_threshold_percent = 80
  [[target.lun]]
  lun = 3
  backstore = "sparse"
  path = "b.img"
  size = "1MiB"
  thin_threshold_percent = 101
  [[target.lun]]
  lun = 4
  backstore = "sparse"
  size = "1MiB"
  [[target.lun]]
  lun = 5
  backstore = "block"
  [[target.lun]]
  lun = 6
  backstore = "memory"
  size = "1MiB"
  physical_block_size = 1536
  [[target.lun]]
  lun = 7
  backstore = "memory"
  size = "1MiB"
  block_size = 4096
  physical_block_size = 512
  [[target.lun]]
  lun = 8
  backstore = "memory"
  size = "1MiB"
  physical_block_size = 4096
  [[target.lun]]
  lun = 9
  backstore = "memory"
  size = "1MiB"
  encrypt = true
`,
			wants: []want{
				{6, "target[0].lun[0].path", "/dev/null is not a block device"},
				{10, "target[0].lun[1].path", "does not exist"},
				{11, "target[0].lun[1].size", "not allowed for a block backstore"},
				{17, "target[0].lun[2].thin_threshold_percent", "only a sparse backstore"},
				{23, "target[0].lun[3].thin_threshold_percent", "between 1 and 100"},
				{24, "target[0].lun[4].path", "missing: a sparse backstore needs"},
				{28, "target[0].lun[5].path", "missing: a block backstore needs"},
				{35, "target[0].lun[6].physical_block_size", "power of two from block_size (512)"},
				{41, "target[0].lun[7].physical_block_size", "not 512"},
				{51, "target[0].lun[9].encrypt", "memory backstore keeps nothing at rest"},
			},
		},
		{
			name: "rbd backstores",
			text: `[[target]]
name = "iqn.2026-11.io.blockport:a"
  [[target.lun]]
  lun = 0
  backstore = "rbd"
  path = "/dev/rbd0"
  [[target.lun]]
  lun = 1
  backstore = "rbd"
  pool = "rbd"
  image = "db"
  direct_io = true
  encrypt = true
  ceph_conf = "/nonexistent/ceph.conf"
  [[target.lun]]
  lun = 2
  backstore = "file"
  path = "a.img"
  size = "1MiB"
  pool = "rbd"
  keyring = "k"
  [[target.lun]]
  lun = 3
  backstore = "rbd"
  pool = "rbd"
  image = "quorum"
  size = "1GiB"
  client_id = "blockport"
`,
			wants: []want{
				{3, "target[0].lun[0].pool", "missing: an rbd backstore needs the pool"},
				{3, "target[0].lun[0].image", "missing: an rbd backstore needs the name"},
				{6, "target[0].lun[0].path", "not allowed for an rbd backstore"},
				{12, "target[0].lun[1].direct_io", "not supported by an rbd backstore"},
				{13, "target[0].lun[1].encrypt", "Ceph's own image encryption"},
				{14, "target[0].lun[1].ceph_conf", "no such file"},
				{20, "target[0].lun[2].pool", "only for an rbd backstore"},
				{21, "target[0].lun[2].keyring", "only for an rbd backstore"},
			},
		},
		{
			name: "backstore kinds and paths",
			text: `[[target]]
name = "iqn.2026-11.io.blockport:a"
  [[target.lun]]
  lun = 0
  backstore = "tape"
  path = "/dev/st0"
  [[target.lun]]
  lun = 1
  path = "x.img"
  size = "1MiB"
  [[target.lun]]
  lun = 2
  backstore = "file"
  size = "1MiB"
  [[target.lun]]
  lun = 3
  backstore = "memory"
  path = "mem.img"
  size = "1MiB"
  direct_io = true
  [[target.lun]]
  lun = 4
  backstore = "memory"
`,
			wants: []want{
				{5, "target[0].lun[0].backstore", `unknown kind "tape"; valid kinds: file, sparse, block, memory`},
				{7, "target[0].lun[1].backstore", "missing: choose one of file, sparse, block, memory"},
				{11, "target[0].lun[2].path", "missing"},
				{18, "target[0].lun[3].path", "not allowed for a memory backstore"},
				{20, "target[0].lun[3].direct_io", "not supported"},
				{21, "target[0].lun[4].size", "memory backstore needs a size"},
			},
		},
		{
			name: "sizes and block sizes",
			text: `[[target]]
name = "iqn.2026-11.io.blockport:a"
  [[target.lun]]
  lun = 0
  backstore = "memory"
  size = "1 gallon"
  [[target.lun]]
  lun = 1
  backstore = "memory"
  size = "1000"
  [[target.lun]]
  lun = 2
  backstore = "memory"
  size = "6KiB"
  block_size = 4096
  [[target.lun]]
  lun = 3
  backstore = "memory"
  size = "1MiB"
  block_size = 1024
  [[target.lun]]
  lun = 4
  backstore = "memory"
  size = 0
  [[target.lun]]
  lun = 5
  backstore = "memory"
  size = -512
  [[target.lun]]
  lun = 6
  backstore = "memory"
  size = 1048576
  block_size = 4096
`,
			wants: []want{
				{6, "target[0].lun[0].size", `unknown unit "gallon"`},
				{10, "target[0].lun[1].size", "1000 bytes is not a multiple of block_size 512"},
				{14, "target[0].lun[2].size", "6144 bytes is not a multiple of block_size 4096"},
				{20, "target[0].lun[3].block_size", "must be 512 or 4096, not 1024"},
				{24, "target[0].lun[4].size", "greater than 0"},
				{28, "target[0].lun[5].size", "must not be negative"},
			},
		},
		{
			name: "files on disk",
			text: `[[target]]
name = "iqn.2026-11.io.blockport:a"
  [[target.lun]]
  lun = 0
  backstore = "file"
  path = "missing.img"
  [[target.lun]]
  lun = 1
  backstore = "file"
  path = "odd.img"
  [[target.lun]]
  lun = 2
  backstore = "file"
  path = "empty.img"
  [[target.lun]]
  lun = 3
  backstore = "file"
  path = "adir"
  size = "1MiB"
  [[target.lun]]
  lun = 4
  backstore = "file"
  path = "new.img"
  size = "1MiB"
[[target]]
name = "iqn.2026-11.io.blockport:b"
  [[target.lun]]
  lun = 0
  backstore = "file"
  path = "./sub/../new.img"
  size = "1MiB"
`,
			wants: []want{
				{3, "target[0].lun[0].size", "missing.img does not exist"},
				{10, "target[0].lun[1].path", "1000 bytes, not a multiple of block_size 512"},
				{11, "target[0].lun[2].size", "empty.img is empty"},
				{18, "target[0].lun[3].path", "is a directory"},
				{30, "target[1].lun[0].path", "already used by the LUN at line 23"},
			},
		},
		{
			name: "serials",
			text: `[[target]]
name = "iqn.2026-11.io.blockport:a"
  [[target.lun]]
  lun = 0
  backstore = "memory"
  size = "1MiB"
  serial = "abc"
  [[target.lun]]
  lun = 1
  backstore = "memory"
  size = "1MiB"
  serial = "abc"
  [[target.lun]]
  lun = 2
  backstore = "memory"
  size = "1MiB"
  serial = "` + strings.Repeat("s", 33) + `"
  [[target.lun]]
  lun = 3
  backstore = "memory"
  size = "1MiB"
  serial = "caf\u00e9"
`,
			wants: []want{
				{12, "target[0].lun[1].serial", "already used by the LUN at line 7"},
				{17, "target[0].lun[2].serial", "33 bytes; the limit is 32"},
				{22, "target[0].lun[3].serial", "printable ASCII; byte 3"},
			},
		},
		{
			name: "inline tables and dotted keys keep their lines",
			text: `server.log_level = "chatty"
target = [
  { name = "iqn.2026-11.io.blockport:a", lun = [
      { lun = 0, backstore = "memory", size = "1MiB" },
      { lun = 0, backstore = "memory", size = "1MiB", colour = "red" },
  ] },
  { name = "bogus" },
  "string",
]
`,
			wants: []want{
				{1, "server.log_level", `"chatty" is not a log level`},
				{5, "target[0].lun[1].colour", "unknown key"},
				{5, "target[0].lun[1].lun", "already used"},
				{7, "target[1].name", "must start with"},
				{8, "target[2]", "must be a table, not a string"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkProblems(t, problemsOf(t, tc.text, dir), tc.wants)
		})
	}
}

func TestErrorFormat(t *testing.T) {
	_, err := Parse("/etc/blockport.toml", []byte("[server]\nlog_level = \"loud\"\nlog_format = \"xml\"\n"), "")
	if err == nil {
		t.Fatal("no error")
	}
	want := `/etc/blockport.toml:2: server.log_level: "loud" is not a log level; use one of debug, info, warn, error` + "\n" +
		`/etc/blockport.toml:3: server.log_format: "xml" is not a log format; use one of text, json`
	if err.Error() != want {
		t.Errorf("got\n%s\nwant\n%s", err, want)
	}
	for _, tc := range []struct {
		p    Problem
		want string
	}{
		{Problem{File: "f", Line: 3, Key: "k", Msg: "m"}, "f:3: k: m"},
		{Problem{File: "f", Key: "k", Msg: "m"}, "f: k: m"},
		{Problem{Line: 3, Msg: "m"}, "line 3: m"},
		{Problem{Key: "k", Msg: "m"}, "k: m"},
	} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.p, got, tc.want)
		}
	}
}

func TestDefaults(t *testing.T) {
	dir := t.TempDir()
	c, err := Parse("t.toml", []byte(`
[[target]]
name = "iqn.2026-11.io.blockport:a"
  [[target.lun]]
  lun = 0
  backstore = "file"
  path = "images/a.img"
  size = "1GiB"
  [[target.lun]]
  lun = 1
  backstore = "memory"
  size = "64MiB"
  [[target.lun]]
  lun = 2
  backstore = "file"
  path = "/abs/b.img"
  size = "4GiB"
  block_size = 4096
  direct_io = false
  write_cache = true
  read_only = true
  serial = "SER-2"
`), dir)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Server: Server{
			Listen:    []string{"127.0.0.1:3260"},
			StateDir:  filepath.Join(dir, "blockport-data"),
			LogLevel:  "info",
			LogFormat: "text",
		},
		Limits: DefaultLimits(),
		Targets: []Target{{
			Name: "iqn.2026-11.io.blockport:a",
			LUNs: []LUN{
				{ID: 0, Backstore: "file", Path: filepath.Join(dir, "images/a.img"), Size: 1 << 30, BlockSize: 512, DirectIO: true},
				{ID: 1, Backstore: "memory", Size: 64 << 20, BlockSize: 512},
				{ID: 2, Backstore: "file", Path: "/abs/b.img", Size: 4 << 30, BlockSize: 4096, WriteCache: true, ReadOnly: true, Serial: "SER-2"},
			},
		}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

func TestEmptyConfig(t *testing.T) {
	c, err := Parse("empty.toml", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{Server: Server{Listen: []string{DefaultListen}, StateDir: "./blockport-data", LogLevel: "info", LogFormat: "text"}, Limits: DefaultLimits()}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v, want %+v", c, want)
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	want := &Config{
		Server: Server{Listen: []string{"127.0.0.1:3260"}, StateDir: "./blockport-data", LogLevel: "info", LogFormat: "text"},
		Limits: DefaultLimits(),
		Targets: []Target{{
			Name:              "iqn.2026-11.io.blockport:lab",
			Alias:             "lab",
			AllowAnyInitiator: true,
			LUNs: []LUN{{
				ID: 0, Backstore: "sparse", Path: "./blockport-data/lab0.img",
				Size: 1 << 30, BlockSize: 512, DirectIO: true,
			}},
		}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
	// Each call returns its own copy.
	c.Targets[0].LUNs[0].Size = 1
	if Default().Targets[0].LUNs[0].Size != 1<<30 {
		t.Error("Default shares state between calls")
	}
	if string(DefaultTOML()) != string(defaultTOML) {
		t.Error("DefaultTOML differs from the embedded text")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	image := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(image, make([]byte, 8192), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "blockport.toml")
	text := `[server]
state_dir = "state"
[[target]]
name = "iqn.2026-11.io.blockport:a"
  [[target.lun]]
  lun = 0
  backstore = "file"
  path = "disk.img"
`
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Server.StateDir; got != filepath.Join(dir, "state") {
		t.Errorf("StateDir = %q", got)
	}
	lun := c.Targets[0].LUNs[0]
	if lun.Path != image || lun.Size != 0 {
		t.Errorf("LUN path %q size %d; want %q and 0 (size from the file)", lun.Path, lun.Size, image)
	}

	// Errors name the file as it was given.
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("\n[server]\nlog_level = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	if err == nil || err.Error() != bad+":3: server.log_level: must be a string, not an integer" {
		t.Errorf("Load(bad) = %v", err)
	}

	_, err = Load(filepath.Join(dir, "absent.toml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(absent) = %v, want an ErrNotExist", err)
	}

	huge := filepath.Join(dir, "huge.toml")
	if err := os.WriteFile(huge, make([]byte, maxConfigSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	var ce *Error
	if _, err := Load(huge); !errors.As(err, &ce) {
		t.Errorf("Load(huge) = %v, want a *config.Error", err)
	}
}

func TestValidate(t *testing.T) {
	good := Default()
	good.Targets[0].LUNs[0].Path = filepath.Join(t.TempDir(), "lab0.img")
	if err := good.Validate(); err != nil {
		t.Errorf("Validate(Default()) = %v", err)
	}

	c := &Config{
		Server: Server{Listen: []string{"nowhere"}, StateDir: "s", LogLevel: "info", LogFormat: "text"},
		Targets: []Target{{
			Name: "iqn.2026-11.io.blockport:a",
			LUNs: []LUN{{ID: 0, Backstore: "memory", Size: 1 << 20}},
		}},
	}
	err := c.Validate()
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Validate() = %v, want a *config.Error", err)
	}
	checkProblems(t, ce.Problems, []want{
		{0, "server.listen[0]", "missing the port"},
		{0, "target[0].lun[0].block_size", "must be 512 or 4096, not 0"},
	})
	if got := ce.Problems[0].String(); !strings.HasPrefix(got, "server.listen[0]: ") {
		t.Errorf("problem without file or line prints as %q", got)
	}
}

// A block LUN without block_size takes its device's logical block size (0
// here); the other kinds default to 512.
func TestBlockSizeDefaults(t *testing.T) {
	c, err := Parse("t.toml", []byte(`
[[target]]
name = "iqn.2026-11.io.blockport:a"
  [[target.lun]]
  lun = 0
  backstore = "block"
  path = "/dev/loop0"
  [[target.lun]]
  lun = 1
  backstore = "block"
  path = "/dev/loop1"
  block_size = 4096
  [[target.lun]]
  lun = 2
  backstore = "memory"
  size = "1MiB"
`), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []uint32{0, 4096, 512} {
		if got := c.Targets[0].LUNs[i].BlockSize; got != want {
			t.Errorf("LUN %d: block size %d, want %d", i, got, want)
		}
	}
}
