package target

import (
	"encoding/hex"
	"path/filepath"
)

// prStateDir is the directory under state_dir that holds each LU's
// persistent reservation state (APTPL).
const prStateDir = "pr"

// prFile names an LU's APTPL state file by its NAA designator, the stable
// device identifier initiators know it by: the state follows the LU's
// identity, not its position in the config.
func prFile(stateDir string, naa [16]byte) string {
	if stateDir == "" {
		stateDir = "."
	}
	return filepath.Join(stateDir, prStateDir, hex.EncodeToString(naa[:])+".json")
}
