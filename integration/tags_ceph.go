//go:build ceph

package integration

// Built with -tags ceph, the tests run a server with the RBD backstore; the
// pacific tag selects go-ceph's API for the Ceph release Debian 12 ships.
func init() { serverBuildTags = "ceph,pacific" }
