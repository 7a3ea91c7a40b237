package llm

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/porticoproxy/portico/llm/internal/jsonobj"
)

// PII configures the redaction of personal data in prompts and
// completions. Recognisers, each a hand-written scanner:
//
//   - "email": local@domain.tld;
//   - "phone": a +country code, a (area) code or digit groups of 1–4
//     joined by one consistent separator (space, '-' or '.'), 10–15 digits
//     (7–15 after a '+');
//   - "card": 13–19 digits, optionally grouped by spaces or dashes, that
//     pass the Luhn check;
//   - "iban": two letters, two check digits and 11–30 letters or digits,
//     optionally grouped by spaces, that pass the ISO 13616 mod-97 check;
//   - "ssn": a US social security number ddd-dd-dddd with a valid area,
//     group and serial.
//
// Numbers (card, ssn, phone) start at the beginning of a run of digit
// groups, never after a digit and a separator, so that a number that
// fails its check is not partly redacted as another. A match becomes
// "[REDACTED_EMAIL]", "[REDACTED_PHONE]",
// "[REDACTED_CARD]", "[REDACTED_IBAN]" or "[REDACTED_SSN]". Where two
// recognisers match at the same place the longer match wins, then card,
// iban, ssn, phone, email in that order.
//
// Requests are redacted before routing and translation: the text of
// messages, system prompts, instructions and inputs (not images, ids,
// tool-call arguments, which are JSON a replacement could break, or
// thinking, whose signature a change would break). Responses are
// redacted as the client receives them, whatever the provider: message
// text (Chat Completions choices, Anthropic content, and for the
// Responses API the output_text parts of message items and the top-level
// output_text), and in streams the text deltas of OpenAI chunks,
// Anthropic content blocks and Responses response.output_text.delta
// events. A stream holds back only the shortest tail of text that could
// still become a match (a word that could be an email's local part,
// digits that could become a card number …) and releases it with the
// next delta that decides it, or at the end of the block; the output is
// the same however the text was split into events. A Responses stream's
// events are numbered, so its tail rides on the part's last delta event,
// kept back until the next event: the client gets the same events in the
// same order, their sequence numbers and other members unchanged. Its
// events that repeat the whole text (response.output_text.done,
// response.content_part.done, response.output_item.done, the response of
// response.completed …) carry the whole text's redaction, which is what
// the deltas join to. Responses reasoning summaries and refusals are not
// redacted, nor are function-call arguments.
type PII struct {
	// Requests redacts the text of requests before they go upstream.
	Requests bool `json:"requests,omitempty"`
	// Responses redacts the text of responses, streams included. Requests
	// then no longer ask for log probabilities (logprobs, top_logprobs,
	// the Responses include "message.output_text.logprobs"): their tokens
	// would carry the text the redaction removes.
	Responses bool `json:"responses,omitempty"`
	// Types lists the recognisers to use ("email", "phone", "card",
	// "iban", "ssn"); empty means all.
	Types []string `json:"types,omitempty"`
}

// Recognisers, in their order of precedence for matches of equal length.
const (
	piiCard = iota
	piiIBAN
	piiSSN
	piiPhone
	piiEmail
	piiKinds
)

var piiNames = [piiKinds]string{"card", "iban", "ssn", "phone", "email"}

var piiReplacement = [piiKinds]string{"[REDACTED_CARD]", "[REDACTED_IBAN]", "[REDACTED_SSN]", "[REDACTED_PHONE]", "[REDACTED_EMAIL]"}

func (p *PII) validate() error {
	for _, t := range p.Types {
		found := false
		for _, n := range piiNames {
			found = found || n == t
		}
		if !found {
			return fmt.Errorf("types: unknown recogniser %q (want email, phone, card, iban or ssn)", t)
		}
	}
	return nil
}

// redactor is a compiled set of recognisers. It is immutable.
type redactor struct {
	on [piiKinds]bool
}

func newRedactor(types []string) *redactor {
	r := &redactor{}
	for k := range r.on {
		r.on[k] = len(types) == 0
	}
	for _, t := range types {
		for k, n := range piiNames {
			if n == t {
				r.on[k] = true
			}
		}
	}
	return r
}

// scanResult is what a recogniser found at a position.
type scanResult struct {
	end     int  // end of the match, when ok
	ok      bool // a match
	partial bool // undecided: the text ended while a match was still possible
}

