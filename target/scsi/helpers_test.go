package scsi

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/blockport/blockport/target/scsi/sense"
)

// memStore is a backstore over a []byte with fault injection, so tests can
// see FUA and Sync calls and make I/O fail at chosen offsets.
type memStore struct {
	mu   sync.RWMutex
	data []byte // guarded by mu
	// size overrides len(data) for capacity tests (reads past data fail).
	size int64

	failReadAt  atomic.Int64 // byte offset at which reads stop; -1: never
	failWriteAt atomic.Int64 // byte offset at which writes fail; -1: never
	failSync    atomic.Bool
	syncs       atomic.Int32
	fuaWrites   atomic.Int32
	writes      atomic.Int32
}

var errInjected = errors.New("injected I/O error")

func newMemStore(size int) *memStore {
	s := &memStore{data: make([]byte, size), size: int64(size)}
	s.failReadAt.Store(-1)
	s.failWriteAt.Store(-1)
	return s
}

func (s *memStore) ReadAt(p []byte, off int64) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if off < 0 || off > int64(len(s.data)) {
		return 0, errInjected
	}
	n := copy(p, s.data[off:])
	if f := s.failReadAt.Load(); f >= 0 && off+int64(n) > f {
		n = int(max(f-off, 0))
		return n, errInjected
	}
	if n < len(p) {
		return n, errInjected
	}
	return n, nil
}

func (s *memStore) WriteAt(p []byte, off int64, fua bool) (int, error) {
	s.writes.Add(1)
	if fua {
		s.fuaWrites.Add(1)
	}
	if f := s.failWriteAt.Load(); f >= 0 && off+int64(len(p)) > f {
		return 0, errInjected
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(s.data)) {
		return 0, errInjected
	}
	return copy(s.data[off:], p), nil
}

func (s *memStore) Sync() error {
	s.syncs.Add(1)
	if s.failSync.Load() {
		return errInjected
	}
	return nil
}

func (s *memStore) Size() int64  { return s.size }
func (s *memStore) Close() error { return nil }

func (s *memStore) bytes(off, n int) []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]byte(nil), s.data[off:off+n]...)
}

var (
	nexusA = &Nexus{Initiator: "iqn.2024-01.org.example:a", ISID: [6]byte{0x80, 0, 0, 0, 0, 1}, Target: "iqn.2024-01.org.blockport:t", TPGT: 1}
	nexusB = &Nexus{Initiator: "iqn.2024-01.org.example:b", ISID: [6]byte{0x80, 0, 0, 0, 0, 2}, Target: "iqn.2024-01.org.blockport:t", TPGT: 1}
)

type luOpt func(*LUConfig)

