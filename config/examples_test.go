package config

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExamples loads every *.toml under the repository's examples/
// directory, so a shipped example can never drift from what Load accepts.
// The embedded default is always checked, as the example of last resort.
func TestExamples(t *testing.T) {
	if _, err := Parse("default.toml", defaultTOML, ""); err != nil {
		t.Errorf("embedded default.toml: %v", err)
	}
	var files []string
	err := filepath.WalkDir(filepath.Join("..", "examples"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".toml") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	t.Logf("%d example configs", len(files))
	for _, path := range files {
		t.Run(path, func(t *testing.T) {
			if _, err := Load(path); err != nil {
				t.Errorf("%v", err)
			}
		})
	}
}

func ExampleParse() {
	_, err := Parse("blockport.toml", []byte(`
[server]
listen = ["0.0.0.0"]

[[target]]
name = "iqn.2026-11.com.example:disk1"
  [[target.lun]]
  lun = 0
  backstore = "memory"
  size = "100MB"
  block_size = 4096
`), "")
	fmt.Println(err)
	// Output:
	// blockport.toml:3: server.listen[0]: "0.0.0.0": missing the port, as in "0.0.0.0:3260"
	// blockport.toml:10: target[0].lun[0].size: 100000000 bytes is not a multiple of block_size 4096
}