// process redacts s[0:] as far as it can decide, given before, the two
// bytes before s (zeros at the start of the text). Without final, it stops at the
// first position where a recogniser cannot yet decide, and returns how far
// it got; with final the end of s is the end of the text and it always
// consumes all of s. The decision at each position depends only on the
// text from it onwards and the byte before it, so the output is the same
// however the text is split into calls.
func (r *redactor) process(dst []byte, s string, before [2]byte, final bool) ([]byte, int) {
	i := 0
	for i < len(s) {
		var lb [2]byte // lb[1] is the byte before s[i], lb[0] the one before it
		switch i {
		case 0:
			lb = before
		case 1:
			lb = [2]byte{before[1], s[0]}
		default:
			lb = [2]byte{s[i-2], s[i-1]}
		}
		best, bestEnd, partial := -1, 0, false
		for k := range piiKinds {
			if !r.on[k] {
				continue
			}
			res := scanAt(k, s, i, lb, final)
			if res.partial {
				partial = true
				break
			}
			if res.ok && res.end > bestEnd {
				best, bestEnd = k, res.end
			}
		}
		if partial {
			return dst, i
		}
		if best >= 0 {
			dst = append(dst, piiReplacement[best]...)
			i = bestEnd
			continue
		}
		dst = append(dst, s[i])
		i++
	}
	return dst, i
}

// redact returns s with every match replaced, and whether anything was.
func (r *redactor) redact(s string) (string, bool) {
	if !maybePII(s) {
		return s, false
	}
	out, _ := r.process(make([]byte, 0, len(s)+16), s, [2]byte{}, true)
	if string(out) == s {
		return s, false
	}
	return string(out), true
}

// maybePII is a fast check: every recogniser needs a digit or an '@'.
func maybePII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '@' || c >= '0' && c <= '9' {
			return true
		}
	}
	return false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
func isAlpha(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }

// inNumber reports whether a position follows a digit and a separator:
// it is inside a run of digit groups, where no number starts.
func inNumber(lb [2]byte) bool {
	return isDigit(lb[0]) && (lb[1] == ' ' || lb[1] == '-' || lb[1] == '.')
}

func scanAt(k int, s string, i int, lb [2]byte, final bool) scanResult {
	prev := lb[1]
	if k != piiEmail && k != piiIBAN && inNumber(lb) {
		return scanResult{}
	}
	switch k {
	case piiCard:
		return scanCard(s, i, prev, final)
	case piiIBAN:
		return scanIBAN(s, i, prev, final)
	case piiSSN:
		return scanSSN(s, i, prev, final)
	case piiPhone:
		return scanPhone(s, i, prev, final)
	default:
		return scanEmail(s, i, prev, final)
	}
}

// undecided is the result at the end of a text that may go on.
func undecided(final bool) scanResult { return scanResult{partial: !final} }

// scanCard: digit groups separated by single spaces or dashes; the
// longest prefix ending at a group boundary with 13–19 digits that passes
// the Luhn check.
func scanCard(s string, i int, prev byte, final bool) scanResult {
	if !isDigit(s[i]) || isAlnum(prev) {
		return scanResult{}
	}
	var digits [19]byte
	n, best := 0, 0
	j := i
	for {
		for j < len(s) && isDigit(s[j]) {
			if n == len(digits) {
				// Twenty digits in a row: the run is no card number, and
				// shorter prefixes end inside a group.
				return scanResult{end: best, ok: best > 0}
			}
			digits[n] = s[j] - '0'
			n++
			j++
		}
		if j == len(s) {
			if !final {
				return undecided(final)
			}
		}
		if n >= 13 && luhn(digits[:n]) {
			best = j
		}
		if j == len(s) {
			break
		}
		if (s[j] == ' ' || s[j] == '-') && n < len(digits) {
			if j+1 == len(s) {
				if !final {
					return undecided(final)
				}
				break
			}
			if isDigit(s[j+1]) {
				j++
				continue
			}
		}
		break
	}
	return scanResult{end: best, ok: best > 0}
}

