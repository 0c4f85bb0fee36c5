package sense

// Conditions of persistent reservations (SPC-5 5.14) and asymmetric
// logical unit access (SPC-5 5.16).

const (
	ascLUNotAccessible  = 0x04
	ascSystemResource   = 0x55
	ascqRelPreempted    = 0x03
	ascqRelReleased     = 0x04
	ascqRegPreempted    = 0x05
	ascqALUAChanged     = 0x06
	ascqInvalidRelease  = 0x04
	ascqNoRegResources  = 0x04
	ascqALUATransition  = 0x0A
	ascqALUAStandby     = 0x0B
	ascqALUAUnavailable = 0x0C
)

func init() {
	for code, name := range map[uint16]string{
		0x040A: "LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS STATE TRANSITION",
		0x040B: "LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE",
		0x040C: "LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE",
		0x2604: "INVALID RELEASE OF PERSISTENT RESERVATION",
		0x2A03: "RESERVATIONS PREEMPTED",
		0x2A04: "RESERVATIONS RELEASED",
		0x2A05: "REGISTRATIONS PREEMPTED",
		0x2A06: "ASYMMETRIC ACCESS STATE CHANGED",
		0x5504: "INSUFFICIENT REGISTRATION RESOURCES",
	} {
		ascNames[code] = name
	}
}

// ReservationsPreempted: UNIT ATTENTION, RESERVATIONS PREEMPTED (2Ah/03h).
func ReservationsPreempted() *Error {
	return New(KeyUnitAttention, ascParametersChanged, ascqRelPreempted)
}

// ReservationsReleased: UNIT ATTENTION, RESERVATIONS RELEASED (2Ah/04h).
func ReservationsReleased() *Error {
	return New(KeyUnitAttention, ascParametersChanged, ascqRelReleased)
}

// RegistrationsPreempted: UNIT ATTENTION, REGISTRATIONS PREEMPTED (2Ah/05h).
func RegistrationsPreempted() *Error {
	return New(KeyUnitAttention, ascParametersChanged, ascqRegPreempted)
}

// AsymmetricAccessStateChanged: UNIT ATTENTION, ASYMMETRIC ACCESS STATE CHANGED (2Ah/06h).
func AsymmetricAccessStateChanged() *Error {
	return New(KeyUnitAttention, ascParametersChanged, ascqALUAChanged)
}

// InvalidReleaseOfPR: ILLEGAL REQUEST, INVALID RELEASE OF PERSISTENT
// RESERVATION (26h/04h).
func InvalidReleaseOfPR() *Error {
	return New(KeyIllegalRequest, ascInvalidFieldInParam, ascqInvalidRelease)
}

// InsufficientRegistrationResources: ILLEGAL REQUEST, INSUFFICIENT
// REGISTRATION RESOURCES (55h/04h).
func InsufficientRegistrationResources() *Error {
	return New(KeyIllegalRequest, ascSystemResource, ascqNoRegResources)
}

// ALUATransition: NOT READY, LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS
// STATE TRANSITION (04h/0Ah).
func ALUATransition() *Error { return New(KeyNotReady, ascLUNotAccessible, ascqALUATransition) }

// ALUAStandby: NOT READY, LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN
// STANDBY STATE (04h/0Bh).
func ALUAStandby() *Error { return New(KeyNotReady, ascLUNotAccessible, ascqALUAStandby) }

// ALUAUnavailable: NOT READY, LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN
// UNAVAILABLE STATE (04h/0Ch).
func ALUAUnavailable() *Error { return New(KeyNotReady, ascLUNotAccessible, ascqALUAUnavailable) }
