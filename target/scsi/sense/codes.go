package sense

// Additional sense codes (SPC-5, "ASC and ASCQ assignments") used by
// Blockport. Handlers call the constructors below; the table gives each
// code its name for messages and logs.
const (
	ascNoAdditionalInfo     = 0x00
	ascWriteError           = 0x0C
	ascInvalidFieldInIU     = 0x0E
	ascUnrecoveredReadError = 0x11
	ascParameterListLength  = 0x1A
	ascMiscompare           = 0x1D
	ascInvalidOpcode        = 0x20
	ascLBAOutOfRange        = 0x21
	ascInvalidFieldInCDB    = 0x24
	ascLUNotSupported       = 0x25
	ascInvalidFieldInParam  = 0x26
	ascWriteProtected       = 0x27
	ascReset                = 0x29
	ascParametersChanged    = 0x2A
	ascSavingNotSupported   = 0x39
	ascTargetChanged        = 0x3F
	ascInternalFailure      = 0x44
)

// Unit attention ASCQs of ASC 29h (SPC-5 ASC and ASCQ assignments; SAM-5 events).
const (
	ascqPowerOnResetOrBDR = 0x00
	ascqPowerOn           = 0x01
	ascqBusDeviceReset    = 0x03
	ascqITNexusLoss       = 0x07
)

var ascNames = map[uint16]string{
	0x0000: "NO ADDITIONAL SENSE INFORMATION",
	0x0C00: "WRITE ERROR",
	0x0E03: "INVALID FIELD IN INFORMATION UNIT",
	0x1100: "UNRECOVERED READ ERROR",
	0x1A00: "PARAMETER LIST LENGTH ERROR",
	0x1D00: "MISCOMPARE DURING VERIFY OPERATION",
	0x2000: "INVALID COMMAND OPERATION CODE",
	0x2100: "LOGICAL BLOCK ADDRESS OUT OF RANGE",
	0x2400: "INVALID FIELD IN CDB",
	0x2500: "LOGICAL UNIT NOT SUPPORTED",
	0x2600: "INVALID FIELD IN PARAMETER LIST",
	0x2700: "WRITE PROTECTED",
	0x2900: "POWER ON, RESET, OR BUS DEVICE RESET OCCURRED",
	0x2901: "POWER ON OCCURRED",
	0x2903: "BUS DEVICE RESET FUNCTION OCCURRED",
	0x2907: "I_T NEXUS LOSS OCCURRED",
	0x2A01: "MODE PARAMETERS CHANGED",
	0x2A09: "CAPACITY DATA HAS CHANGED",
	0x3900: "SAVING PARAMETERS NOT SUPPORTED",
	0x3F0E: "REPORTED LUNS DATA HAS CHANGED",
	0x4400: "INTERNAL TARGET FAILURE",
	0x4B00: "DATA PHASE ERROR",
}

func ascName(asc, ascq byte) string { return ascNames[uint16(asc)<<8|uint16(ascq)] }

func cdbField(byteOffset, bit int) *FieldPointer {
	return &FieldPointer{CDB: true, Byte: uint16(byteOffset), Bit: clampBit(bit)}
}

func clampBit(bit int) int8 {
	if bit < 0 || bit > 7 {
		return -1
	}
	return int8(bit)
}

// NoSense is the "nothing to report" sense data REQUEST SENSE returns (SPC-5).
func NoSense() *Error { return New(KeyNoSense, ascNoAdditionalInfo, 0) }

// InvalidOpcode: ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE (20h/00h).
func InvalidOpcode() *Error { return New(KeyIllegalRequest, ascInvalidOpcode, 0) }

// InvalidFieldInCDB: ILLEGAL REQUEST, INVALID FIELD IN CDB (24h/00h) with a
// field pointer at byteOffset and bit (bit < 0: the whole byte).
func InvalidFieldInCDB(byteOffset, bit int) *Error {
	e := New(KeyIllegalRequest, ascInvalidFieldInCDB, 0)
	e.Field = cdbField(byteOffset, bit)
	return e
}

// InvalidFieldInParameterList: ILLEGAL REQUEST, INVALID FIELD IN PARAMETER
// LIST (26h/00h), pointing into the data-out parameter list.
func InvalidFieldInParameterList(byteOffset, bit int) *Error {
	e := New(KeyIllegalRequest, ascInvalidFieldInParam, 0)
	e.Field = &FieldPointer{Byte: uint16(byteOffset), Bit: clampBit(bit)}
	return e
}

// ParameterListLengthError: ILLEGAL REQUEST, PARAMETER LIST LENGTH ERROR (1Ah/00h).
func ParameterListLengthError() *Error { return New(KeyIllegalRequest, ascParameterListLength, 0) }