func luhn(d []byte) bool {
	sum := 0
	for i := range d {
		v := int(d[len(d)-1-i])
		if i%2 == 1 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return sum%10 == 0
}

// scanIBAN: two letters, two digits, then letters and digits in groups
// separated by single spaces; the longest prefix ending at a group
// boundary with 15–34 characters that passes mod 97.
func scanIBAN(s string, i int, prev byte, final bool) scanResult {
	if !isUpper(s[i]) || isAlnum(prev) {
		return scanResult{}
	}
	var chars [34]byte
	n, best := 0, 0
	j := i
	for {
		for j < len(s) && (isUpper(s[j]) || isDigit(s[j])) {
			c := s[j]
			switch {
			case n < 2 && !isUpper(c), n >= 2 && n < 4 && !isDigit(c):
				return scanResult{end: best, ok: best > 0}
			case n == len(chars):
				return scanResult{end: best, ok: best > 0}
			}
			chars[n] = c
			n++
			j++
		}
		if j == len(s) && !final {
			return undecided(final)
		}
		if n >= 15 && (j == len(s) || !isAlnum(s[j])) && ibanValid(chars[:n]) {
			best = j
		}
		if j < len(s) && s[j] == ' ' && n >= 4 {
			if j+1 == len(s) {
				if !final {
					return undecided(final)
				}
				break
			}
			if isUpper(s[j+1]) || isDigit(s[j+1]) {
				j++
				continue
			}
		}
		break
	}
	return scanResult{end: best, ok: best > 0}
}

// ibanValid is the ISO 13616 check: the country and check digits moved to
// the end, letters as 10–35, the number mod 97 is 1.
func ibanValid(c []byte) bool {
	rem := 0
	add := func(b byte) {
		if isDigit(b) {
			rem = (rem*10 + int(b-'0')) % 97
		} else {
			rem = (rem*100 + int(b-'A'+10)) % 97
		}
	}
	for _, b := range c[4:] {
		add(b)
	}
	for _, b := range c[:4] {
		add(b)
	}
	return rem == 1
}

// scanSSN: ddd-dd-dddd with area 001–899 but 666, group 01–99, serial
// 0001–9999, not inside a longer token.
func scanSSN(s string, i int, prev byte, final bool) scanResult {
	if !isDigit(s[i]) || isAlnum(prev) || prev == '-' {
		return scanResult{}
	}
	const shape = "ddd-dd-dddd"
	j := i
	for k := 0; k < len(shape); k++ {
		if j == len(s) {
			return undecided(final)
		}
		c := s[j]
		if shape[k] == 'd' && !isDigit(c) || shape[k] == '-' && c != '-' {
			return scanResult{}
		}
		j++
	}
	if j == len(s) && !final {
		return undecided(final) // the next byte could extend the token
	}
	if j < len(s) && (isAlnum(s[j]) || s[j] == '-') {
		return scanResult{}
	}
	area, group, serial := s[i:i+3], s[i+4:i+6], s[i+7:i+11]
	if area == "000" || area == "666" || area[0] == '9' || group == "00" || serial == "0000" {
		return scanResult{}
	}
	return scanResult{end: j, ok: true}
}

// scanPhone: an optional '+' and country code, an optional "(area)",
// then digit groups of 1–4 joined by one consistent separator; the whole
// run, if it has 10–15 digits (7–15 after '+').
func scanPhone(s string, i int, prev byte, final bool) scanResult {
	c := s[i]
	if !(isDigit(c) || c == '+' || c == '(') || isAlnum(prev) || prev == '+' || prev == '_' {
		return scanResult{}
	}
	j := i
	plus := false
	digits := 0
	groups := 0
	var sep byte // the separator between plain groups, once chosen
	if c == '+' {
		plus = true
		j++
		n := 0
		for j < len(s) && isDigit(s[j]) && n < 15 {
			j++
			n++
		}
		if j == len(s) && !final {
			return undecided(final)
		}
		if n == 0 || j < len(s) && isDigit(s[j]) {
			return scanResult{}
		}
		digits += n
		groups++
		if j < len(s) && (s[j] == ' ' || s[j] == '-' || s[j] == '.') {
			// A separator after the country code may differ from the rest.
			if j+1 == len(s) {
				if !final {
					return undecided(final)
				}
				return phoneEnd(s, j, digits, plus, groups)
			}
			if isDigit(s[j+1]) || s[j+1] == '(' {
				j++
			}
		}
	}
	if j < len(s) && s[j] == '(' {
		k := j + 1
		n := 0
		for k < len(s) && isDigit(s[k]) && n < 4 {
			k++
			n++
		}
		if k == len(s) {
			if !final {
				return undecided(final)
			}
			return phoneEnd(s, j, digits, plus, groups)
		}
		if n == 0 || s[k] != ')' {
			return phoneEnd(s, j, digits, plus, groups)
		}
		k++
		digits += n
		groups++
		j = k
		if j == len(s) && !final {
			return undecided(final)
		}
		if j < len(s) && s[j] == ' ' {
			if j+1 == len(s) && !final {
				return undecided(final)
			}
			if j+1 < len(s) && isDigit(s[j+1]) {
				j++
			}
		}
	}
	for {
		k := j
		n := 0
		for k < len(s) && isDigit(s[k]) {
			k++
			n++
		}
		if k == len(s) && !final {
			return undecided(final)
		}
		if n == 0 || n > 4 && !(plus && groups == 1 && n <= 15) {
			// No group here, or one too long to be part of a phone number.
			if n > 4 {
				return scanResult{}
			}
			return phoneEnd(s, j, digits, plus, groups)
		}
		digits += n
		groups++
		if digits > 15 {
			return scanResult{}
		}
		j = k
		if j == len(s) {
			break
		}
		d := s[j]
		if d != ' ' && d != '-' && d != '.' || sep != 0 && d != sep {
			break
		}
		if j+1 == len(s) {
			if !final {
				return undecided(final)
			}
			break
		}
		if !isDigit(s[j+1]) {
			break
		}
		sep = d
		j++
	}
	return phoneEnd(s, j, digits, plus, groups)
}

func phoneEnd(s string, j, digits int, plus bool, groups int) scanResult {
	minDigits := 10
	if plus {
		minDigits = 7
	}
	// A plain run of digits is a number, not a phone: it needs a '+' or
	// a second group.
	if digits < minDigits || digits > 15 || !plus && groups < 2 {
		return scanResult{}
	}
	return scanResult{end: j, ok: true}
}

func emailLocal(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'
}

func emailDomain(c byte) bool { return isAlnum(c) || c == '-' || c == '.' }

// scanEmail: a local part of up to 64 characters, '@', and a domain of
// labels whose last is 2 or more letters; the longest such domain.
func scanEmail(s string, i int, prev byte, final bool) scanResult {
	if !emailLocal(s[i]) || emailLocal(prev) || prev == '@' {
		return scanResult{}
	}
	j := i
	for j < len(s) && emailLocal(s[j]) {
		if j-i == 64 {
			return scanResult{}
		}
		j++
	}
	if j == len(s) {
		return undecided(final)
	}
	if s[j] != '@' {
		return scanResult{}
	}
	k := j + 1
	for k < len(s) && emailDomain(s[k]) {
		if k-j > 255 {
			return scanResult{}
		}
		k++
	}
	if k == len(s) && !final {
		return undecided(final)
	}
	// The longest prefix of the domain that is valid labels ending in a
	// top-level domain of letters.
	best := 0
	start := j + 1
	labels := 0
	for p := start; p <= k; p++ {
		if p < k && s[p] != '.' {
			continue
		}
		label := s[start:p]
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			break
		}
		labels++
		if labels >= 2 && len(label) >= 2 && allAlpha(label) {
			best = p
		}
		start = p + 1
	}
	if best == 0 {
		return scanResult{}
	}
	return scanResult{end: best, ok: true}
}

