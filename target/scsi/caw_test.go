package scsi

import (
	"bytes"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/blockport/blockport/target/scsi/sense"
)

func cawCDB(flags byte, lba uint64, n uint8) []byte {
	c := make([]byte, 16)
	c[0], c[1] = opCompareAndWrite, flags
	binary.BigEndian.PutUint64(c[2:10], lba)
	c[13] = n
	return c
}

func atomicCDB(flags byte, lba uint64, n uint16) []byte {
	c := make([]byte, 16)
	c[0], c[1] = opWriteAtomic16, flags
	binary.BigEndian.PutUint64(c[2:10], lba)
	binary.BigEndian.PutUint16(c[12:14], n)
	return c
}

func TestCompareAndWrite(t *testing.T) {
	const bs = 512
	d, _, st := newTestDevice(t, 64, bs)
	clearUA(t, d, nexusA, 0)
	old := bytes.Repeat([]byte{'A'}, 2*bs)
	run(t, d, nexusA, 0, cdb10(opWrite10, 0, 4, 2), old, 2*bs).check(t, good)

	payload := append(bytes.Repeat([]byte{'A'}, 2*bs), bytes.Repeat([]byte{'B'}, 2*bs)...)
	tests := []struct {
		name string
		cdb  []byte
		data []byte
		edtl uint32
		want want
		info uint64 // INFORMATION of a miscompare
	}{
		{"match writes", cawCDB(0, 4, 2), payload, 4 * bs, good, 0},
		{"zero blocks", cawCDB(0, 4, 0), nil, 0, good, 0},
		{"beyond end", cawCDB(0, 63, 2), payload, 4 * bs, lbaOOB, 0},
		{"protect field", cawCDB(0x20, 4, 2), payload, 4 * bs, invalidField(1, 7), 0},
		{"short data-out", cawCDB(0, 4, 2), payload, 3 * bs, invalidIU, 0},
		{"data-out longer than the CDB says", cawCDB(0, 4, 1), payload, 4 * bs, invalidField(13, 7), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, d, nexusA, 0, tc.cdb, tc.data, tc.edtl)
			r.check(t, tc.want)
		})
	}
	if got := st.bytes(4*bs, 2*bs); !bytes.Equal(got, bytes.Repeat([]byte{'B'}, 2*bs)) {
		t.Fatal("COMPARE AND WRITE did not write")
	}

	// A miscompare at byte 700 of the verify data writes nothing and
	// reports the offset (SBC-4).
	bad := append(bytes.Repeat([]byte{'B'}, 2*bs), bytes.Repeat([]byte{'C'}, 2*bs)...)
	bad[700] = 'Z'
	r := run(t, d, nexusA, 0, cawCDB(0, 4, 2), bad, 4*bs)
	r.check(t, miscompare)
	if !r.sense.HasInfo || r.sense.Info != 700 {
		t.Fatalf("miscompare information %v %d, want 700", r.sense.HasInfo, r.sense.Info)
	}
	if got := st.bytes(4*bs, 2*bs); !bytes.Equal(got, bytes.Repeat([]byte{'B'}, 2*bs)) {
		t.Fatal("a miscompare changed the medium")
	}

	// Read-only LU: DATA PROTECT.
	dro, _, _ := newTestDevice(t, 64, bs, func(c *LUConfig) { c.ReadOnly = true })
	clearUA(t, dro, nexusA, 0)
	run(t, dro, nexusA, 0, cawCDB(0, 0, 1), make([]byte, 2*bs), 2*bs).check(t, writeProt)
}

// TestCompareAndWriteAtomic races COMPARE AND WRITEs that each expect the
// value the previous one wrote, as VMware's ATS heartbeat does: with the
// range lock exactly one of the racers per round succeeds.
func TestCompareAndWriteAtomic(t *testing.T) {
	const bs = 512
	d, _, _ := newTestDevice(t, 16, bs)
	clearUA(t, d, nexusA, 0)
	clearUA(t, d, nexusB, 0)
	const rounds, racers = 50, 4
	for round := 0; round < rounds; round++ {
		cur := bytes.Repeat([]byte{byte(round)}, bs)
		next := bytes.Repeat([]byte{byte(round + 1)}, bs)
		var wins sync.WaitGroup
		var mu sync.Mutex
		won := 0
		for i := 0; i < racers; i++ {
			n := nexusA
			if i%2 == 1 {
				n = nexusB
			}
			wins.Add(1)
			go func() {
				defer wins.Done()
				r := run(t, d, n, 0, cawCDB(0, 3, 1), append(append([]byte(nil), cur...), next...), 2*bs)
				if r.status == StatusGood {
					mu.Lock()
					won++
					mu.Unlock()
				} else if r.sense == nil || r.sense.Key != sense.KeyMiscompare {
					t.Errorf("round %d: %v", round, r.err)
				}
			}()
		}
		wins.Wait()
		// Block 3 starts as zeros, round 0's value; each round's winner
		// writes the next round's.
		if won != 1 {
			t.Fatalf("round %d: %d winners, want 1", round, won)
		}
	}
}