// newTestDevice maps one LU of blocks*bs bytes at LUN 0.
func newTestDevice(t testing.TB, blocks int, bs uint32, opts ...luOpt) (*Device, *LU, *memStore) {
	t.Helper()
	st := newMemStore(blocks * int(bs))
	cfg := LUConfig{Backstore: st, BlockSize: bs, NAA: NewNAA([]byte(t.Name())), Serial: "SN0001"}
	for _, o := range opts {
		o(&cfg)
	}
	lu, err := NewLU(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := NewDevice("test")
	if err := d.AddLU(0, lu); err != nil {
		t.Fatal(err)
	}
	return d, lu, st
}

// result is what a command produced.
type result struct {
	status Status
	sense  *sense.Error // parsed from the sense bytes
	data   []byte       // data-in
	err    error
}

// run drives one command through Prepare and Execute as the fabric would:
// data-out is cut to min(EDTL, TransferLength); data-in buffers are
// TransferLength bytes.
func run(t testing.TB, d *Device, n *Nexus, lun uint64, cdb []byte, dataOut []byte, edtl uint32) result {
	t.Helper()
	cmd := &Command{Nexus: n, LUN: lun, CDB: cdb, Attr: TaskSimple, ExpectedLength: edtl}
	var r result
	r.err = d.Prepare(cmd)
	if r.err == nil {
		switch cmd.Dir {
		case DirRead:
			cmd.Data = make([]byte, cmd.TransferLength)
		case DirWrite:
			cmd.Data = dataOut[:min(len(dataOut), int(edtl), cmd.TransferLength)]
		}
		var nIn int
		nIn, r.err = d.Execute(context.Background(), cmd)
		if cmd.Dir == DirRead {
			r.data = cmd.Data[:nIn]
		}
	}
	r.status, r.sense = statusOf(t, r.err)
	return r
}

// statusOf is the status and parsed sense data a command's error gives.
func statusOf(t testing.TB, err error) (Status, *sense.Error) {
	t.Helper()
	st, sb := StatusOf(err)
	if sb == nil {
		return st, nil
	}
	e, perr := sense.Parse(sb)
	if perr != nil {
		t.Fatalf("sense % x: %v", sb, perr)
	}
	return st, e
}

// clearUA consumes the pending unit attentions of n on lun.
func clearUA(t testing.TB, d *Device, n *Nexus, lun uint64) {
	t.Helper()
	for i := 0; i < maxPendingUA+2; i++ {
		if r := run(t, d, n, lun, []byte{opTestUnitReady, 0, 0, 0, 0, 0}, nil, 0); r.status == StatusGood {
			return
		}
	}
	t.Fatal("unit attentions do not clear")
}

// want describes an expected outcome.
type want struct {
	status    Status
	key       sense.Key
	asc, ascq byte
	field     *sense.FieldPointer // nil: not checked
}

var good = want{status: StatusGood}

func checkCond(key sense.Key, asc, ascq byte) want {
	return want{status: StatusCheckCondition, key: key, asc: asc, ascq: ascq}
}

func invalidField(byteOff int, bit int8) want {
	w := checkCond(sense.KeyIllegalRequest, 0x24, 0)
	w.field = &sense.FieldPointer{CDB: true, Byte: uint16(byteOff), Bit: bit}
	return w
}

var (
	lbaOOB        = checkCond(sense.KeyIllegalRequest, 0x21, 0)
	invalidOpcode = checkCond(sense.KeyIllegalRequest, 0x20, 0)
	luNotSupp     = checkCond(sense.KeyIllegalRequest, 0x25, 0)
	writeProt     = checkCond(sense.KeyDataProtect, 0x27, 0)
	invalidIU     = checkCond(sense.KeyIllegalRequest, 0x0E, 0x03)
	miscompare    = checkCond(sense.KeyMiscompare, 0x1D, 0)
)

func (r result) check(t testing.TB, w want) {
	t.Helper()
	if r.status != w.status {
		t.Fatalf("status %v (err %v), want %v", r.status, r.err, w.status)
	}
	if w.status != StatusCheckCondition {
		return
	}
	if r.sense.Key != w.key || r.sense.ASC != w.asc || r.sense.ASCQ != w.ascq {
		t.Fatalf("sense %v, want %v %02Xh/%02Xh", r.sense, w.key, w.asc, w.ascq)
	}
	if w.field != nil && (r.sense.Field == nil || *r.sense.Field != *w.field) {
		t.Fatalf("field pointer %+v, want %+v", r.sense.Field, *w.field)
	}
}

// CDB builders.
func cdb6(op byte, lba uint32, n uint8) []byte {
	return []byte{op, byte(lba>>16) & 0x1F, byte(lba >> 8), byte(lba), n, 0}
}

func cdb10(op, flags byte, lba uint32, n uint16) []byte {
	c := make([]byte, 10)
	c[0], c[1] = op, flags
	binary.BigEndian.PutUint32(c[2:6], lba)
	binary.BigEndian.PutUint16(c[7:9], n)
	return c
}

func cdb12(op, flags byte, lba uint32, n uint32) []byte {
	c := make([]byte, 12)
	c[0], c[1] = op, flags
	binary.BigEndian.PutUint32(c[2:6], lba)
	binary.BigEndian.PutUint32(c[6:10], n)
	return c
}

func cdb16(op, flags byte, lba uint64, n uint32) []byte {
	c := make([]byte, 16)
	c[0], c[1] = op, flags
	binary.BigEndian.PutUint64(c[2:10], lba)
	binary.BigEndian.PutUint32(c[10:14], n)
	return c
}

func fill(n int, b byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = b + byte(i/512)
	}
	return p
}