func allAlpha(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isAlpha(s[i]) {
			return false
		}
	}
	return true
}

// textStream redacts one stream of text delivered in pieces.
type textStream struct {
	pending []byte
	before  [2]byte // the last two bytes released, as they were before redaction
}

// write appends the redacted text that can be released after text
// arrives; final releases everything.
func (t *textStream) write(r *redactor, dst []byte, text string, final bool) []byte {
	t.pending = append(t.pending, text...)
	s := string(t.pending) // the bytes are copied back below; small
	dst, n := r.process(dst, s, t.before, final)
	switch {
	case n >= 2:
		t.before = [2]byte{s[n-2], s[n-1]}
	case n == 1:
		t.before = [2]byte{t.before[1], s[0]}
	}
	t.pending = append(t.pending[:0], s[n:]...)
	return dst
}

// pendingLen is the number of bytes held back.
func (t *textStream) pendingLen() int { return len(t.pending) }

// Keys whose string values are never text a person wrote.
var piiSkipKeys = map[string]bool{"type": true, "role": true, "id": true, "tool_call_id": true, "tool_use_id": true,
	"call_id": true, "name": true, "signature": true, "data": true, "url": true, "media_type": true, "detail": true,
	"format": true, "model": true, "file_id": true, "image_url": true, "cache_control": true,
	// JSON text inside a string: a redaction could break it.
	"arguments": true, "partial_json": true,
	// Signed: a changed thinking text fails its signature on the next turn.
	"thinking": true, "reasoning_content": true, "thinking_blocks": true}

