package scsi

import (
	"bytes"
	"encoding/binary"
	"github.com/blockport/blockport/backstore"
	"path/filepath"
	"testing"
	"time"

	"github.com/blockport/blockport/target/scsi/sense"
)

func sanitizeCDB(sa byte, immed, ause bool, paramLen int) []byte {
	c := make([]byte, 10)
	c[0], c[1] = opSanitize, sa
	if immed {
		c[1] |= 0x80
	}
	if ause {
		c[1] |= 0x20
	}
	binary.BigEndian.PutUint16(c[7:9], uint16(paramLen))
	return c
}

func owList(flags byte, pattern []byte) []byte {
	p := []byte{flags, 0, 0, 0}
	binary.BigEndian.PutUint16(p[2:4], uint16(len(pattern)))
	return append(p, pattern...)
}

// fastSanitize lets a sanitize run at bytes per second for the test.
func fastSanitize(t *testing.T, rate int64) {
	old := sanitizeRate
	sanitizeRate = rate
	t.Cleanup(func() { sanitizeRate = old })
}

var (
	sanitizeFailedCond  = checkCond(sense.KeyMediumError, 0x31, 0x03)
	sanitizeRunningCond = checkCond(sense.KeyNotReady, 0x04, 0x1B)
	sequenceErr         = checkCond(sense.KeyIllegalRequest, 0x2C, 0x00)
)

func TestSanitizeCDB(t *testing.T) {
	const bs = 512
	d, _, _ := newTestDevice(t, 64, bs)
	clearUA(t, d, nexusA, 0)
	ow := owList(0x01, []byte{0xAA})
	reserved := func(at int, v byte) []byte {
		c := sanitizeCDB(saSanitizeOverwrite, false, false, len(ow))
		c[at] |= v
		return c
	}
	tests := []struct {
		name string
		cdb  []byte
		data []byte
		want want
	}{
		{"reserved bit", reserved(1, 0x40), ow, invalidField(1, 6)},
		{"reserved byte 2", reserved(2, 1), ow, invalidField(2, 7)},
		{"reserved byte 6", reserved(6, 1), ow, invalidField(6, 7)},
		{"overwrite without pattern", sanitizeCDB(saSanitizeOverwrite, false, false, 4), ow, invalidField(7, 7)},
		{"overwrite list over a block", sanitizeCDB(saSanitizeOverwrite, false, false, bs+5), make([]byte, bs+5), invalidField(7, 7)},
		{"exit failure mode with a list", sanitizeCDB(saSanitizeExitFailure, false, false, 8), make([]byte, 8), invalidField(7, 7)},
		// A memory LU cannot deallocate, and no backstore encrypts.
		{"block erase unsupported", sanitizeCDB(saSanitizeBlockErase, false, false, 0), nil, invalidField(1, 4)},
		{"cryptographic erase", sanitizeCDB(0x03, false, false, 0), nil, invalidField(1, 4)},
		{"service action 0", sanitizeCDB(0x00, false, false, 0), nil, invalidField(1, 4)},
		{"service action 1Eh", sanitizeCDB(0x1E, false, false, 0), nil, invalidField(1, 4)},
		{"overwrite count 0", sanitizeCDB(saSanitizeOverwrite, false, false, len(ow)), owList(0x00, []byte{0xAA}),
			want{status: StatusCheckCondition, key: sense.KeyIllegalRequest, asc: 0x26, field: &sense.FieldPointer{Byte: 0, Bit: 4}}},
		{"test field", sanitizeCDB(saSanitizeOverwrite, false, false, len(ow)), owList(0x21, []byte{0xAA}),
			want{status: StatusCheckCondition, key: sense.KeyIllegalRequest, asc: 0x26, field: &sense.FieldPointer{Byte: 0, Bit: 6}}},
		{"pattern length 0", sanitizeCDB(saSanitizeOverwrite, false, false, 8), []byte{1, 0, 0, 0, 1, 2, 3, 4},
			want{status: StatusCheckCondition, key: sense.KeyIllegalRequest, asc: 0x26, field: &sense.FieldPointer{Byte: 2, Bit: 7}}},
		{"pattern over a block", sanitizeCDB(saSanitizeOverwrite, false, false, bs+4), append([]byte{1, 0, (bs + 4) >> 8, (bs + 4) & 0xFF}, make([]byte, bs)...),
			want{status: StatusCheckCondition, key: sense.KeyIllegalRequest, asc: 0x26, field: &sense.FieldPointer{Byte: 2, Bit: 7}}},
		{"pattern length disagrees", sanitizeCDB(saSanitizeOverwrite, false, false, 8), []byte{1, 0, 0, 2, 1, 2, 3, 4}, checkCond(sense.KeyIllegalRequest, 0x1A, 0)},
		{"exit failure mode out of sequence", sanitizeCDB(saSanitizeExitFailure, false, true, 0), nil, sequenceErr},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			run(t, d, nexusA, 0, tc.cdb, tc.data, uint32(len(tc.data))).check(t, tc.want)
		})
	}

	dro, _, _ := newTestDevice(t, 64, bs, func(c *LUConfig) { c.ReadOnly = true })
	clearUA(t, dro, nexusA, 0)
	run(t, dro, nexusA, 0, sanitizeCDB(saSanitizeOverwrite, false, false, len(ow)), ow, uint32(len(ow))).check(t, writeProt)
}

