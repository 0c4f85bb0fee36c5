package iscsi

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
)

// crc32cTable is the Castagnoli table used for both digests (RFC 7143
// 13.1: CRC32C, generator polynomial 0x1EDC6F41). MakeTable selects the
// hardware implementation where the CPU has one.
var crc32cTable = crc32.MakeTable(crc32.Castagnoli)

// digestLength is the size of a header or data digest on the wire.
const digestLength = 4

// readerBufferSize is the bufio buffer of a Reader: large enough that a
// burst of small command PDUs costs one read(2), while a Data-Out payload of
// at least this size bypasses the buffer and lands in the caller's slice.
const readerBufferSize = 64 << 10

// DefaultLoginDataSegmentLength is the limit a new Reader enforces: RFC 7143
// 13.12 makes 8192 the default MaxRecvDataSegmentLength, and it is the value
// in force during login, before any declaration has taken effect.
const DefaultLoginDataSegmentLength = 8192

// padLength returns the number of zero bytes that pad n to 4 (RFC 7143
// 11.1: every segment ends on a 4-byte boundary).
func padLength(n int) int { return -n & 3 }

// DigestError reports a CRC32C mismatch. A header digest error must close
// the connection (RFC 7143 7.8: the header, including its lengths, cannot
// be trusted); after a data digest error the data segment has been fully
// consumed and the connection can go on after a Reject (reason
// RejectDataDigestError) or a recovery action.
type DigestError struct {
	Header    bool
	Want, Got uint32 // Want is computed locally, Got came off the wire
}

func (e *DigestError) Error() string {
	which := "data"
	if e.Header {
		which = "header"
	}
	return fmt.Sprintf("iscsi: %s digest mismatch: computed CRC32C 0x%08x, PDU carries 0x%08x", which, e.Want, e.Got)
}

// ProtocolError reports a PDU that violates the framing rules (segment
// longer than MaxRecvDataSegmentLength, malformed AHS...). The byte stream
// can no longer be trusted and the connection must be closed.
type ProtocolError struct {
	Reason string
}

func (e *ProtocolError) Error() string { return "iscsi: protocol error: " + e.Reason }

// Header is the part of a PDU read by ReadHeader.
type Header struct {
	BHS BHS
	AHS []byte // the whole AHS segment (TotalAHSLength bytes), nil if none
}

// PDU is a complete PDU returned by ReadPDU.
type PDU struct {
	Header    BHS
	AHS, Data []byte
}

// Reader decodes PDUs from a byte stream. It is not safe for concurrent use:
// it is owned by the connection's reader goroutine.
type Reader struct {
	br             *bufio.Reader
	headerDigest   bool
	dataDigest     bool
	maxDataSegment int // 0: only the 24-bit field limits the length

	hdr     Header
	ahsBuf  [255 * 4]byte // TotalAHSLength is one byte of 4-byte words
	pending int           // data segment length still to consume; -1 when none
	err     error         // sticky: after a header-level failure the stream is lost

	pdu     PDU
	dataBuf []byte // reused by ReadPDU
	scratch [digestLength]byte
}

// Buffered is how many bytes the Reader holds that it has read from the
// stream but not yet returned in a PDU.
func (r *Reader) Buffered() int { return r.br.Buffered() }

// NewReader returns a Reader with digests off and the login-time data
// segment limit (DefaultLoginDataSegmentLength).
func NewReader(r io.Reader) *Reader {
	return &Reader{
		br:             bufio.NewReaderSize(r, readerBufferSize),
		maxDataSegment: DefaultLoginDataSegmentLength,
		pending:        -1,
	}
}

// SetDigests turns CRC32C header and data digests on or off. RFC 7143
// 13.1: digests take effect for the first PDU after the Login Response that
// concluded the negotiation.
func (r *Reader) SetDigests(header, data bool) {
	r.headerDigest, r.dataDigest = header, data
}

// SetMaxRecvDataSegmentLength sets the longest data segment accepted; a
// longer one is a *ProtocolError (RFC 7143 13.12). n <= 0 removes the limit
// except for the 24-bit field itself (16 MiB - 1) and should be used only by
// tools: a target keeps the 8192 default during login and then sets its
// declared MaxRecvDataSegmentLength.
func (r *Reader) SetMaxRecvDataSegmentLength(n int) {
	if n < 0 {
		n = 0
	}
	r.maxDataSegment = n
}