// Top-level members whose strings are text.
var piiTextRoots = map[string]bool{"messages": true, "system": true, "instructions": true, "input": true, "prompt": true}

// redactJSON redacts the text strings of a JSON document: every string
// under one of roots (at the top level; nil means any) except those of
// piiSkipKeys and data: URLs. It returns body itself when nothing changed.
func (r *redactor) redactJSON(body []byte, roots map[string]bool) []byte {
	w := jsonRedactor{r: r, src: body, roots: roots}
	i := skipWS(body, 0)
	if w.value(i, 0, "", roots == nil) < 0 || !w.changed {
		return body
	}
	return append(w.out, body[w.last:]...)
}

type jsonRedactor struct {
	r       *redactor
	src     []byte
	roots   map[string]bool
	out     []byte
	last    int // src[:last] is accounted for in out
	changed bool
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// value walks the value at i; it returns the index after it, or -1 on
// malformed JSON.
func (w *jsonRedactor) value(i, depth int, key string, text bool) int {
	b := w.src
	if i >= len(b) || depth > 64 {
		return -1
	}
	switch b[i] {
	case '{':
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == '}' {
			return i + 1
		}
		for {
			if i >= len(b) || b[i] != '"' {
				return -1
			}
			end := stringEnd(b, i)
			if end < 0 {
				return -1
			}
			var k string
			if err := json.Unmarshal(b[i:end], &k); err != nil {
				return -1
			}
			i = skipWS(b, end)
			if i >= len(b) || b[i] != ':' {
				return -1
			}
			childText := text
			if depth == 0 && w.roots != nil {
				childText = w.roots[k]
			}
			if piiSkipKeys[k] || (k == "input" && depth > 0) {
				// A nested "input" is an Anthropic tool_use block's
				// arguments (a top-level one is a Responses or embeddings
				// request's text).
				childText = false
			}
			if i = w.value(skipWS(b, i+1), depth+1, k, childText); i < 0 {
				return -1
			}
			i = skipWS(b, i)
			if i < len(b) && b[i] == ',' {
				i = skipWS(b, i+1)
				continue
			}
			if i < len(b) && b[i] == '}' {
				return i + 1
			}
			return -1
		}
	case '[':
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1
		}
		for {
			if i = w.value(i, depth+1, key, text); i < 0 {
				return -1
			}
			i = skipWS(b, i)
			if i < len(b) && b[i] == ',' {
				i = skipWS(b, i+1)
				continue
			}
			if i < len(b) && b[i] == ']' {
				return i + 1
			}
			return -1
		}
	case '"':
		end := stringEnd(b, i)
		if end < 0 {
			return -1
		}
		if text {
			w.redactString(i, end)
		}
		return end
	}
	// A number or a literal.
	for i < len(b) && !strings.ContainsRune(",}] \t\r\n", rune(b[i])) {
		i++
	}
	return i
}

func (w *jsonRedactor) redactString(start, end int) {
	raw := w.src[start:end]
	if !maybePIIBytes(raw) {
		return
	}
	var s string
	if json.Unmarshal(raw, &s) != nil || strings.HasPrefix(s, "data:") {
		return
	}
	red, ok := w.r.redact(s)
	if !ok {
		return
	}
	w.out = append(w.out, w.src[w.last:start]...)
	w.out = jsonobj.AppendString(w.out, red)
	w.last = end
	w.changed = true
}

func maybePIIBytes(b []byte) bool {
	for _, c := range b {
		if c == '@' || c >= '0' && c <= '9' {
			return true
		}
	}
	return false
}

// stringEnd returns the index after the JSON string starting at i, or -1.
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}
