package pr

import "encoding/binary"

// PERSISTENT RESERVE IN service actions (SPC-5 6.16.1).
const (
	ReadKeys           = 0x0
	ReadReservation    = 0x1
	ReportCapabilities = 0x2
	ReadFullStatus     = 0x3
)

// PortID gives a target port's RELATIVE TARGET PORT IDENTIFIER for READ
// FULL STATUS. Blockport uses the target portal group tag.
func PortID(tpgt uint16) uint16 { return tpgt }

// In builds the parameter data of a PERSISTENT RESERVE IN service action
// (READ KEYS, READ RESERVATION, REPORT CAPABILITIES, READ FULL STATUS). The
// caller truncates it to the allocation length; the length fields keep
// the full size, as SPC-5 requires.
func (s *State) In(sa uint8) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &s.st
	switch sa {
	case ReadKeys:
		// SPC-5 6.16.2.
		b := make([]byte, 8, 8+8*len(st.Regs))
		binary.BigEndian.PutUint32(b[0:4], st.Generation)
		binary.BigEndian.PutUint32(b[4:8], uint32(8*len(st.Regs)))
		for _, r := range st.Regs {
			b = binary.BigEndian.AppendUint64(b, r.Key)
		}
		return b
	case ReadReservation:
		// SPC-5 6.16.3.
		b := make([]byte, 8)
		binary.BigEndian.PutUint32(b[0:4], st.Generation)
		if !st.Reserved {
			return b
		}
		binary.BigEndian.PutUint32(b[4:8], 16)
		d := make([]byte, 16)
		if !st.Type.allRegistrants() {
			// All-registrants reservations report key 0 (SPC-5 5.14.10).
			binary.BigEndian.PutUint64(d[0:8], st.Regs[st.Holder].Key)
		}
		d[13] = scopeLU<<4 | byte(st.Type)
		return append(b, d...)
	case ReportCapabilities:
		// SPC-5 6.16.4: CRH (compatible reservation handling), SIP_C,
		// ATP_C, PTPL_C; TMV with ALLOW COMMANDS 001b (TEST UNIT READY is
		// allowed under Exclusive Access); PTPL_A; every type.
		b := make([]byte, 8)
		binary.BigEndian.PutUint16(b[0:2], 8)
		b[2] = 0x10 | 0x08 | 0x04 | 0x01
		b[3] = 0x80 | 0x01<<4
		if st.APTPL {
			b[3] |= 0x01
		}
		binary.BigEndian.PutUint16(b[4:6], 0xEA01)
		return b
	case ReadFullStatus:
		// SPC-5 6.16.5: one descriptor per registration.
		b := make([]byte, 8)
		binary.BigEndian.PutUint32(b[0:4], st.Generation)
		for j := range st.Regs {
			r := &st.Regs[j]
			tid := r.TransportID()
			d := make([]byte, 24, 24+len(tid))
			binary.BigEndian.PutUint64(d[0:8], r.Key)
			if r.AllTargetPorts {
				d[12] |= 0x02
			}
			if st.holds(j) {
				d[12] |= 0x01
				d[13] = scopeLU<<4 | byte(st.Type)
			}
			if !r.AllTargetPorts {
				binary.BigEndian.PutUint16(d[18:20], PortID(r.TPGT))
			}
			binary.BigEndian.PutUint32(d[20:24], uint32(len(tid)))
			b = append(append(b, d...), tid...)
		}
		binary.BigEndian.PutUint32(b[4:8], uint32(len(b)-8))
		return b
	}
	return nil
}