func TestSanitizeOverwrite(t *testing.T) {
	const bs = 512
	fastSanitize(t, 1<<30)
	d, _, st := newTestDevice(t, 64, bs)
	clearUA(t, d, nexusA, 0)
	run(t, d, nexusA, 0, cdb10(opWrite10, 0, 0, 64), fill(64*bs, 1), 64*bs).check(t, good)

	// A 3-byte pattern repeats from the start of every block.
	p := owList(0x01, []byte("abc"))
	run(t, d, nexusA, 0, sanitizeCDB(saSanitizeOverwrite, false, false, len(p)), p, uint32(len(p))).check(t, good)
	block := bytes.Repeat([]byte("abc"), bs/3+1)[:bs]
	if got := st.bytes(0, 64*bs); !bytes.Equal(got, bytes.Repeat(block, 64)) {
		t.Fatalf("after OVERWRITE block 0: %q", got[:16])
	}
	// INVERT with two passes: the second pass writes the inverted pattern.
	p = owList(0x80|0x02, []byte{0x0F})
	run(t, d, nexusA, 0, sanitizeCDB(saSanitizeOverwrite, false, false, len(p)), p, uint32(len(p))).check(t, good)
	if got := st.bytes(0, 64*bs); !bytes.Equal(got, bytes.Repeat([]byte{0xF0}, 64*bs)) {
		t.Fatalf("after inverted passes: % x", got[:8])
	}
	if st.syncs.Load() == 0 {
		t.Fatal("sanitize did not make its writes stable")
	}
}

