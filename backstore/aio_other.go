//go:build !(linux && (amd64 || arm64))

package backstore

import "errors"

// aioContext is Linux AIO (aio_linux.go); elsewhere it is never set up and
// the synchronous path serves.
type aioContext struct{}

var errAIOClosed = errors.New("backstore: AIO context closed")

func newAIOContext() (*aioContext, error) { return nil, errors.New("no Linux AIO on this platform") }

func (a *aioContext) rw(fd int, write bool, buf []byte, off int64, rwFlags uint32) (int, error) {
	return 0, errAIOClosed
}

func (a *aioContext) Close() {}