// unexpected turns a clean EOF inside a PDU into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// ReadHeader reads the next BHS, its AHS and its header digest, and checks
// the digest and the declared data segment length. The result is valid until
// the next call. Data of the previous PDU not read with ReadData is skipped.
// A clean end of stream before the first byte of a PDU returns io.EOF.
func (r *Reader) ReadHeader() (*Header, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.pending >= 0 {
		if err := r.DiscardData(); err != nil {
			var de *DigestError
			if !errors.As(err, &de) {
				return nil, err
			}
			// A data digest error on skipped data has nothing to reject:
			// the caller chose not to look at it.
		}
	}
	h := &r.hdr
	if _, err := io.ReadFull(r.br, h.BHS[:]); err != nil {
		if !errors.Is(err, io.EOF) {
			r.err = err
		}
		return nil, err
	}
	ahsLen := h.BHS.TotalAHSLength()
	h.AHS = nil
	if ahsLen > 0 {
		h.AHS = r.ahsBuf[:ahsLen]
		if _, err := io.ReadFull(r.br, h.AHS); err != nil {
			r.err = unexpected(err)
			return nil, r.err
		}
	}
	if r.headerDigest {
		if _, err := io.ReadFull(r.br, r.scratch[:]); err != nil {
			r.err = unexpected(err)
			return nil, r.err
		}
		// RFC 7143 11.1: the header digest covers the BHS and the AHS.
		want := crc32.Update(0, crc32cTable, h.BHS[:])
		want = crc32.Update(want, crc32cTable, h.AHS)
		if got := binary.LittleEndian.Uint32(r.scratch[:]); got != want {
			r.err = &DigestError{Header: true, Want: want, Got: got}
			return nil, r.err
		}
	}
	if ahsLen > 0 {
		if err := ValidateAHS(h.AHS); err != nil {
			r.err = err
			return nil, err
		}
	}
	n := h.BHS.DataSegmentLength()
	if r.maxDataSegment > 0 && n > r.maxDataSegment {
		r.err = &ProtocolError{Reason: fmt.Sprintf("%v data segment of %d bytes exceeds MaxRecvDataSegmentLength %d", h.BHS.Opcode(), n, r.maxDataSegment)}
		return nil, r.err
	}
	r.pending = n
	return h, nil
}

// ReadData reads the data segment announced by the last header into dst,
// whose length must equal its DataSegmentLength, then consumes the padding
// and checks the data digest. On a *DigestError the segment has been fully
// consumed and dst holds the (corrupt) bytes as received.
func (r *Reader) ReadData(dst []byte) error {
	if r.err != nil {
		return r.err
	}
	if r.pending < 0 {
		return errors.New("iscsi: ReadData called without a header whose data is pending")
	}
	if len(dst) != r.pending {
		return fmt.Errorf("iscsi: ReadData buffer is %d bytes, data segment is %d", len(dst), r.pending)
	}
	r.pending = -1
	if len(dst) == 0 {
		// RFC 7143 11.1: a zero-length segment has neither padding nor digest.
		return nil
	}
	if _, err := io.ReadFull(r.br, dst); err != nil {
		r.err = unexpected(err)
		return r.err
	}
	return r.finishData(dst)
}

// DiscardData skips the data segment announced by the last header, still
// checking its digest so that corruption is reported the same way.
func (r *Reader) DiscardData() error {
	if r.err != nil {
		return r.err
	}
	if r.pending < 0 {
		return nil
	}
	n := r.pending
	r.pending = -1
	if n == 0 {
		return nil
	}
	var crc uint32
	for left := n; left > 0; {
		chunk, err := r.br.Peek(min(left, r.br.Size()))
		if len(chunk) == 0 && err != nil {
			r.err = unexpected(err)
			return r.err
		}
		if r.dataDigest {
			crc = crc32.Update(crc, crc32cTable, chunk)
		}
		_, _ = r.br.Discard(len(chunk)) // cannot fail: the bytes are buffered
		left -= len(chunk)
	}
	return r.finishDataCRC(n, crc)
}

// finishData consumes padding and digest after data read into dst.
func (r *Reader) finishData(dst []byte) error {
	var crc uint32
	if r.dataDigest {
		crc = crc32.Update(0, crc32cTable, dst)
	}
	return r.finishDataCRC(len(dst), crc)
}

// finishDataCRC consumes the padding of an n-byte segment and, with data
// digests on, compares the digest with crc extended over the padding.
func (r *Reader) finishDataCRC(n int, crc uint32) error {
	pad := r.scratch[:padLength(n)]
	if len(pad) > 0 {
		if _, err := io.ReadFull(r.br, pad); err != nil {
			r.err = unexpected(err)
			return r.err
		}
	}
	if !r.dataDigest {
		return nil
	}
	// RFC 7143 11.1: the data digest covers the data and its padding.
	crc = crc32.Update(crc, crc32cTable, pad)
	if _, err := io.ReadFull(r.br, r.scratch[:]); err != nil {
		r.err = unexpected(err)
		return r.err
	}
	if got := binary.LittleEndian.Uint32(r.scratch[:]); got != crc {
		return &DigestError{Want: crc, Got: got}
	}
	return nil
}

