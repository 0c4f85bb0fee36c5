package backstore

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// FuzzBackstoresAgainstModel decodes a sequence of reads and writes of any
// offset, length and memory alignment and applies them to an O_DIRECT file
// backstore (page-sized units, so nearly every op is a bounce or a
// read-modify-write), to a memory backstore (chunk edges) and to a byte
// slice. All three must agree after every op.
//
// Each op is 7 bytes: flags (bit 0 write, bit 1 FUA), offset (3 bytes),
// length (2 bytes), buffer shift (1 byte).
func FuzzBackstoresAgainstModel(f *testing.F) {
	op := func(write, fua bool, off, length, shift int) []byte {
		var flags byte
		if write {
			flags |= 1
		}
		if fua {
			flags |= 2
		}
		return []byte{flags, byte(off >> 16), byte(off >> 8), byte(off), byte(length >> 8), byte(length), byte(shift)}
	}
	seeds := [][][]byte{
		{op(true, false, 0, 4096, 0), op(false, false, 0, 4096, 0)},
		{op(true, true, 100, 1000, 3), op(false, false, 0, 4096, 1)},
		{op(true, false, 4000, 200, 0), op(true, false, 4090, 20, 5), op(false, false, 3990, 300, 0)},
		{op(true, false, fuzzSize-10, 10, 0), op(false, false, fuzzSize-4096, 8192, 0)},
		{op(true, true, 65535, 65535, 255)},
		{op(false, false, fuzzSize+1, 5, 0), op(true, false, fuzzSize-1, 2, 0)},
	}
	for _, s := range seeds {
		f.Add(bytes.Join(s, nil))
	}
	dir := directDir(f)
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 7*64 {
			ops = ops[:7*64]
		}
		path := filepath.Join(dir, "fuzz.img")
		fb, err := Open(Options{Kind: "file", Path: path, Size: fuzzSize, DirectIO: true, WriteCache: true})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			fb.Close()
			os.Remove(path)
		}()
		file := fb.(*fileBackstore)
		if file.offsetAlign < 4096 {
			file.offsetAlign, file.memAlign = 4096, 4096
		}
		mem, err := Open(Options{Kind: "memory", Size: fuzzSize})
		if err != nil {
			t.Fatal(err)
		}
		defer mem.Close()
		model := make([]byte, fuzzSize)
		stores := map[string]Backstore{"file": fb, "memory": mem}

		for i := 0; i+7 <= len(ops); i += 7 {
			o := ops[i : i+7]
			write, fua := o[0]&1 != 0, o[0]&2 != 0
			off := int64(o[1])<<16 | int64(o[2])<<8 | int64(o[3])
			length := int(binary.BigEndian.Uint16(o[4:6]))
			shift := int(o[6])
			if write {
				data := pattern(length, uint64(i))
				fits := off+int64(length) <= fuzzSize
				for name, b := range stores {
					buf := append(make([]byte, shift, shift+length), data...)[shift:]
					n, err := b.WriteAt(buf, off, fua)
					if fits && (err != nil || n != length) {
						t.Fatalf("op %d: %s WriteAt(len %d, off %d) = %d, %v", i/7, name, length, off, n, err)
					}
					if !fits && (err == nil || n != 0) {
						t.Fatalf("op %d: %s WriteAt beyond the end = %d, %v", i/7, name, n, err)
					}
				}
				if fits {
					copy(model[off:], data)
				}
				continue
			}
			wantN := int(max(0, min(int64(length), fuzzSize-off)))
			for name, b := range stores {
				buf := make([]byte, shift+length)[shift:]
				n, err := b.ReadAt(buf, off)
				if n != wantN || (n < length) != (err != nil) {
					t.Fatalf("op %d: %s ReadAt(len %d, off %d) = %d, %v; want %d bytes", i/7, name, length, off, n, err, wantN)
				}
				if n > 0 && !bytes.Equal(buf[:n], model[off:off+int64(n)]) {
					t.Fatalf("op %d: %s ReadAt(len %d, off %d) differs from the model", i/7, name, length, off)
				}
			}
		}
	})
}

const fuzzSize = 256 << 10
