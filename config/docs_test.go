package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDocsListEveryKey keeps docs/config.md in step with the decoder: every
// key a table accepts has a row in that table's section, and every row
// names a key the table accepts.
func TestDocsListEveryKey(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "docs", "config.md"))
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{} // "## `[server]`" heading text -> body
	var heading string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "## ") {
			heading = strings.TrimPrefix(line, "## ")
			continue
		}
		sections[heading] += line + "\n"
	}
	for _, tc := range []struct {
		heading string
		keys    []string
	}{
		{"`[server]`", serverKeys},
		{"`[limits]`", limitsKeys},
		{"`[discovery]`", discoveryKeys},
		{"`[[target]]`", targetKeys},
		{"`[[target.lun]]`", lunKeys},
		{"`[[target.acl]]`", aclKeys},
		{"CHAP tables", chapKeys},
		{"`[[target.portal_group]]`", portalGroupKeys},
		{"`[isns]`", isnsKeys},
	} {
		body, ok := sections[tc.heading]
		if !ok {
			t.Errorf("docs/config.md has no section %q", tc.heading)
			continue
		}
		documented := map[string]bool{}
		for _, line := range strings.Split(body, "\n") {
			// Key rows have five columns (key, type, default, example,
			// meaning); other tables in a section have fewer.
			if strings.Count(line, " | ") < 4 {
				continue
			}
			if rest, ok := strings.CutPrefix(line, "| `"); ok {
				if key, _, ok := strings.Cut(rest, "` |"); ok {
					documented[key] = true
				}
			}
		}
		for _, k := range tc.keys {
			if !documented[k] {
				t.Errorf("section %s: key %q is not documented", tc.heading, k)
			}
			delete(documented, k)
		}
		for k := range documented {
			t.Errorf("section %s: documents %q, which the table does not accept", tc.heading, k)
		}
	}
	// A new top-level table needs its own section (and a row in the list
	// above).
	for _, k := range rootKeys {
		if _, ok := sections["`[["+k+"]]`"]; !ok {
			if _, ok := sections["`["+k+"]`"]; !ok {
				t.Errorf("docs/config.md has no section for the top-level table %q", k)
			}
		}
	}
	// The keys of an ACL's luns entries are described in the luns row.
	acl := sections["`[[target.acl]]`"]
	for _, k := range aclLUNKeys {
		if !strings.Contains(acl, "`"+k+"`") {
			t.Errorf("section [[target.acl]]: luns entry key %q is not documented", k)
		}
	}
}
