package target

import (
	"encoding/hex"
	"path/filepath"
)

// Directories under state_dir that hold per-LU state, each file named by
// the LU's NAA designator, the stable device identifier initiators know it
// by: the state follows the LU's identity, not its position in the config.
const (
	prStateDir  = "pr"   // persistent reservation state (APTPL)
	keyStateDir = "keys" // encryption keys (encrypt = true)
)

// stateFile names an LU's file in subdir of stateDir.
func stateFile(stateDir, subdir string, naa [16]byte, ext string) string {
	if stateDir == "" {
		stateDir = "."
	}
	return filepath.Join(stateDir, subdir, hex.EncodeToString(naa[:])+ext)
}

// prFile names an LU's APTPL state file.
func prFile(stateDir string, naa [16]byte) string {
	return stateFile(stateDir, prStateDir, naa, ".json")
}
