package pr

import "testing"

func FuzzParseOut(f *testing.F) {
	f.Add(uint8(0), byte(0), make([]byte, 24))
	f.Add(uint8(7), byte(1), append(make([]byte, 24), (&Registrant{Initiator: "iqn.d", HasISID: true}).TransportID()...))
	f.Add(uint8(0), byte(0), append(append(make([]byte, 20), 0x08, 0, 0, 0, 0, 0, 0, 20), (&Registrant{Initiator: "iqn.b"}).TransportID()...))
	f.Fuzz(func(t *testing.T, sa uint8, scopeType byte, param []byte) {
		r, err := ParseOut(ServiceAction(sa&0x1F), scopeType, param)
		if err != nil {
			return
		}
		s, _ := New("")
		s.Out(nexA, r) // must not panic
		for _, a := range []uint8{ReadKeys, ReadReservation, ReportCapabilities, ReadFullStatus} {
			s.In(a)
		}
	})
}

func FuzzDecodeState(f *testing.F) {
	st := snapshot{Generation: 3, Regs: []Registrant{{Key: 1, Initiator: "iqn.a", ISID: nexA.ISID, HasISID: true, Target: tgt, TPGT: 1}},
		Reserved: true, Type: WriteExclusive, Holder: 0, APTPL: true}
	b, _ := encode(&st)
	f.Add(b)
	f.Add([]byte(`{"version":1,"registrants":[],"holder":-1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := decode(data)
		if err != nil {
			return
		}
		// A state that loads is consistent: every query works on it.
		s := &State{st: st}
		s.updateActiveLocked()
		for _, a := range []uint8{ReadKeys, ReadReservation, ReportCapabilities, ReadFullStatus} {
			s.In(a)
		}
		s.Conflicts(nexB, Write)
	})
}
