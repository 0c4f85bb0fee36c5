package scsi

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/blockport/blockport/target/scsi/sense"
)

// growableStore is a memStore that implements backstore.Resizer.
type growableStore struct{ *memStore }

func (g *growableStore) Resize(size int64) (int64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	cur := int64(len(g.data))
	if size == 0 {
		return cur, nil
	}
	if size < cur {
		return cur, errors.New("shrink")
	}
	g.data = append(g.data, make([]byte, size-cur)...)
	return size, nil
}

func TestLUResize(t *testing.T) {
	st := &growableStore{memStore: newMemStore(1 << 20)}
	st.size = 4 << 20 // reads beyond data are bounded by the LU, not by this
	lu, err := NewLU(LUConfig{Backstore: st, BlockSize: 512, NAA: NewNAA([]byte("grow"))})
	if err != nil {
		t.Fatal(err)
	}
	d := NewDevice("grow")
	d.AddLU(0, lu)
	// NewLU took the capacity from Size (4 MiB); make the store agree.
	if _, err := st.Resize(4 << 20); err != nil {
		t.Fatal(err)
	}
	clearUA(t, d, nexusA, 0)
	clearUA(t, d, nexusB, 0)
	lastLBA := func(n *Nexus) uint64 {
		r := run(t, d, n, 0, []byte{opServiceActionIn16, saReadCapacity16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0}, nil, 32)
		r.check(t, good)
		return binary.BigEndian.Uint64(r.data[0:8])
	}
	capacityChanged := checkCond(sense.KeyUnitAttention, 0x2A, 0x09)
	tur := []byte{opTestUnitReady, 0, 0, 0, 0, 0}

	for _, tt := range []struct {
		name    string
		size    int64
		wantErr bool
		changed bool
		blocks  uint64
	}{
		{"same size", 4 << 20, false, false, 4 << 20 / 512},
		{"from the medium, unchanged", 0, false, false, 4 << 20 / 512},
		{"grow", 8 << 20, false, true, 8 << 20 / 512},
		{"shrink", 4 << 20, true, false, 8 << 20 / 512},
		{"not whole blocks", 8<<20 + 100, true, false, 8 << 20 / 512},
	} {
		changed, err := lu.Resize(tt.size)
		if (err != nil) != tt.wantErr || changed != tt.changed {
			t.Fatalf("%s: Resize(%d) = %v, %v", tt.name, tt.size, changed, err)
		}
		if lu.Blocks() != tt.blocks {
			t.Fatalf("%s: %d blocks, want %d", tt.name, lu.Blocks(), tt.blocks)
		}
		for _, n := range []*Nexus{nexusA, nexusB} {
			if tt.changed {
				// SBC-4: every I_T nexus learns of the new capacity.
				run(t, d, n, 0, tur, nil, 0).check(t, capacityChanged)
			}
			if got := lastLBA(n); got != tt.blocks-1 {
				t.Fatalf("%s: READ CAPACITY(16) last LBA %d, want %d", tt.name, got, tt.blocks-1)
			}
		}
	}
	// The new blocks take writes and read them back.
	data := fill(512, 0x5C)
	run(t, d, nexusA, 0, write10(8<<20/512-1, 1), data, 512).check(t, good)
	if r := run(t, d, nexusB, 0, read10(8<<20/512-1, 1), nil, 512); r.data[0] != 0x5C {
		t.Fatalf("read back the new last block: % x", r.data[:4])
	}

	// A backstore that cannot grow is refused.
	fixed, err := NewLU(LUConfig{Backstore: newMemStore(1 << 20), BlockSize: 512, NAA: NewNAA([]byte("fixed"))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fixed.Resize(2 << 20); err == nil || fixed.Blocks() != 1<<20/512 {
		t.Fatalf("Resize of a backstore without Resizer: %v, %d blocks", err, fixed.Blocks())
	}
}