// ReadPDU reads a whole PDU into a buffer owned by the Reader. The result is
// valid until the next call to any read method. On a data *DigestError the
// PDU is returned too, so the caller can copy its BHS into a Reject.
func (r *Reader) ReadPDU() (*PDU, error) {
	h, err := r.ReadHeader()
	if err != nil {
		return nil, err
	}
	n := h.BHS.DataSegmentLength()
	if cap(r.dataBuf) < n {
		r.dataBuf = make([]byte, n)
	}
	r.pdu.Header = h.BHS
	r.pdu.AHS = h.AHS
	r.pdu.Data = r.dataBuf[:n]
	if err := r.ReadData(r.pdu.Data); err != nil {
		var de *DigestError
		if errors.As(err, &de) {
			return &r.pdu, err
		}
		return nil, err
	}
	return &r.pdu, nil
}

// Writer encodes PDUs and sends them in batches with one writev. It is not
// safe for concurrent use: it is owned by the connection's writer goroutine.
type Writer struct {
	w            io.Writer
	headerDigest bool
	dataDigest   bool

	arena []byte    // copied headers, padding and digests of queued PDUs
	segs  []segment // what to send, in order
	iov   net.Buffers
	out   net.Buffers // the slice WriteTo consumes; a field so Flush does not allocate
	err   error       // a Queue failure, reported by the next Flush
}

// segment is either a range of the arena or a caller-owned slice. Ranges are
// kept as offsets because the arena may move while PDUs are queued.
type segment struct {
	data       []byte
	start, end int
}

// NewWriter returns a Writer with digests off.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, arena: make([]byte, 0, 4096)}
}

// SetDigests turns CRC32C header and data digests on or off for PDUs
// queued from now on.
func (w *Writer) SetDigests(header, data bool) {
	w.headerDigest, w.dataDigest = header, data
}

var zeroPad [3]byte

// addArena queues arena[start:], merging with a preceding arena range.
func (w *Writer) addArena(start int) {
	end := len(w.arena)
	if start == end {
		return
	}
	if k := len(w.segs) - 1; k >= 0 && w.segs[k].data == nil && w.segs[k].end == start {
		w.segs[k].end = end
		return
	}
	w.segs = append(w.segs, segment{start: start, end: end})
}

// Queue appends one PDU: it sets the lengths in h (TotalAHSLength 0: a
// target sends no AHS) and copies h into the Writer, while data is only
// referenced and must stay unchanged until Flush returns.
func (w *Writer) Queue(h *BHS, data []byte) {
	if len(data) > MaxDataSegmentLength {
		if w.err == nil {
			w.err = fmt.Errorf("iscsi: %v data segment of %d bytes does not fit the 24-bit DataSegmentLength", h.Opcode(), len(data))
		}
		return
	}
	h[4] = 0
	h.setDataSegmentLength(len(data))

	start := len(w.arena)
	w.arena = append(w.arena, h[:]...)
	if w.headerDigest {
		w.arena = binary.LittleEndian.AppendUint32(w.arena, crc32.Checksum(h[:], crc32cTable))
	}
	if len(data) == 0 {
		w.addArena(start)
		return
	}
	w.addArena(start)
	w.segs = append(w.segs, segment{data: data})

	start = len(w.arena)
	pad := zeroPad[:padLength(len(data))]
	w.arena = append(w.arena, pad...)
	if w.dataDigest {
		crc := crc32.Update(0, crc32cTable, data)
		crc = crc32.Update(crc, crc32cTable, pad)
		w.arena = binary.LittleEndian.AppendUint32(w.arena, crc)
	}
	w.addArena(start)
}

// Flush writes everything queued with one writev (the destination's
// WriteBuffers, else net.Buffers.WriteTo) and then recycles the arena. After an error the
// connection is unusable; the queue is dropped either way.
func (w *Writer) Flush() error {
	if err := w.err; err != nil {
		w.reset()
		w.err = nil
		return err
	}
	if len(w.segs) == 0 {
		return nil
	}
	w.iov = w.iov[:0]
	for _, s := range w.segs {
		if s.data != nil {
			w.iov = append(w.iov, s.data)
		} else {
			w.iov = append(w.iov, w.arena[s.start:s.end])
		}
	}
	var err error
	if bw, ok := w.w.(buffersWriter); ok {
		err = bw.WriteBuffers(w.iov)
	} else {
		w.out = w.iov
		_, err = w.out.WriteTo(w.w)
	}
	w.reset()
	return err
}

// buffersWriter is a destination that writes a list of buffers in one
// go itself (rawSocket); Flush uses it instead of net.Buffers.WriteTo.
type buffersWriter interface {
	WriteBuffers(bufs [][]byte) error
}

// reset empties the queue and drops references to caller data.
func (w *Writer) reset() {
	clear(w.iov[:cap(w.iov)])
	w.iov = w.iov[:0]
	w.out = nil
	clear(w.segs)
	w.segs = w.segs[:0]
	w.arena = w.arena[:0]
}

// WritePDU queues one PDU and flushes.
func (w *Writer) WritePDU(h *BHS, data []byte) error {
	w.Queue(h, data)
	return w.Flush()
}
