package compare

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// normalizedEqual reports whether two texts are equal after normalisation:
// leading and trailing white space removed, every run of white space
// (Unicode) collapsed to one space, and letters compared case-insensitively
// under Unicode simple case folding (strings.EqualFold: "ß" does not
// equal "SS"). Punctuation and Unicode composition are left as they are.
func normalizedEqual(a, b []byte) bool {
	return strings.EqualFold(strings.Join(strings.Fields(string(a)), " "), strings.Join(strings.Fields(string(b)), " "))
}

// tokens splits text into lowercase word tokens: maximal runs of Unicode
// letters and digits. Everything else (white space, punctuation) separates.
func tokens(text []byte) []string {
	var out []string
	var tok []byte
	flush := func() {
		if len(tok) > 0 {
			out = append(out, string(tok))
			tok = tok[:0]
		}
	}
	for len(text) > 0 {
		r, size := utf8.DecodeRune(text)
		text = text[size:]
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			tok = utf8.AppendRune(tok, unicode.ToLower(r))
			continue
		}
		flush()
	}
	flush()
	return out
}

// similarity is the token-overlap F1 of two texts, as SQuAD scores an
// answer: with L and S the multisets of lowercase word tokens (see
// tokens) and C their intersection (a token counted as often as it
// appears in both), precision |C|/|S|, recall |C|/|L| and
// F1 = 2|C| / (|L|+|S|). It is 1 for two texts without tokens and 0 when
// only one has none. Word order is ignored; repetition counts.
func similarity(live, shadow []byte) float64 {
	lt, st := tokens(live), tokens(shadow)
	if len(lt) == 0 && len(st) == 0 {
		return 1
	}
	if len(lt) == 0 || len(st) == 0 {
		return 0
	}
	counts := make(map[string]int, len(lt))
	for _, t := range lt {
		counts[t]++
	}
	common := 0
	for _, t := range st {
		if counts[t] > 0 {
			counts[t]--
			common++
		}
	}
	return 2 * float64(common) / float64(len(lt)+len(st))
}
