package iscsi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"testing"
)

// TestCRC32CVectors checks the digest and its byte order against the
// examples of RFC 3720 appendix B.4, which list the CRC bytes in wire order.
func TestCRC32CVectors(t *testing.T) {
	inc := make([]byte, 32)
	dec := make([]byte, 32)
	ones := bytes.Repeat([]byte{0xff}, 32)
	for i := range inc {
		inc[i] = byte(i)
		dec[i] = byte(31 - i)
	}
	readCmd := []byte{
		0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
		0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	}
	tests := []struct {
		name string
		in   []byte
		wire []byte
	}{
		{"32 zero bytes", make([]byte, 32), []byte{0xaa, 0x36, 0x91, 0x8a}},
		{"32 0xff bytes", ones, []byte{0x43, 0xab, 0xa8, 0x62}},
		{"32 incrementing", inc, []byte{0x4e, 0x79, 0xdd, 0x46}},
		{"32 decrementing", dec, []byte{0x5c, 0xdb, 0x3f, 0x11}},
		{"iSCSI read command", readCmd, []byte{0x56, 0x3a, 0x96, 0xd9}},
	}
	for _, tt := range tests {
		got := binary.LittleEndian.AppendUint32(nil, crc32.Checksum(tt.in, crc32cTable))
		if !bytes.Equal(got, tt.wire) {
			t.Errorf("%s: wire bytes % x, want % x", tt.name, got, tt.wire)
		}
	}
}

// TestHeaderDigestOnWire: the Writer's header digest for the RFC 3720 B.4
// read command is the RFC's value, at bytes 48-51.
func TestHeaderDigestOnWire(t *testing.T) {
	var h BHS
	cmd := SCSICommand{Final: true, Read: true, ITT: 0x14000000, ExpectedDataTransferLength: 0x400, CmdSN: 0x14, ExpStatSN: 0x18,
		CDB: [16]byte{0x28, 0, 0, 0, 0, 0, 0, 0, 0x02}}
	cmd.Encode(&h)
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.SetDigests(true, true)
	if err := w.WritePDU(&h, nil); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 52 {
		t.Fatalf("wire length %d, want 52 (no data digest without data)", buf.Len())
	}
	if got := buf.Bytes()[48:]; !bytes.Equal(got, []byte{0x56, 0x3a, 0x96, 0xd9}) {
		t.Fatalf("header digest % x", got)
	}
}

