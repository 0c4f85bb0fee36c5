package sense

// Logical block provisioning conditions (SBC-4 4.7.3.7, SPC-5 ASC and ASCQ
// assignments).
const ascThinProvisioning = 0x38

func init() {
	ascNames[0x3807] = "THIN PROVISIONING SOFT THRESHOLD REACHED"
}

// ThinProvisioningSoftThreshold: UNIT ATTENTION, THIN PROVISIONING SOFT
// THRESHOLD REACHED (38h/07h): the storage a thin LU uses crossed its soft
// threshold (SBC-4 4.7.3.7.4).
func ThinProvisioningSoftThreshold() *Error {
	return New(KeyUnitAttention, ascThinProvisioning, 0x07)
}
