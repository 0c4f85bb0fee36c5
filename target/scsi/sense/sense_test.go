package sense

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

func TestConstructors(t *testing.T) {
	tests := []struct {
		name      string
		err       *Error
		key       Key
		asc, ascq byte
	}{
		{"NoSense", NoSense(), KeyNoSense, 0x00, 0x00},
		{"InvalidOpcode", InvalidOpcode(), KeyIllegalRequest, 0x20, 0x00},
		{"InvalidFieldInCDB", InvalidFieldInCDB(2, 7), KeyIllegalRequest, 0x24, 0x00},
		{"InvalidFieldInParameterList", InvalidFieldInParameterList(3, 1), KeyIllegalRequest, 0x26, 0x00},
		{"ParameterListLengthError", ParameterListLengthError(), KeyIllegalRequest, 0x1A, 0x00},
		{"InvalidFieldInIU", InvalidFieldInIU(), KeyIllegalRequest, 0x0E, 0x03},
		{"LBAOutOfRange", LBAOutOfRange(), KeyIllegalRequest, 0x21, 0x00},
		{"LUNotSupported", LUNotSupported(), KeyIllegalRequest, 0x25, 0x00},
		{"SavingParametersNotSupported", SavingParametersNotSupported(), KeyIllegalRequest, 0x39, 0x00},
		{"WriteProtected", WriteProtected(), KeyDataProtect, 0x27, 0x00},
		{"Miscompare", Miscompare(5), KeyMiscompare, 0x1D, 0x00},
		{"UnrecoveredReadError", UnrecoveredReadError(9), KeyMediumError, 0x11, 0x00},
		{"WriteError", WriteError(9), KeyMediumError, 0x0C, 0x00},
		{"WriteFault", WriteFault(), KeyMediumError, 0x0C, 0x00},
		{"DataPhaseError", DataPhaseError(), KeyAbortedCommand, 0x4B, 0x00},
		{"InternalTargetFailure", InternalTargetFailure(), KeyHardwareError, 0x44, 0x00},
		{"PowerOnOccurred", PowerOnOccurred(), KeyUnitAttention, 0x29, 0x01},
		{"ResetOccurred", ResetOccurred(), KeyUnitAttention, 0x29, 0x00},
		{"BusDeviceResetOccurred", BusDeviceResetOccurred(), KeyUnitAttention, 0x29, 0x03},
		{"ITNexusLossOccurred", ITNexusLossOccurred(), KeyUnitAttention, 0x29, 0x07},
		{"ReportedLUNsDataChanged", ReportedLUNsDataChanged(), KeyUnitAttention, 0x3F, 0x0E},
		{"ModeParametersChanged", ModeParametersChanged(), KeyUnitAttention, 0x2A, 0x01},
		{"CapacityDataChanged", CapacityDataChanged(), KeyUnitAttention, 0x2A, 0x09},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err.Key != tt.key || tt.err.ASC != tt.asc || tt.err.ASCQ != tt.ascq {
				t.Fatalf("got %v/%02x/%02x, want %v/%02x/%02x", tt.err.Key, tt.err.ASC, tt.err.ASCQ, tt.key, tt.asc, tt.ascq)
			}
			if ascName(tt.asc, tt.ascq) == "" {
				t.Errorf("no name for %02x/%02x", tt.asc, tt.ascq)
			}
			if tt.err.Error() == "" {
				t.Error("empty message")
			}
		})
	}
}

func TestFixedGolden(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want []byte
	}{
		{
			name: "invalid field in CDB byte 2 bit 7",
			err:  InvalidFieldInCDB(2, 7),
			want: []byte{0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0xCF, 0x00, 0x02},
		},
		{
			name: "invalid field in CDB whole byte 258",
			err:  InvalidFieldInCDB(258, -1),
			want: []byte{0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0xC0, 0x01, 0x02},
		},
		{
			name: "parameter list field: C/D clear",
			err:  InvalidFieldInParameterList(4, 0),
			want: []byte{0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x26, 0, 0, 0x88, 0x00, 0x04},
		},
		{
			name: "miscompare with information",
			err:  Miscompare(0x01020304),
			want: []byte{0xF0, 0, 0x0E, 1, 2, 3, 4, 10, 0, 0, 0, 0, 0x1D, 0, 0, 0, 0, 0},
		},
		{
			name: "information over 32 bits: VALID=0",
			err:  UnrecoveredReadError(1 << 40),
			want: []byte{0x70, 0, 0x03, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x11, 0, 0, 0, 0, 0},
		},
		{
			name: "unit attention",
			err:  PowerOnOccurred(),
			want: []byte{0x70, 0, 0x06, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x29, 0x01, 0, 0, 0, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Fixed(); !bytes.Equal(got, tt.want) {
				t.Fatalf("Fixed() =\n% x\nwant\n% x", got, tt.want)
			}
			if got := tt.err.Bytes(); !bytes.Equal(got, tt.want) {
				t.Fatalf("Bytes() differs from Fixed(): % x", got)
			}
		})
	}
}

