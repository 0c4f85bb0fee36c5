package config

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

var parseSeeds = []string{
	"",
	string(defaultTOML),
	"[server]\nlisten = [\"[::1]:3260\", \"0.0.0.0:3260\"]\nlog_format = \"json\"\n",
	"[[target]]\nname = \"eui.02004567A425678D\"\n  [[target.lun]]\n  lun = 1\n  backstore = \"memory\"\n  size = \"64MiB\"\n  block_size = 4096\n",
	"target = [{ name = \"naa.52004567BA64678D\", lun = [{ lun = 0, backstore = \"memory\", size = 1048576 }] }]\n",
	"[[target]]\nname = \"iqn.2026-11.io.blockport:x\"\n[[target.lun]]\nlun = 0\nbackstore = \"file\"\npath = \"x.img\"\nsize = \"1.5GiB\"\n[[target.lun]]\nlun = 0\n",
	"a = \"\"\"\n[[target]]\n\"\"\"\n'q k'.\"r\" = 1\n",
	"[server\nlisten = 1\n",
}

// FuzzParse: no input may panic Parse, every failure is a *Error whose
// problems name the file, and every success passes Validate.
func FuzzParse(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := strings.Count(string(data), "\n") + 1
		positions := scanKeyLines(string(data)) // must terminate on any text
		for key, line := range positions {
			if line < 1 || line > lines {
				t.Fatalf("key %q at line %d of %d", key, line, lines)
			}
		}
		// On valid TOML the scanner must find every key the decoder found,
		// or problems would lose their lines.
		var doc map[string]any
		if _, err := toml.Decode(string(data), &doc); err == nil {
			checkAllKeysHaveLines(t, "", doc, positions)
		}

		c, err := Parse("fuzz.toml", data, dir)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("error %T %v is not a *Error with problems", err, err)
			}
			for _, p := range ce.Problems {
				if p.File != "fuzz.toml" || p.Line < 0 || p.Line > lines || p.Msg == "" {
					t.Fatalf("bad problem %#v", p)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that Validate rejects: %v", err)
		}
	})
}

func checkAllKeysHaveLines(t *testing.T, path string, v any, positions map[string]int) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			key := joinKey(path, k)
			if _, ok := positions[key]; !ok {
				t.Fatalf("scanner missed key %s (found %v)", key, positions)
			}
			checkAllKeysHaveLines(t, key, e, positions)
		}
	case []map[string]any:
		for i, e := range v {
			checkAllKeysHaveLines(t, indexKey(path, i), e, positions)
		}
	case []any:
		for i, e := range v {
			checkAllKeysHaveLines(t, indexKey(path, i), e, positions)
		}
	}
}

// FuzzParseSize: no panic; results are never negative and print back.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "512", "1GiB", "1.5 TiB", "10TB", "1kB", "-1", "1e9", ".", "8191PiB", "9223372036854775808"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
		if back, err := ParseSize(strconv.FormatInt(n, 10)); err != nil || back != n {
			t.Fatalf("ParseSize(%d) = %d, %v", n, back, err)
		}
	})
}

// FuzzValidateName: no panic; accepted names have the right shape, and
// their canonical form is accepted too.
func FuzzValidateName(f *testing.F) {
	for _, s := range []string{
		"iqn.2026-11.io.blockport:lab", "iqn.2001-04.com.example", "eui.02004567A425678D",
		"naa.62004567BA64678D0123456789ABCDEF", "IQN.2001-04.com.example", "iqn.2001-13.x", "naa.", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidateName(name) != nil {
			return
		}
		if len(name) > maxNameLen {
			t.Fatalf("accepted %d-byte name", len(name))
		}
		switch name[:4] {
		case "iqn.", "eui.", "naa.":
		default:
			t.Fatalf("accepted %q", name)
		}
		if err := ValidateName(canonicalName(name)); err != nil {
			t.Fatalf("canonical form of %q rejected: %v", name, err)
		}
	})
}
