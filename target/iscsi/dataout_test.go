package iscsi

import (
	"testing"
	"time"

	"github.com/blockport/blockport/backstore"
	"github.com/blockport/blockport/target/scsi"
)

// slowStore takes a moment over each write, on an executor goroutine (it
// is not backstore.Immediate), so that a command is still executing, or
// just completing, when the next PDU is read.
type slowStore struct{ backstore.Backstore }

func (s slowStore) WriteAt(p []byte, off int64, fua bool) (int, error) {
	time.Sleep(20 * time.Microsecond)
	return s.Backstore.WriteAt(p, off, fua)
}

// TestStrayDataOutForExecutingTask sends, right behind each WRITE whose
// data came whole as immediate data, an unsolicited Data-Out with the same
// ITT. The write executes (or completes, and its task is reused) while
// the reader looks that Data-Out up: it must be dropped, the write answered
// GOOD and the connection kept. The reader reads the task's state under
// the lock it looks the task up with; a completed task is zeroed for reuse,
// so reading it after letting go of the lock could take a reused task for
// one still receiving (a window of nanoseconds this test does not hit
// reliably; it covers the dropping).
func TestStrayDataOutForExecutingTask(t *testing.T) {
	f := startFabricWith(t, Options{}, func(tg *Target) {
		mem, err := backstore.Open(backstore.Options{Kind: "memory", Size: 1 << 20, BlockSize: 512})
		if err != nil {
			t.Fatal(err)
		}
		lu, err := scsi.NewLU(scsi.LUConfig{Backstore: slowStore{mem}, BlockSize: 512, Serial: "slow", NAA: scsi.NewNAA([]byte("slow"))})
		if err != nil {
			t.Fatal(err)
		}
		if err := tg.Device.AddLU(1, lu); err != nil {
			t.Fatal(err)
		}
	})
	in := dial(t, f)
	in.mustLogin(KeyValue{Key: "ImmediateData", Value: "Yes"}, KeyValue{Key: "InitialR2T", Value: "No"})
	in.lun = rawLUN(1)
	in.clearUA()
	data := make([]byte, 512)
	for i := range 300 {
		itt := in.itt
		in.itt++
		var cdb [16]byte
		copy(cdb[:], write10(uint32(i%100), 1))
		req := SCSICommand{Final: true, Write: true, Attr: TaskAttrSimple, LUN: in.lun, ITT: itt,
			ExpectedDataTransferLength: 512, CmdSN: in.cmdSN, ExpStatSN: in.expSN, CDB: cdb}
		in.cmdSN++
		var h BHS
		req.Encode(&h)
		in.w.Queue(&h, data)
		stray := DataOut{Final: true, ITT: itt, TTT: 0xffffffff, DataSN: 0, BufferOffset: 0, ExpStatSN: in.expSN}
		var dh BHS
		stray.Encode(&dh)
		in.w.Queue(&dh, data)
		if err := in.w.Flush(); err != nil {
			t.Fatal(err)
		}
		in.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			pdu, err := in.r.ReadPDU()
			if err != nil {
				t.Fatalf("write %d: the connection failed: %v", i, err)
			}
			if pdu.Header.Opcode() != OpSCSIResponse {
				continue
			}
			resp := pdu.Header.SCSIResponse()
			if resp.ITT != itt || resp.Status != 0 {
				t.Fatalf("write %d: response for ITT %#x status %#x, want ITT %#x GOOD", i, resp.ITT, resp.Status, itt)
			}
			in.expSN = resp.StatSN + 1
			break
		}
	}
}