func TestDescriptorGolden(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want []byte
	}{
		{
			name: "no descriptors",
			err:  LBAOutOfRange(),
			want: []byte{0x72, 0x05, 0x21, 0x00, 0, 0, 0, 0},
		},
		{
			name: "information descriptor",
			err:  UnrecoveredReadError(1 << 40),
			want: []byte{0x72, 0x03, 0x11, 0x00, 0, 0, 0, 12,
				0x00, 0x0A, 0x80, 0, 0, 0, 0x01, 0, 0, 0, 0, 0},
		},
		{
			name: "sense key specific descriptor",
			err:  InvalidFieldInCDB(1, 4),
			want: []byte{0x72, 0x05, 0x24, 0x00, 0, 0, 0, 8,
				0x02, 0x06, 0, 0, 0xCC, 0x00, 0x01, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Descriptor(); !bytes.Equal(got, tt.want) {
				t.Fatalf("Descriptor() =\n% x\nwant\n% x", got, tt.want)
			}
			tt.err.DescFormat = true
			if got := tt.err.Bytes(); !bytes.Equal(got, tt.want) {
				t.Fatalf("Bytes() with DescFormat differs: % x", got)
			}
		})
	}
}

func TestParseRoundTrip(t *testing.T) {
	errs := []*Error{
		InvalidFieldInCDB(2, 7), InvalidFieldInCDB(300, -1), InvalidFieldInParameterList(8, 3),
		Miscompare(77), UnrecoveredReadError(1 << 40), WriteError(3), PowerOnOccurred(), NoSense(),
	}
	for _, want := range errs {
		for _, desc := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/desc=%v", want.Error(), desc), func(t *testing.T) {
				var b []byte
				if desc {
					b = want.Descriptor()
				} else {
					b = want.Fixed()
				}
				got, err := Parse(b)
				if err != nil {
					t.Fatal(err)
				}
				if !errors.Is(got, want) {
					t.Fatalf("parsed %v, want %v", got, want)
				}
				wantInfo := want.HasInfo && (desc || want.Info <= 0xFFFFFFFF)
				if got.HasInfo != wantInfo || (wantInfo && got.Info != want.Info) {
					t.Errorf("info: got %v/%d, want %v/%d", got.HasInfo, got.Info, wantInfo, want.Info)
				}
				if (got.Field == nil) != (want.Field == nil) || (got.Field != nil && *got.Field != *want.Field) {
					t.Errorf("field pointer: got %+v, want %+v", got.Field, want.Field)
				}
			})
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"unknown code", []byte{0x10, 0, 0, 0}},
		{"short fixed", []byte{0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0}},
		{"short descriptor", []byte{0x72, 5, 0x24}},
		{"overrunning descriptor", []byte{0x72, 5, 0x24, 0, 0, 0, 0, 4, 0x00, 0x0A, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if e, err := Parse(tt.in); err == nil {
				t.Fatalf("Parse(% x) = %v, want an error", tt.in, e)
			}
		})
	}
}

func TestAs(t *testing.T) {
	wrapped := fmt.Errorf("context: %w", LBAOutOfRange())
	e, ok := As(wrapped)
	if !ok || e.ASC != 0x21 {
		t.Fatalf("As(wrapped) = %v, %v", e, ok)
	}
	if _, ok := As(errors.New("plain")); ok {
		t.Fatal("As matched a plain error")
	}
	if !errors.Is(wrapped, LBAOutOfRange()) || errors.Is(wrapped, InvalidOpcode()) {
		t.Fatal("errors.Is does not compare key/ASC/ASCQ")
	}
}

func TestKeyString(t *testing.T) {
	if KeyIllegalRequest.String() != "ILLEGAL REQUEST" || Key(0x20).String() != "KEY(0x20)" {
		t.Fatalf("got %q and %q", KeyIllegalRequest.String(), Key(0x20).String())
	}
}

// FuzzParse checks that Parse never panics and that whatever it accepts
// survives an encode/parse round trip with the same key, ASC and ASCQ.
func FuzzParse(f *testing.F) {
	f.Add(InvalidFieldInCDB(2, 7).Fixed())
	f.Add(InvalidFieldInCDB(2, 7).Descriptor())
	f.Add(UnrecoveredReadError(1 << 40).Descriptor())
	f.Add(Miscompare(12).Fixed())
	f.Add([]byte{0x72, 5, 0x24, 0, 0, 0, 0, 255, 0x02, 0x06})
	f.Add([]byte{0x71})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Parse(b)
		if err != nil {
			return
		}
		for _, enc := range [][]byte{e.Fixed(), e.Descriptor()} {
			again, err := Parse(enc)
			if err != nil {
				t.Fatalf("re-parse of % x: %v", enc, err)
			}
			if again.Key != e.Key || again.ASC != e.ASC || again.ASCQ != e.ASCQ {
				t.Fatalf("round trip changed %v into %v", e, again)
			}
		}
	})
}
