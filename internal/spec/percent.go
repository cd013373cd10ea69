package spec

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Percent is a share of traffic in hundredths of a percent: 10000 is 100%,
// 5 is 0.05%. Weights have at most two decimals, so an integer holds them
// exactly and sums never suffer float rounding.
type Percent int32

// Full is 100%.
const Full Percent = 10000

// ErrPercentSyntax is returned for a value that is not a percent with at most two decimals.
var ErrPercentSyntax = errors.New("must be a number from 0 to 100 with at most 2 decimals")

// ParsePercent parses "5", "5.5", "12.25" or "100" (an optional trailing
// "%" is allowed). It rejects negatives, values above 100 and more than two decimals.
func ParsePercent(s string) (Percent, error) {
	s = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "%"))
	if s == "" {
		return 0, ErrPercentSyntax
	}
	intPart, frac, hasDot := strings.Cut(s, ".")
	if intPart == "" || len(intPart) > 3 || (hasDot && (frac == "" || len(frac) > 2)) {
		return 0, ErrPercentSyntax
	}
	for _, c := range intPart + frac {
		if c < '0' || c > '9' {
			return 0, ErrPercentSyntax
		}
	}
	whole, _ := strconv.Atoi(intPart)
	hundredths := 0
	if frac != "" {
		hundredths, _ = strconv.Atoi(frac)
		if len(frac) == 1 {
			hundredths *= 10
		}
	}
	p := Percent(whole*100 + hundredths)
	if p > Full {
		return 0, ErrPercentSyntax
	}
	return p, nil
}

// PercentFromFloat converts a JSON or YAML number, rejecting more than two
// decimals rather than rounding them away silently.
func PercentFromFloat(f float64) (Percent, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 100 {
		return 0, ErrPercentSyntax
	}
	scaled := f * 100
	r := math.Round(scaled)
	if math.Abs(scaled-r) > 1e-6 {
		return 0, ErrPercentSyntax
	}
	return Percent(r), nil
}

// Float returns the percent as a number, e.g. 5.25.
func (p Percent) Float() float64 { return float64(p) / 100 }

// Fraction returns the share as a fraction of 1, e.g. 0.0525.
func (p Percent) Fraction() float64 { return float64(p) / float64(Full) }

// String formats the percent without trailing zeros: "5", "5.5", "12.25".
func (p Percent) String() string {
	whole, frac := int(p)/100, int(p)%100
	switch {
	case frac == 0:
		return strconv.Itoa(whole)
	case frac%10 == 0:
		return fmt.Sprintf("%d.%d", whole, frac/10)
	default:
		return fmt.Sprintf("%d.%02d", whole, frac)
	}
}

// MarshalJSON writes the percent as a plain JSON number.
func (p Percent) MarshalJSON() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalJSON reads a JSON number with at most two decimals, or a
// string holding one, "5%" allowed (as the config file does). The error
// quotes what it was given, as the config file's does.
func (p *Percent) UnmarshalJSON(b []byte) error {
	text := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &text); err != nil {
			return ErrPercentSyntax
		}
	}
	v, err := ParsePercent(text)
	if err != nil {
		return fmt.Errorf("invalid percent %q: %w", text, err)
	}
	*p = v
	return nil
}

// MarshalYAML writes the percent as a plain YAML number such as 5.5, so
// that a marshalled endpoint reads back as the same percent (the underlying
// integer, hundredths, would read back a hundred times too large).
func (p Percent) MarshalYAML() (any, error) { return p.Float(), nil }

// UnmarshalYAML reads a YAML scalar such as 5, 5.5 or "5.5%" through
// ParsePercent. It uses the callback form of yaml.v3's interface so that
// this package keeps importing only the standard library.
func (p *Percent) UnmarshalYAML(unmarshal func(any) error) error {
	var s string
	if err := unmarshal(&s); err != nil {
		return ErrPercentSyntax
	}
	v, err := ParsePercent(s)
	if err != nil {
		return err
	}
	*p = v
	return nil
}
