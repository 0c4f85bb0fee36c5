//go:build ceph

package conformance

import (
	"fmt"
	"os"

	"github.com/blockport/blockport/internal/cephtest"
)

func init() {
	startCeph = func(dir string) (string, func(), error) {
		c, err := cephtest.Start(dir)
		if err != nil {
			return "", nil, err
		}
		return c.Conf, func() {
			if err := c.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
		}, nil
	}
}