func testPDU(op Opcode, itt uint32) BHS {
	var h BHS
	n := NOPIn{ITT: itt, TTT: ReservedTag, StatSN: itt + 1}
	n.Encode(&h)
	h[0] = byte(op)
	return h
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// TestFramerRoundTrip sends PDUs with 0..9 data bytes (padding 0..3) with
// each digest combination and reads them back three ways.
func TestFramerRoundTrip(t *testing.T) {
	for _, hd := range []bool{false, true} {
		for _, dd := range []bool{false, true} {
			t.Run(fmt.Sprintf("header=%v,data=%v", hd, dd), func(t *testing.T) {
				var buf bytes.Buffer
				w := NewWriter(&buf)
				w.SetDigests(hd, dd)
				wantLen := 0
				for n := 0; n < 10; n++ {
					h := testPDU(OpNOPIn, uint32(n))
					w.Queue(&h, pattern(n, byte(n)))
					if h.DataSegmentLength() != n {
						t.Fatalf("Queue did not set DataSegmentLength: %d", h.DataSegmentLength())
					}
					wantLen += BHSLength + n + padLength(n)
					if hd {
						wantLen += 4
					}
					if dd && n > 0 {
						wantLen += 4
					}
				}
				if err := w.Flush(); err != nil {
					t.Fatal(err)
				}
				if buf.Len() != wantLen {
					t.Fatalf("wire length %d, want %d", buf.Len(), wantLen)
				}
				wire := buf.Bytes()

				// ReadPDU
				r := NewReader(bytes.NewReader(wire))
				r.SetDigests(hd, dd)
				for n := 0; n < 10; n++ {
					p, err := r.ReadPDU()
					if err != nil {
						t.Fatalf("PDU %d: %v", n, err)
					}
					if p.Header.ITT() != uint32(n) || !bytes.Equal(p.Data, pattern(n, byte(n))) || p.AHS != nil {
						t.Fatalf("PDU %d: itt %d data % x", n, p.Header.ITT(), p.Data)
					}
				}
				if _, err := r.ReadPDU(); err != io.EOF {
					t.Fatalf("after last PDU: %v, want io.EOF", err)
				}

				// ReadHeader + ReadData into a caller buffer / DiscardData.
				r = NewReader(bytes.NewReader(wire))
				r.SetDigests(hd, dd)
				for n := 0; n < 10; n++ {
					hdr, err := r.ReadHeader()
					if err != nil {
						t.Fatalf("PDU %d: %v", n, err)
					}
					if n%2 == 0 {
						dst := make([]byte, hdr.BHS.DataSegmentLength())
						if err := r.ReadData(dst); err != nil {
							t.Fatalf("PDU %d data: %v", n, err)
						}
						if !bytes.Equal(dst, pattern(n, byte(n))) {
							t.Fatalf("PDU %d data % x", n, dst)
						}
					} else if n%4 == 1 {
						if err := r.DiscardData(); err != nil {
							t.Fatalf("PDU %d discard: %v", n, err)
						}
					} // else: ReadHeader skips it implicitly
				}
				if _, err := r.ReadHeader(); err != io.EOF {
					t.Fatalf("after last PDU: %v, want io.EOF", err)
				}
			})
		}
	}
}

func encodeOne(t testing.TB, hd, dd bool, h BHS, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.SetDigests(hd, dd)
	if err := w.WritePDU(&h, data); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestHeaderDigestMismatch(t *testing.T) {
	wire := encodeOne(t, true, false, testPDU(OpNOPOut, 1), []byte("abc"))
	wire[20] ^= 1 // corrupt the TTT
	r := NewReader(bytes.NewReader(wire))
	r.SetDigests(true, false)
	_, err := r.ReadHeader()
	var de *DigestError
	if !errors.As(err, &de) || !de.Header || de.Want == de.Got {
		t.Fatalf("err = %v, want header *DigestError", err)
	}
	// The stream is lost: the error sticks.
	if _, err2 := r.ReadPDU(); err2 != err {
		t.Fatalf("second read: %v, want the same error", err2)
	}
	// A corrupt digest (rather than header) is caught the same way.
	wire = encodeOne(t, true, false, testPDU(OpNOPOut, 1), nil)
	wire[49] ^= 0x80
	r = NewReader(bytes.NewReader(wire))
	r.SetDigests(true, false)
	if _, err := r.ReadHeader(); !errors.As(err, &de) || !de.Header {
		t.Fatalf("err = %v", err)
	}
}

func TestDataDigestMismatch(t *testing.T) {
	for _, mode := range []string{"ReadData", "ReadPDU", "DiscardData"} {
		t.Run(mode, func(t *testing.T) {
			first := encodeOne(t, false, true, testPDU(OpDataOut, 1), []byte("hello"))
			second := encodeOne(t, false, true, testPDU(OpDataOut, 2), []byte("world!"))
			first[BHSLength+1] ^= 0x20 // "hello" -> "hEllo"
			r := NewReader(bytes.NewReader(append(first, second...)))
			r.SetDigests(false, true)
			var err error
			switch mode {
			case "ReadData":
				if _, err = r.ReadHeader(); err != nil {
					t.Fatal(err)
				}
				err = r.ReadData(make([]byte, 5))
			case "ReadPDU":
				var p *PDU
				p, err = r.ReadPDU()
				if p == nil || p.Header.ITT() != 1 {
					t.Fatalf("ReadPDU must return the PDU with a data digest error, got %v", p)
				}
			case "DiscardData":
				if _, err = r.ReadHeader(); err != nil {
					t.Fatal(err)
				}
				err = r.DiscardData()
			}
			var de *DigestError
			if !errors.As(err, &de) || de.Header {
				t.Fatalf("err = %v, want data *DigestError", err)
			}
			// The data was consumed: the next PDU reads cleanly.
			p, err := r.ReadPDU()
			if err != nil || p.Header.ITT() != 2 || string(p.Data) != "world!" {
				t.Fatalf("next PDU: %v %v", p, err)
			}
		})
	}
}

// TestDataDigestCoversPadding: corrupting a padding byte is detected.
func TestDataDigestCoversPadding(t *testing.T) {
	wire := encodeOne(t, false, true, testPDU(OpDataOut, 1), []byte("abcde"))
	wire[BHSLength+6] = 0xff // padding bytes are BHSLength+5..7
	r := NewReader(bytes.NewReader(wire))
	r.SetDigests(false, true)
	var de *DigestError
	if _, err := r.ReadPDU(); !errors.As(err, &de) {
		t.Fatalf("err = %v, want *DigestError", err)
	}
}

func TestTruncated(t *testing.T) {
	h := testPDU(OpSCSICommand, 1)
	h[4] = 1 // one word of AHS
	for _, hd := range []bool{false, true} {
		for _, dd := range []bool{false, true} {
			// Hand-build: BHS, AHS, hdigest, data, pad, ddigest.
			ahs := []byte{0, 1, 0x3c, 0}
			data := []byte("xyz")
			h.setDataSegmentLength(len(data))
			wire := append(append([]byte{}, h[:]...), ahs...)
			if hd {
				crc := crc32.Update(crc32.Checksum(h[:], crc32cTable), crc32cTable, ahs)
				wire = binary.LittleEndian.AppendUint32(wire, crc)
			}
			wire = append(wire, data...)
			wire = append(wire, 0)
			if dd {
				wire = binary.LittleEndian.AppendUint32(wire, crc32.Checksum(append(append([]byte{}, data...), 0), crc32cTable))
			}
			r := NewReader(bytes.NewReader(wire))
			r.SetDigests(hd, dd)
			if p, err := r.ReadPDU(); err != nil || string(p.Data) != "xyz" || len(p.AHS) != 4 {
				t.Fatalf("hd=%v dd=%v: full PDU: %v %v", hd, dd, p, err)
			}
			for cut := 1; cut < len(wire); cut++ {
				r := NewReader(bytes.NewReader(wire[:cut]))
				r.SetDigests(hd, dd)
				if _, err := r.ReadPDU(); err != io.ErrUnexpectedEOF {
					t.Errorf("hd=%v dd=%v cut at %d of %d: err = %v, want io.ErrUnexpectedEOF", hd, dd, cut, len(wire), err)
				}
			}
		}
	}
}

func TestOversizeSegment(t *testing.T) {
	wire := encodeOne(t, false, false, testPDU(OpDataOut, 1), make([]byte, 513))
	r := NewReader(bytes.NewReader(wire))
	r.SetMaxRecvDataSegmentLength(512)
	var pe *ProtocolError
	if _, err := r.ReadHeader(); !errors.As(err, &pe) {
		t.Fatalf("err = %v, want *ProtocolError", err)
	}

	// The login-time default is 8192.
	wire = encodeOne(t, false, false, testPDU(OpLoginRequest, 1), make([]byte, 8193))
	if _, err := NewReader(bytes.NewReader(wire)).ReadPDU(); !errors.As(err, &pe) {
		t.Fatalf("8193 bytes at login: err = %v", err)
	}
	wire = encodeOne(t, false, false, testPDU(OpLoginRequest, 1), make([]byte, 8192))
	if _, err := NewReader(bytes.NewReader(wire)).ReadPDU(); err != nil {
		t.Fatalf("8192 bytes at login: %v", err)
	}
	// 0 lifts the limit.
	wire = encodeOne(t, false, false, testPDU(OpDataOut, 1), make([]byte, 100000))
	r = NewReader(bytes.NewReader(wire))
	r.SetMaxRecvDataSegmentLength(0)
	if p, err := r.ReadPDU(); err != nil || len(p.Data) != 100000 {
		t.Fatalf("no limit: %v", err)
	}
}

func TestMalformedAHSInStream(t *testing.T) {
	h := testPDU(OpSCSICommand, 1)
	h[4] = 1
	wire := append(h[:], 0x00, 0x09, AHSExtendedCDB, 0) // AHSLength 9 > 1 word
	r := NewReader(bytes.NewReader(wire))
	var pe *ProtocolError
	if _, err := r.ReadHeader(); !errors.As(err, &pe) {
		t.Fatalf("err = %v, want *ProtocolError", err)
	}
}

func TestReadDataMisuse(t *testing.T) {
	wire := encodeOne(t, false, false, testPDU(OpDataOut, 1), []byte("12345678"))
	r := NewReader(bytes.NewReader(wire))
	if err := r.ReadData(nil); err == nil {
		t.Fatal("ReadData before ReadHeader succeeded")
	}
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	if err := r.ReadData(make([]byte, 4)); err == nil {
		t.Fatal("short buffer accepted")
	}
	dst := make([]byte, 8)
	if err := r.ReadData(dst); err != nil || string(dst) != "12345678" {
		t.Fatalf("ReadData after misuse: %v %q", err, dst)
	}
}

func TestWriterOversize(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	h := testPDU(OpDataIn, 1)
	w.Queue(&h, make([]byte, MaxDataSegmentLength+1))
	if err := w.Flush(); err == nil {
		t.Fatal("oversize segment accepted")
	}
	if buf.Len() != 0 {
		t.Fatalf("%d bytes written for a failed batch", buf.Len())
	}
	// The Writer recovers for the next batch.
	if err := w.WritePDU(&h, []byte("ok")); err != nil {
		t.Fatal(err)
	}
}

// TestWriterTCP sends a batch over a real loopback TCP connection, where
// net.Buffers uses writev, and reads it with a Reader on the other side.
func TestWriterTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback TCP: %v", err)
	}
	defer ln.Close()
	const count = 200
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		r := NewReader(c)
		r.SetDigests(true, true)
		r.SetMaxRecvDataSegmentLength(1 << 20)
		for i := 0; i < count; i++ {
			p, err := r.ReadPDU()
			if err != nil {
				done <- fmt.Errorf("PDU %d: %w", i, err)
				return
			}
			if p.Header.ITT() != uint32(i) || !bytes.Equal(p.Data, pattern(i*37, byte(i))) {
				done <- fmt.Errorf("PDU %d: itt %d, %d data bytes", i, p.Header.ITT(), len(p.Data))
				return
			}
		}
		done <- nil
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := NewWriter(c)
	w.SetDigests(true, true)
	for i := 0; i < count; i++ {
		h := testPDU(OpDataIn, uint32(i))
		w.Queue(&h, pattern(i*37, byte(i)))
		if i%50 == 49 {
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// loopReader replays the same bytes forever.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.data[l.off:])
	l.off = (l.off + n) % len(l.data)
	return n, nil
}

// TestSteadyStateAllocs enforces the hot-path contract: no allocation per
// PDU once buffers have grown.
func TestSteadyStateAllocs(t *testing.T) {
	data := make([]byte, 4097)
	w := NewWriter(io.Discard)
	w.SetDigests(true, true)
	h := testPDU(OpDataIn, 1)
	if a := testing.AllocsPerRun(100, func() {
		for i := 0; i < 8; i++ {
			w.Queue(&h, data)
		}
		_ = w.Flush()
	}); a != 0 {
		t.Errorf("Writer: %v allocs per batch", a)
	}

	wire := encodeOne(t, true, true, testPDU(OpDataOut, 1), data)
	r := NewReader(&loopReader{data: wire})
	r.SetDigests(true, true)
	r.SetMaxRecvDataSegmentLength(8192)
	dst := make([]byte, len(data))
	if a := testing.AllocsPerRun(100, func() {
		if _, err := r.ReadHeader(); err != nil {
			t.Fatal(err)
		}
		if err := r.ReadData(dst); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("Reader: %v allocs per PDU", a)
	}
}

func benchmarkWriter(b *testing.B, size int, digests bool) {
	data := make([]byte, size)
	w := NewWriter(io.Discard)
	w.SetDigests(digests, digests)
	h := testPDU(OpDataIn, 1)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		w.Queue(&h, data)
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWriter8K(b *testing.B)         { benchmarkWriter(b, 8192, false) }
func BenchmarkWriter8KDigests(b *testing.B)  { benchmarkWriter(b, 8192, true) }
func BenchmarkWriter256K(b *testing.B)       { benchmarkWriter(b, 262144, false) }
func BenchmarkWriterNoData(b *testing.B)     { benchmarkWriter(b, 0, false) }
func BenchmarkReader8K(b *testing.B)         { benchmarkReader(b, 8192, false) }
func BenchmarkReader8KDigests(b *testing.B)  { benchmarkReader(b, 8192, true) }
func BenchmarkReader256K(b *testing.B)       { benchmarkReader(b, 262144, false) }
func BenchmarkReaderHeaderOnly(b *testing.B) { benchmarkReader(b, 0, false) }

func benchmarkReader(b *testing.B, size int, digests bool) {
	wire := encodeOne(b, digests, digests, testPDU(OpDataOut, 1), make([]byte, size))
	r := NewReader(&loopReader{data: wire})
	r.SetDigests(digests, digests)
	r.SetMaxRecvDataSegmentLength(0)
	dst := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.ReadHeader(); err != nil {
			b.Fatal(err)
		}
		if err := r.ReadData(dst); err != nil {
			b.Fatal(err)
		}
	}
}