func TestSanitizeInProgress(t *testing.T) {
	const bs = 512
	fastSanitize(t, 256<<10) // 128 KiB: half a second
	d, _, st := newTestDevice(t, 256, bs)
	clearUA(t, d, nexusA, 0)
	p := owList(0x01, []byte{0x5A})
	start := time.Now()
	run(t, d, nexusA, 0, sanitizeCDB(saSanitizeOverwrite, true, false, len(p)), p, uint32(len(p))).check(t, good)

	r := run(t, d, nexusA, 0, []byte{opTestUnitReady, 0, 0, 0, 0, 0}, nil, 0)
	r.check(t, sanitizeRunningCond)
	if !r.sense.HasProgress {
		t.Fatal("no progress indication")
	}
	run(t, d, nexusA, 0, cdb10(opRead10, 0, 0, 1), nil, bs).check(t, sanitizeRunningCond)
	run(t, d, nexusA, 0, sanitizeCDB(saSanitizeOverwrite, false, false, len(p)), p, uint32(len(p))).check(t, sanitizeRunningCond)
	run(t, d, nexusA, 0, inquiryCDB(false, 0, 96), nil, 96).check(t, good)
	// A new nexus has a unit attention pending; the sanitize answers first.
	run(t, d, nexusB, 0, []byte{opTestUnitReady, 0, 0, 0, 0, 0}, nil, 0).check(t, sanitizeRunningCond)
	// REQUEST SENSE reports the progress as its data, with GOOD status.
	r = run(t, d, nexusA, 0, []byte{opRequestSense, 0, 0, 0, 252, 0}, nil, 252)
	r.check(t, good)
	if e, err := sense.Parse(r.data); err != nil || e.Key != sense.KeyNotReady || e.Code() != 0x041B || !e.HasProgress {
		t.Fatalf("REQUEST SENSE during sanitize: %v %v", e, err)
	}

	// Wait for the end: TEST UNIT READY turns GOOD.
	for run(t, d, nexusA, 0, []byte{opTestUnitReady, 0, 0, 0, 0, 0}, nil, 0).status != StatusGood {
		if time.Since(start) > 10*time.Second {
			t.Fatal("sanitize does not end")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if el := time.Since(start); el < 400*time.Millisecond {
		t.Fatalf("sanitize of 128 KiB at 256 KiB/s took %v: not paced", el)
	}
	if got := st.bytes(0, 256*bs); !bytes.Equal(got, bytes.Repeat([]byte{0x5A}, 256*bs)) {
		t.Fatal("sanitize did not overwrite every block")
	}
	// nexusB's unit attention is still pending after the sanitize.
	run(t, d, nexusB, 0, []byte{opTestUnitReady, 0, 0, 0, 0, 0}, nil, 0).check(t, checkCond(sense.KeyUnitAttention, 0x29, 0x00))
}

func TestSanitizeFailureMode(t *testing.T) {
	const bs = 512
	fastSanitize(t, 1<<30)
	d, _, st := newTestDevice(t, 64, bs)
	clearUA(t, d, nexusA, 0)
	p := owList(0x01, []byte{0x11})
	sanitize := func(ause bool) result {
		return run(t, d, nexusA, 0, sanitizeCDB(saSanitizeOverwrite, false, ause, len(p)), p, uint32(len(p)))
	}
	exit := func() result {
		return run(t, d, nexusA, 0, sanitizeCDB(saSanitizeExitFailure, false, false, 0), nil, 0)
	}
	read := func() result { return run(t, d, nexusA, 0, cdb10(opRead10, 0, 0, 1), nil, bs) }

	st.failWriteAt.Store(32 * bs)
	sanitize(false).check(t, sanitizeFailedCond)
	read().check(t, sanitizeFailedCond)
	run(t, d, nexusA, 0, []byte{opTestUnitReady, 0, 0, 0, 0, 0}, nil, 0).check(t, good)
	r := run(t, d, nexusA, 0, []byte{opRequestSense, 0, 0, 0, 252, 0}, nil, 252)
	if e, _ := sense.Parse(r.data); e == nil || e.Code() != 0x3103 {
		t.Fatalf("REQUEST SENSE in failure mode: %v", e)
	}
	exit().check(t, sequenceErr) // AUSE was 0: only a new sanitize clears it
	sanitize(true).check(t, sanitizeFailedCond)
	exit().check(t, good) // AUSE=1
	read().check(t, good)

	// A sanitize that completes also ends the failure mode.
	sanitize(false).check(t, sanitizeFailedCond)
	st.failWriteAt.Store(-1)
	sanitize(false).check(t, good)
	read().check(t, good)
}

func TestSanitizeBlockErase(t *testing.T) {
	const bs = 512
	d, lu, _ := newSparseDevice(t, 2048, bs)
	if !lu.canBlockErase() {
		t.Fatal("a sparse LU should offer BLOCK ERASE")
	}
	run(t, d, nexusA, 0, cdb10(opWrite10, 0, 0, 128), fill(128*bs, 3), 128*bs).check(t, good)
	run(t, d, nexusA, 0, cdb10(opWrite10, 0, 2000, 48), fill(48*bs, 3), 48*bs).check(t, good)
	run(t, d, nexusA, 0, sanitizeCDB(saSanitizeBlockErase, false, false, 8), make([]byte, 8), 8).check(t, invalidField(7, 7))
	run(t, d, nexusA, 0, sanitizeCDB(saSanitizeBlockErase, false, false, 0), nil, 0).check(t, good)

	r := run(t, d, nexusA, 0, cdb10(opRead10, 0, 0, 128), nil, 128*bs)
	r.check(t, good)
	if !bytes.Equal(r.data, make([]byte, 128*bs)) {
		t.Fatal("erased blocks do not read as zeros")
	}
	r = run(t, d, nexusA, 0, getLBAStatusCDB(0, 256), nil, 256)
	r.check(t, good)
	var covered uint64
	for _, s := range lbaStatuses(t, r.data) {
		if s.status == 0 || s.lba != covered {
			t.Fatalf("after BLOCK ERASE: %v", lbaStatuses(t, r.data))
		}
		covered += uint64(s.blocks)
	}
	if covered != 2048 {
		t.Fatalf("LBA status covers %d of 2048 blocks", covered)
	}
	// VPD B1h: WABEREQ 01b; REPORT SUPPORTED OPERATION CODES lists it.
	r = run(t, d, nexusA, 0, inquiryCDB(true, vpdBlockCharacteristic, 64), nil, 64)
	if r.data[7]>>6 != 1 {
		t.Fatalf("WABEREQ %d", r.data[7]>>6)
	}
	r = run(t, d, nexusA, 0, rsocCDB(2, opSanitize, saSanitizeBlockErase, 64), nil, 64)
	if r.data[1]&0x07 != 3 {
		t.Fatalf("BLOCK ERASE support % x", r.data)
	}
}

// CRYPTOGRAPHIC ERASE is offered only where the backstore encrypts; there
// it replaces the key, and the old data is gone from every block at once.
func TestSanitizeCryptoErase(t *testing.T) {
	const bs = 512
	d, lu, _ := newSparseDevice(t, 2048, bs)
	if lu.canCryptoErase() {
		t.Fatal("a plain LU offers CRYPTOGRAPHIC ERASE")
	}
	run(t, d, nexusA, 0, sanitizeCDB(saSanitizeCryptoErase, false, false, 0), nil, 0).check(t, invalidField(1, 4))
	if r := run(t, d, nexusA, 0, inquiryCDB(true, vpdBlockCharacteristic, 64), nil, 64); r.data[7]>>4&3 != 0 {
		t.Fatalf("WACEREQ %d without encryption", r.data[7]>>4&3)
	}

	store, err := backstore.Open(backstore.Options{Kind: "sparse", Path: filepath.Join(t.TempDir(), "enc.img"),
		Size: 2048 * bs, BlockSize: bs, KeyFile: filepath.Join(t.TempDir(), "enc.key")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	lu, err = NewLU(LUConfig{Backstore: store, BlockSize: bs, NAA: NewNAA([]byte("enc"))})
	if err != nil {
		t.Fatal(err)
	}
	d = NewDevice("enc")
	d.AddLU(0, lu)
	clearUA(t, d, nexusA, 0)
	secret := fill(128*bs, 0x5E)
	run(t, d, nexusA, 0, cdb10(opWrite10, 0, 100, 128), secret, 128*bs).check(t, good)
	if r := run(t, d, nexusA, 0, cdb10(opRead10, 0, 100, 128), nil, 128*bs); !bytes.Equal(r.data, secret) {
		t.Fatal("an encrypted LU does not read back what was written")
	}
	run(t, d, nexusA, 0, sanitizeCDB(saSanitizeCryptoErase, false, false, 8), make([]byte, 8), 8).check(t, invalidField(7, 7))
	run(t, d, nexusA, 0, sanitizeCDB(saSanitizeCryptoErase, false, false, 0), nil, 0).check(t, good)
	r := run(t, d, nexusA, 0, cdb10(opRead10, 0, 100, 128), nil, 128*bs)
	r.check(t, good)
	if bytes.Contains(r.data, secret[:bs]) {
		t.Fatal("the old data reads back after CRYPTOGRAPHIC ERASE")
	}
	// VPD B1h: WACEREQ 01b; REPORT SUPPORTED OPERATION CODES lists it.
	if r := run(t, d, nexusA, 0, inquiryCDB(true, vpdBlockCharacteristic, 64), nil, 64); r.data[7]>>4&3 != 1 {
		t.Fatalf("WACEREQ %d", r.data[7]>>4&3)
	}
	if r := run(t, d, nexusA, 0, rsocCDB(2, opSanitize, saSanitizeCryptoErase, 64), nil, 64); r.data[1]&0x07 != 3 {
		t.Fatalf("CRYPTOGRAPHIC ERASE support % x", r.data)
	}
}

func FuzzParseOverwriteParams(f *testing.F) {
	f.Add(owList(0x01, []byte{0xAA}), uint16(512))
	f.Add(owList(0x9F, bytes.Repeat([]byte{1, 2, 3}, 100)), uint16(4096))
	f.Add([]byte{0, 0, 0, 0}, uint16(512))
	f.Fuzz(func(t *testing.T, p []byte, bs uint16) {
		if bs == 0 {
			return
		}
		o, err := parseOverwriteParams(p, uint32(bs))
		if err != nil {
			if _, ok := sense.As(err); !ok {
				t.Fatalf("error %v is not sense data", err)
			}
			return
		}
		if o.passes < 1 || o.passes > 31 || len(o.pattern) == 0 || len(o.pattern) > int(bs) {
			t.Fatalf("accepted %+v", o)
		}
	})
}
