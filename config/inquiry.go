package config

import "strings"

// Lengths of the INQUIRY identification fields (SPC-5 standard INQUIRY data).
const (
	MaxVendor  = 8
	MaxProduct = 16
)

// validateInquiryStrings checks the vendor and product overrides of a LUN:
// they go into fixed-width ASCII fields of the standard INQUIRY data.
func validateInquiryStrings(lun *LUN, key string, r *reporter) {
	for _, f := range []struct {
		name, value string
		max         int
	}{{"vendor", lun.Vendor, MaxVendor}, {"product", lun.Product, MaxProduct}} {
		if f.value == "" {
			continue
		}
		if len(f.value) > f.max {
			r.add(key+"."+f.name, "is %d bytes; the INQUIRY field holds %d", len(f.value), f.max)
		} else if i := strings.IndexFunc(f.value, func(c rune) bool { return c < 0x20 || c > 0x7e }); i >= 0 {
			// SPC-5: the identification fields are printable ASCII.
			r.add(key+"."+f.name, "must be printable ASCII; byte %d is not", i)
		}
	}
}