// InvalidFieldInIU: ILLEGAL REQUEST, INVALID FIELD IN INFORMATION UNIT
// (0Eh/03h), e.g. an iSCSI expected data transfer length that does not
// cover the blocks a write CDB asks for.
func InvalidFieldInIU() *Error { return New(KeyIllegalRequest, ascInvalidFieldInIU, 0x03) }

// LBAOutOfRange: ILLEGAL REQUEST, LOGICAL BLOCK ADDRESS OUT OF RANGE (21h/00h).
func LBAOutOfRange() *Error { return New(KeyIllegalRequest, ascLBAOutOfRange, 0) }

// LUNotSupported: ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED (25h/00h).
func LUNotSupported() *Error { return New(KeyIllegalRequest, ascLUNotSupported, 0) }

// SavingParametersNotSupported: ILLEGAL REQUEST, SAVING PARAMETERS NOT SUPPORTED (39h/00h).
func SavingParametersNotSupported() *Error {
	return New(KeyIllegalRequest, ascSavingNotSupported, 0)
}

// WriteProtected: DATA PROTECT, WRITE PROTECTED (27h/00h).
func WriteProtected() *Error { return New(KeyDataProtect, ascWriteProtected, 0) }

// Miscompare: MISCOMPARE, MISCOMPARE DURING VERIFY OPERATION (1Dh/00h) with
// the byte offset of the first mismatch in the INFORMATION field (SBC-4).
func Miscompare(offset uint64) *Error {
	e := New(KeyMiscompare, ascMiscompare, 0)
	e.HasInfo, e.Info = true, offset
	return e
}

// UnrecoveredReadError: MEDIUM ERROR, UNRECOVERED READ ERROR (11h/00h) with
// the first failing LBA in the INFORMATION field (SBC-4).
func UnrecoveredReadError(lba uint64) *Error {
	e := New(KeyMediumError, ascUnrecoveredReadError, 0)
	e.HasInfo, e.Info = true, lba
	return e
}

// WriteError: MEDIUM ERROR, WRITE ERROR (0Ch/00h) with the first failing LBA.
func WriteError(lba uint64) *Error {
	e := New(KeyMediumError, ascWriteError, 0)
	e.HasInfo, e.Info = true, lba
	return e
}

// InternalTargetFailure: HARDWARE ERROR, INTERNAL TARGET FAILURE (44h/00h).
func InternalTargetFailure() *Error { return New(KeyHardwareError, ascInternalFailure, 0) }

// PowerOnOccurred: UNIT ATTENTION, POWER ON OCCURRED (29h/01h).
func PowerOnOccurred() *Error { return New(KeyUnitAttention, ascReset, ascqPowerOn) }

// ResetOccurred: UNIT ATTENTION, POWER ON, RESET, OR BUS DEVICE RESET OCCURRED (29h/00h).
func ResetOccurred() *Error { return New(KeyUnitAttention, ascReset, ascqPowerOnResetOrBDR) }

// BusDeviceResetOccurred: UNIT ATTENTION, BUS DEVICE RESET FUNCTION OCCURRED (29h/03h).
func BusDeviceResetOccurred() *Error { return New(KeyUnitAttention, ascReset, ascqBusDeviceReset) }

// ITNexusLossOccurred: UNIT ATTENTION, I_T NEXUS LOSS OCCURRED (29h/07h).
func ITNexusLossOccurred() *Error { return New(KeyUnitAttention, ascReset, ascqITNexusLoss) }

// ReportedLUNsDataChanged: UNIT ATTENTION, REPORTED LUNS DATA HAS CHANGED (3Fh/0Eh).
func ReportedLUNsDataChanged() *Error { return New(KeyUnitAttention, ascTargetChanged, 0x0E) }

// ModeParametersChanged: UNIT ATTENTION, MODE PARAMETERS CHANGED (2Ah/01h).
func ModeParametersChanged() *Error { return New(KeyUnitAttention, ascParametersChanged, 0x01) }

// CapacityDataChanged: UNIT ATTENTION, CAPACITY DATA HAS CHANGED (2Ah/09h).
func CapacityDataChanged() *Error { return New(KeyUnitAttention, ascParametersChanged, 0x09) }

// WriteFault: MEDIUM ERROR, WRITE ERROR (0Ch/00h) with no failing LBA known,
// e.g. a cache flush that failed (SBC-4 SYNCHRONIZE CACHE).
func WriteFault() *Error { return New(KeyMediumError, ascWriteError, 0) }
