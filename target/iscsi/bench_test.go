package iscsi

import (
	"testing"
)

// BenchmarkRead4K measures one 4 KiB READ(10) round trip through the real
// fabric and SCSI core over loopback (client and server in one process:
// allocs/op counts both sides).
func BenchmarkRead4K(b *testing.B) {
	benchIO(b, false)
}

// BenchmarkWrite4K is the same for WRITE(10) with immediate data.
func BenchmarkWrite4K(b *testing.B) {
	benchIO(b, true)
}

func benchIO(b *testing.B, write bool) {
	f := startFabric(b, Options{})
	in := dial(b, f)
	in.mustLogin(KeyValue{Key: "ImmediateData", Value: "Yes"}, KeyValue{Key: "InitialR2T", Value: "No"})
	in.clearUA()
	data := make([]byte, 4096)
	b.SetBytes(4096)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		lba := uint32(i*8) % 8000
		var r result
		if write {
			r = in.command(write10(lba, 8), 4096, data, 4096)
		} else {
			r = in.command(read10(lba, 8), 4096, nil, 0)
		}
		if r.status != 0 {
			b.Fatalf("status %#x", r.status)
		}
	}
}
