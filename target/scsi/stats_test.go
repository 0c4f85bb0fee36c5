package scsi

import (
	"context"
	"testing"
	"time"

	"github.com/blockport/blockport/target/scsi/sense"
)

// complete runs a command as the fabric does and accounts it.
func complete(t testing.TB, d *Device, n *Nexus, cdb, dataOut []byte, edtl uint32, elapsed time.Duration) {
	t.Helper()
	cmd := &Command{Nexus: n, LUN: 0, CDB: cdb, Attr: TaskSimple, ExpectedLength: edtl}
	var nIn int
	err := d.Prepare(cmd)
	if err == nil {
		switch cmd.Dir {
		case DirRead:
			cmd.Data = make([]byte, cmd.TransferLength)
		case DirWrite:
			cmd.Data = dataOut
		}
		nIn, err = d.Execute(context.Background(), cmd)
	}
	d.Completed(cmd, nIn, err, elapsed)
}

func TestLUStats(t *testing.T) {
	d, lu, _ := newTestDevice(t, 1024, 512)
	n := &Nexus{Initiator: "iqn.2026-11.test:i", Target: "t"}
	clearUA(t, d, n, 0) // consumes the power-on UA (counted as UNIT ATTENTION)
	base := lu.Stats()

	complete(t, d, n, cdb10(opWrite10, 0, 0, 8), fill(4096, 0xaa), 4096, 300*time.Microsecond)
	complete(t, d, n, cdb10(opRead10, 0, 0, 4), nil, 2048, 40*time.Microsecond)
	complete(t, d, n, []byte{opTestUnitReady, 0, 0, 0, 0, 0}, nil, 0, 20*time.Second)
	complete(t, d, n, cdb10(opRead10, 0, 5000, 1), nil, 512, time.Millisecond) // LBA out of range
	// A command to a LUN with no LU is not counted.
	d.Completed(&Command{Nexus: n, LUN: 7, CDB: []byte{opTestUnitReady, 0, 0, 0, 0, 0}}, 0, sense.LUNotSupported(), time.Millisecond)

	st := lu.Stats()
	diff := func(a, b uint64) uint64 { return a - b }
	tests := []struct {
		name      string
		got, want uint64
	}{
		{"write commands", diff(st.Commands[DirWrite], base.Commands[DirWrite]), 1},
		{"read commands", diff(st.Commands[DirRead], base.Commands[DirRead]), 2},
		{"no-data commands", diff(st.Commands[DirNone], base.Commands[DirNone]), 1},
		{"write bytes", diff(st.Bytes[DirWrite], base.Bytes[DirWrite]), 4096},
		{"read bytes (failed read not counted)", diff(st.Bytes[DirRead], base.Bytes[DirRead]), 2048},
		{"illegal request", diff(st.SenseKeys[sense.KeyIllegalRequest], base.SenseKeys[sense.KeyIllegalRequest]), 1},
		{"write latency count", diff(st.Latency[ClassWrite].Count, base.Latency[ClassWrite].Count), 1},
		{"read latency count", diff(st.Latency[ClassRead].Count, base.Latency[ClassRead].Count), 2},
		{"other latency count", diff(st.Latency[ClassOther].Count, base.Latency[ClassOther].Count), 1},
		// 300µs falls in (250µs, 500µs]: bucket 4.
		{"write bucket 500us", diff(st.Latency[ClassWrite].Counts[4], base.Latency[ClassWrite].Counts[4]), 1},
		// 20 s is above every bound: the last bucket.
		{"other overflow bucket", diff(st.Latency[ClassOther].Counts[len(LatencyBounds)], base.Latency[ClassOther].Counts[len(LatencyBounds)]), 1},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %d, want %d", tt.name, tt.got, tt.want)
		}
	}
	if got := st.Latency[ClassWrite].Sum - base.Latency[ClassWrite].Sum; got != 300*time.Microsecond {
		t.Errorf("write latency sum = %v", got)
	}
	if st.ReservationConflicts != 0 {
		t.Errorf("reservation conflicts = %d", st.ReservationConflicts)
	}
	d.Completed(&Command{Nexus: n, LUN: 0, CDB: cdb10(opWrite10, 0, 0, 1), lu: lu}, 0, StatusError(StatusReservationConflict), 0)
	d.Completed(&Command{Nexus: n, LUN: 0, CDB: cdb10(opWrite10, 0, 0, 1), lu: lu}, 0, StatusError(StatusBusy), 0)
	if st := lu.Stats(); st.ReservationConflicts != 1 || st.OtherStatus != 1 {
		t.Errorf("conflicts %d other %d, want 1 and 1", st.ReservationConflicts, st.OtherStatus)
	}
}

// BenchmarkRead4K measures a 4 KiB READ(10) through Prepare and Execute,
// with and without the accounting the fabric adds (time.Now at arrival,
// Completed at the answer). The difference is the cost of metrics.
func BenchmarkRead4K(b *testing.B) {
	for _, withStats := range []bool{false, true} {
		name := "stats=off"
		if withStats {
			name = "stats=on"
		}
		b.Run(name, func(b *testing.B) {
			d, _, _ := newTestDevice(b, 1<<16, 512)
			n := &Nexus{Initiator: "iqn.2026-11.test:i", Target: "t"}
			clearUA(b, d, n, 0)
			buf := make([]byte, 4096)
			cdb := cdb10(opRead10, 0, 0, 8)
			cmd := &Command{}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				var start time.Time
				if withStats {
					start = time.Now()
				}
				*cmd = Command{Nexus: n, LUN: 0, CDB: cdb, Attr: TaskSimple, ExpectedLength: 4096}
				if err := d.Prepare(cmd); err != nil {
					b.Fatal(err)
				}
				cmd.Data = buf
				nIn, err := d.Execute(context.Background(), cmd)
				if err != nil {
					b.Fatal(err)
				}
				if withStats {
					d.Completed(cmd, nIn, err, time.Since(start))
				}
			}
		})
	}
}

// BenchmarkAccounting is the whole per-command cost of metrics: the clock
// read at arrival and Completed at the answer.
func BenchmarkAccounting(b *testing.B) {
	d, _, _ := newTestDevice(b, 1<<16, 512)
	n := &Nexus{Initiator: "iqn.2026-11.test:i", Target: "t"}
	clearUA(b, d, n, 0)
	cmd := &Command{Nexus: n, LUN: 0, CDB: cdb10(opRead10, 0, 0, 8), Attr: TaskSimple, ExpectedLength: 4096}
	if err := d.Prepare(cmd); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		d.Completed(cmd, 4096, nil, time.Since(start))
	}
}