func TestOrWrite(t *testing.T) {
	const bs = 512
	d, _, st := newTestDevice(t, 64, bs)
	clearUA(t, d, nexusA, 0)
	run(t, d, nexusA, 0, cdb10(opWrite10, 0, 0, 2), bytes.Repeat([]byte{0xA0}, 2*bs), 2*bs).check(t, good)
	run(t, d, nexusA, 0, cdb16(opOrWrite16, 0, 0, 2), bytes.Repeat([]byte{0x05}, 2*bs), 2*bs).check(t, good)
	if got := st.bytes(0, 2*bs); !bytes.Equal(got, bytes.Repeat([]byte{0xA5}, 2*bs)) {
		t.Fatalf("ORWRITE left % x...", got[:4])
	}
	run(t, d, nexusA, 0, cdb16(opOrWrite16, 0, 0, 0), nil, 0).check(t, good)
	run(t, d, nexusA, 0, cdb16(opOrWrite16, 0, 65, 0), nil, 0).check(t, lbaOOB)
	run(t, d, nexusA, 0, cdb16(opOrWrite16, 0x40, 0, 1), make([]byte, bs), bs).check(t, invalidField(1, 7))
	st.failReadAt.Store(bs)
	r := run(t, d, nexusA, 0, cdb16(opOrWrite16, 0, 0, 2), make([]byte, 2*bs), 2*bs)
	r.check(t, checkCond(sense.KeyMediumError, 0x11, 0))
}

func TestWriteAtomic(t *testing.T) {
	const bs = 4096
	d, lu, st := newTestDevice(t, 1024, bs)
	clearUA(t, d, nexusA, 0)
	max := lu.maxAtomicBlocks()
	if max < 256 || max > lu.maxXfer {
		t.Fatalf("maximum atomic transfer length %d blocks", max)
	}
	vpd := run(t, d, nexusA, 0, []byte{opInquiry, 1, vpdBlockLimits, 0, 255, 0}, nil, 255)
	vpd.check(t, good)
	if got := binary.BigEndian.Uint32(vpd.data[44:48]); got != max {
		t.Fatalf("VPD MAXIMUM ATOMIC TRANSFER LENGTH %d, want %d", got, max)
	}
	if vpd.data[5] != maxCompareAndWriteBlocks {
		t.Fatalf("VPD MAXIMUM COMPARE AND WRITE LENGTH %d", vpd.data[5])
	}
	data := bytes.Repeat([]byte{7}, 3*bs)
	run(t, d, nexusA, 0, atomicCDB(0x08, 10, 3), data, 3*bs).check(t, good)
	if !bytes.Equal(st.bytes(10*bs, 3*bs), data) || st.fuaWrites.Load() != 1 {
		t.Fatal("WRITE ATOMIC(16) with FUA did not write through")
	}
	run(t, d, nexusA, 0, atomicCDB(0, 0, 0), nil, 0).check(t, good)
	run(t, d, nexusA, 0, atomicCDB(0, 1023, 2), make([]byte, 2*bs), 2*bs).check(t, lbaOOB)
	run(t, d, nexusA, 0, atomicCDB(0, 0, uint16(max+1)), nil, 0).check(t, invalidField(12, 7))
	run(t, d, nexusA, 0, atomicCDB(0, 0, 2), make([]byte, 2*bs), bs).check(t, invalidIU)
}

// TestLBALockOrdering: an exclusive lock waits for shared holders of an
// overlapping range, and later shared requests wait behind it (no starvation).
func TestLBALockOrdering(t *testing.T) {
	var l lbaLocker
	shared := l.lock(0, 10, false)
	l.unlock(l.lock(20, 5, true)) // disjoint: no wait
	gotExcl := make(chan lbaToken)
	go func() { gotExcl <- l.lock(5, 10, true) }()
	time.Sleep(20 * time.Millisecond)
	gotShared := make(chan lbaToken)
	go func() { gotShared <- l.lock(12, 1, false) }()
	select {
	case <-gotExcl:
		t.Fatal("exclusive lock granted over a shared holder")
	case <-gotShared:
		t.Fatal("a later shared lock overtook a waiting exclusive one")
	case <-time.After(50 * time.Millisecond):
	}
	l.unlock(shared)
	excl := <-gotExcl
	select {
	case <-gotShared:
		t.Fatal("shared lock granted inside an exclusive range")
	case <-time.After(20 * time.Millisecond):
	}
	l.unlock(excl)
	l.unlock(<-gotShared)
	l.unlock(l.lock(0, 0, true)) // an empty range locks nothing
	if len(l.held) != 0 || len(l.waiting) != 0 {
		t.Fatalf("left %d held, %d waiting", len(l.held), len(l.waiting))
	}
}
