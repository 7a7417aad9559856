package secrets

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"regexp"
	"slices"
	"unicode/utf8"
)

// checkEvery is how many bytes the engine scans between looks at ctx.
const checkEvery = 1 << 20

type span struct{ lo, hi int }

// scratch is per-scan working memory, pooled so a scan allocates little.
type scratch struct {
	hits    []hit
	wins    [][]span // per rule
	touched []int32  // rules with windows
	off     []bool   // per rule: off for this file
	offList []int32
	cands   []candidate
	encoded []encoded
	decBuf  []byte
	nl      []int
	orig    *text // the content being scanned
	budget  int   // bytes left before the next ctx check
}

func newScratch(nrules int) *scratch {
	return &scratch{wins: make([][]span, nrules), off: make([]bool, nrules)}
}

func (st *scratch) resetWindows() {
	for _, r := range st.touched {
		st.wins[r] = st.wins[r][:0]
	}
	st.touched = st.touched[:0]
}

func (st *scratch) reset() {
	st.resetWindows()
	st.orig = nil
	for _, r := range st.offList {
		st.off[r] = false
	}
	st.offList = st.offList[:0]
	st.cands = st.cands[:0]
	st.hits = st.hits[:0]
	st.budget = checkEvery
}

func (st *scratch) setOff(r int) {
	if !st.off[r] {
		st.off[r] = true
		st.offList = append(st.offList, int32(r))
	}
}

// addWindow adds [lo,hi) to rule r's windows, merging with the last one.
func (st *scratch) addWindow(r int32, lo, hi int) {
	w := st.wins[r]
	if len(w) == 0 {
		st.touched = append(st.touched, r)
	} else if last := &w[len(w)-1]; lo <= last.hi && hi >= last.lo {
		last.lo = min(last.lo, lo)
		last.hi = max(last.hi, hi)
		return
	}
	st.wins[r] = append(w, span{lo, hi})
}

// candidate is a match that passed a rule's checks. It holds the secret,
// which never leaves the package.
type candidate struct {
	rule       *rule
	start, end int // in the scanned content
	secret     string
	entropy    float64
}

// text is content with its newline index.
type text struct {
	data  []byte
	nl    []int // offsets of '\n'
	ascii bool  // no byte ≥ 0x80: runes are bytes
}

func isASCII(data []byte) bool {
	for _, c := range data {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func indexNewlines(data []byte, nl []int) []int {
	for off := 0; ; {
		i := bytes.IndexByte(data[off:], '\n')
		if i < 0 {
			return nl
		}
		nl = append(nl, off+i)
		off += i + 1
	}
}

// line returns the 0-based line of pos.
func (t *text) line(pos int) int {
	i, _ := slices.BinarySearch(t.nl, pos)
	return i
}

func (t *text) lineStart(line int) int {
	if line <= 0 {
		return 0
	}
	if line > len(t.nl) {
		return len(t.data)
	}
	return t.nl[line-1] + 1
}

func (t *text) lineEnd(line int) int {
	if line < 0 {
		return 0
	}
	if line >= len(t.nl) {
		return len(t.data)
	}
	return t.nl[line]
}

// lines returns the whole lines that hold [start,end).
func (t *text) lines(start, end int) []byte {
	first := t.line(start)
	last := first
	if end > start {
		last = t.line(end - 1)
	}
	return t.data[t.lineStart(first):t.lineEnd(last)]
}

// Scan scans one file's content and returns its findings, sorted by line,
// column and rule id. path is the slash path used in findings, path rules and
// allowlists. It is safe for concurrent use.
func (s *Scanner) Scan(path string, content []byte) []Finding {
	f, _ := s.scan(context.Background(), path, content)
	return f
}

func (s *Scanner) scan(ctx context.Context, path string, data []byte) ([]Finding, error) {
	if s.globallyAllowed(path) {
		return nil, nil
	}
	st := s.scratch.Get().(*scratch)
	defer s.scratch.Put(st)
	st.reset()

	for _, r := range s.pathGated {
		if r.path != nil && !r.path.MatchString(path) {
			st.setOff(r.idx)
			continue
		}
		for _, a := range r.allow {
			if a.pathOnly && a.pathAllowed(path) {
				st.setOff(r.idx)
				break
			}
		}
	}
	findings := s.pathFindings(path)

	// One pass for all keywords.
	var state uint32
	for off := 0; off < len(data); off += checkEvery {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		end := min(len(data), off+checkEvery)
		st.hits, state = s.keywords.scan(data[off:end], off, state, st.hits)
	}
	st.nl = indexNewlines(data, st.nl[:0])
	t := &text{data: data, nl: st.nl, ascii: isASCII(data)}
	st.orig = t
	if len(st.hits) > 0 || len(s.always) > 0 {
		s.addWindows(st, t, st.hits)
		if err := s.runWindows(ctx, st, t, path, nil); err != nil {
			return nil, err
		}
	}
	if s.decodeMax > 0 {
		if err := s.decodePasses(ctx, st, t, path); err != nil {
			return nil, err
		}
	}
	return append(findings, s.findings(st, t, path)...), nil
}

func (s *Scanner) globallyAllowed(path string) bool {
	for _, a := range s.global {
		if a.pathOnly && a.pathAllowed(path) {
			return true
		}
	}
	return false
}

// pathFindings returns the findings of rules that match the path alone.
func (s *Scanner) pathFindings(path string) []Finding {
	var findings []Finding
	for _, r := range s.pathOnly {
		if !r.path.MatchString(path) || slices.ContainsFunc(r.allow, func(a *allowlist) bool {
			return a.pathOnly && a.pathAllowed(path)
		}) {
			continue
		}
		findings = append(findings, Finding{
			RuleID: r.id, Description: r.description, Severity: r.severity, File: path,
			Fingerprint: fingerprint(r.id, path, ""),
		})
	}
	return findings
}

// addWindows turns keyword hits into per-rule windows.
func (s *Scanner) addWindows(st *scratch, t *text, hits []hit) {
	line := 0
	for _, h := range hits {
		start := h.end - s.keywords.lens[h.id]
		for line < len(t.nl) && t.nl[line] < h.end-1 {
			line++
		}
		for _, ri := range s.kwRules[h.id] {
			if st.off[ri] {
				continue
			}
			r := s.rules[ri]
			lo, hi := r.window(t, start, h.end, line)
			if r.split {
				var ok bool
				if lo, hi, ok = r.coreWindow(t, start, line, lo, hi); !ok {
					continue
				}
			}
			st.addWindow(ri, lo, hi)
		}
	}
	for _, ri := range s.always {
		if !st.off[ri] {
			st.addWindow(ri, 0, len(t.data))
		}
	}
}

// window returns where a match of r that overlaps data[start:end] (a keyword
// on 0-based line line) can lie.
func (r *rule) window(t *text, start, end, line int) (lo, hi int) {
	switch r.mode {
	case winFile:
		return 0, len(t.data)
	case winLines:
		k := r.info.maxNL
		return t.lineStart(line - k), t.lineEnd(line + k)
	}
	n := r.info.maxLen
	if t.ascii {
		n = r.info.maxRunes
	}
	lo, hi = max(0, start-n), min(len(t.data), end+n)
	k := r.info.maxNL
	return max(lo, t.lineStart(line-k)), min(hi, t.lineEnd(line+k))
}

// coreWindow narrows the window [lo,hi) of a rule with a keyword core for
// the keyword occurrence at start: the core must match there, and a match
// of the rule then lies in [start-prefix, end of the core match).
func (r *rule) coreWindow(t *text, start, line, lo, hi int) (int, int, bool) {
	if r.coreHead != nil {
		n := r.coreHeadLen
		if t.ascii {
			n = r.coreHeadRunes
		}
		if !r.coreHead().Match(t.data[start:min(hi, start+n)]) {
			return 0, 0, false
		}
	}
	if r.core != nil && !r.core().Match(t.data[start:hi]) {
		return 0, 0, false
	}
	_, end := r.snap(t.data, start, hi)
	re := r.coreMid
	if end == len(t.data) {
		re = r.coreEnd
	}
	m := re().FindIndex(t.data[start:end])
	if m == nil {
		return 0, 0, false
	}
	p := r.prefixInfo
	n := p.maxLen
	if t.ascii {
		n = p.maxRunes
	}
	if n != unbounded {
		lo = max(lo, start-n)
	}
	if p.maxNL != unbounded {
		lo = max(lo, t.lineStart(line-p.maxNL))
	}
	return lo, start + m[1], true
}

func isWordByte(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_'
}

// snap widens a window so that the regex sees the same context at its edges
// as in the whole file: whole runes, whole words for \b, whole lines for
// (?m)^ and (?m)$.
func (r *rule) snap(data []byte, lo, hi int) (int, int) {
	n := len(data)
	for lo > 0 && lo < n && !utf8.RuneStart(data[lo]) {
		lo--
	}
	for hi < n && !utf8.RuneStart(data[hi]) {
		hi++
	}
	if r.info.wordAnchor {
		for lo > 0 && isWordByte(data[lo-1]) {
			lo--
		}
		for hi < n && isWordByte(data[hi]) {
			hi++
		}
	}
	if r.info.lineAnchor {
		if i := bytes.LastIndexByte(data[:lo], '\n'); i >= 0 {
			lo = i + 1
		} else {
			lo = 0
		}
		if i := bytes.IndexByte(data[hi:], '\n'); i >= 0 {
			hi += i
		} else {
			hi = n
		}
	}
	return lo, hi
}

// keep reports whether a match at [start,end) of the current text should be
// kept; decoding passes keep only matches over decoded text.
type keepFunc func(start, end int) (origStart, origEnd int, ok bool)

// runWindows runs each rule's regex over its windows and records candidates.
func (s *Scanner) runWindows(ctx context.Context, st *scratch, t *text, path string, keep keepFunc) error {
	data := t.data
	n := len(data)
	for _, ri := range st.touched {
		r := s.rules[ri]
		for _, w := range st.wins[ri] {
			lo, hi := r.snap(data, w.lo, w.hi)
			if st.budget -= hi - lo; st.budget < 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
				st.budget = checkEvery
			}
			win := data[lo:hi]
			if r.required != nil && r.required.first(win) < 0 {
				continue
			}
			if r.pre != nil && !r.pre().Match(win) {
				continue
			}
			var re *regexp.Regexp
			switch {
			case lo == 0 && hi == n:
				re = r.re()
			case lo == 0:
				re = r.reHead()
			case hi == n:
				re = r.reTail()
			default:
				re = r.reMid()
			}
			for _, m := range re.FindAllIndex(win, -1) {
				s.evalMatch(st, r, t, lo+m[0], lo+m[1], path, keep)
			}
		}
	}
	return nil
}

const allowSignature = "gitleaks:allow"

// evalMatch applies gitleaks' checks to one regex match and records it as a
// candidate if it survives.
func (s *Scanner) evalMatch(st *scratch, r *rule, t *text, start, end int, path string, keep keepFunc) {
	// gitleaks trims newlines off the match.
	for start < end && t.data[start] == '\n' {
		start++
	}
	for end > start && t.data[end-1] == '\n' {
		end--
	}
	origStart, origEnd := start, end
	if keep != nil {
		var ok bool
		if origStart, origEnd, ok = keep(start, end); !ok {
			return
		}
	}
	match := t.data[start:end]
	secret := match
	if r.info.groups > 0 {
		// As gitleaks, match the regex again on the match alone.
		if idx := r.re().FindSubmatchIndex(match); idx != nil {
			if g := r.secretGroup; g > 0 {
				secret = nil
				if idx[2*g] >= 0 {
					secret = match[idx[2*g]:idx[2*g+1]]
				}
			} else {
				for g := 1; g <= r.info.groups; g++ {
					if idx[2*g] >= 0 && idx[2*g+1] > idx[2*g] {
						secret = match[idx[2*g]:idx[2*g+1]]
						break
					}
				}
			}
		}
	}
	entropy := shannonEntropy(secret)
	if r.entropy != 0 && entropy <= r.entropy {
		return
	}
	line := t.lines(start, end)
	if keep == nil {
		if bytes.Contains(line, []byte(allowSignature)) {
			return
		}
	} else if bytes.Contains(st.origLines(origStart, origEnd), []byte(allowSignature)) {
		return
	}
	for _, a := range s.global {
		if a.findingAllowed(path, secret, match, line) {
			return
		}
	}
	for _, a := range r.allow {
		if a.findingAllowed(path, secret, match, line) {
			return
		}
	}
	st.cands = append(st.cands, candidate{rule: r, start: origStart, end: origEnd, secret: string(secret), entropy: entropy})
}

// origLines returns the lines of the original content that hold [start,end).
func (st *scratch) origLines(start, end int) []byte {
	return st.orig.lines(start, end)
}

func (a *allowlist) pathAllowed(path string) bool {
	return a.paths != nil && path != "" && a.paths.match([]byte(path))
}

func (a *allowlist) findingAllowed(path string, secret, match, line []byte) bool {
	target := secret
	switch a.target {
	case targetMatch:
		target = match
	case targetLine:
		target = line
	}
	regexAllowed := a.regexes != nil && len(target) > 0 && a.regexes.match(target)
	stop := a.stop != nil && len(secret) > 0 && a.stop.first(secret) >= 0
	if !a.and {
		return regexAllowed || stop
	}
	if a.paths != nil && !a.pathAllowed(path) {
		return false
	}
	if a.regexes != nil && !regexAllowed {
		return false
	}
	if a.stop != nil && !stop {
		return false
	}
	return true
}

// shannonEntropy is gitleaks' entropy: over runes, divided by the length in bytes.
func shannonEntropy(data []byte) float64 {
	if len(data) == 0 {
		return 0
	}
	inv := 1 / float64(len(data))
	var entropy float64
	ascii := true
	var counts [256]int
	for _, c := range data {
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
		counts[c]++
	}
	if ascii {
		for _, n := range counts {
			if n > 0 {
				f := float64(n) * inv
				entropy -= f * math.Log2(f)
			}
		}
		return entropy
	}
	runes := map[rune]int{}
	for _, r := range string(data) {
		runes[r]++
	}
	for _, n := range runes {
		f := float64(n) * inv
		entropy -= f * math.Log2(f)
	}
	return entropy
}

// findings turns the candidates into sorted findings: duplicates removed and
// generic rules yielding, as in gitleaks, to a specific rule that found a
// secret containing theirs on the same line.
func (s *Scanner) findings(st *scratch, t *text, path string) []Finding {
	if len(st.cands) == 0 {
		return nil
	}
	type located struct {
		*candidate
		line, col, endLine int
	}
	loc := make([]located, 0, len(st.cands))
	for i := range st.cands {
		c := &st.cands[i]
		line := t.line(c.start)
		endLine := line
		if c.end > c.start {
			endLine = t.line(c.end - 1)
		}
		loc = append(loc, located{c, line + 1, c.start - t.lineStart(line) + 1, endLine + 1})
	}
	slices.SortFunc(loc, func(a, b located) int {
		return cmp.Or(cmp.Compare(a.line, b.line), cmp.Compare(a.col, b.col),
			cmp.Compare(a.rule.id, b.rule.id), cmp.Compare(a.end, b.end), cmp.Compare(a.secret, b.secret))
	})
	loc = slices.CompactFunc(loc, func(a, b located) bool {
		return a.rule == b.rule && a.start == b.start && a.end == b.end && a.secret == b.secret
	})
	out := make([]Finding, 0, len(loc))
	for i, c := range loc {
		if c.rule.generic {
			shadowed := false
			for j := i; j >= 0 && loc[j].line == c.line && !shadowed; j-- {
				shadowed = !loc[j].rule.generic && bytes.Contains([]byte(loc[j].secret), []byte(c.secret))
			}
			for j := i + 1; j < len(loc) && loc[j].line == c.line && !shadowed; j++ {
				shadowed = !loc[j].rule.generic && bytes.Contains([]byte(loc[j].secret), []byte(c.secret))
			}
			if shadowed {
				continue
			}
		}
		out = append(out, Finding{
			RuleID:      c.rule.id,
			Description: c.rule.description,
			Severity:    c.rule.severity,
			File:        path,
			Line:        c.line,
			Column:      c.col,
			EndLine:     c.endLine,
			Redacted:    redact(c.secret),
			Fingerprint: fingerprint(c.rule.id, path, c.secret),
			Entropy:     c.entropy,
		})
	}
	return out
}

// redact keeps at most the first four characters of secret (a quarter of a
// short one) and appends "****".
func redact(secret string) string {
	n := min(4, utf8.RuneCountInString(secret)/4)
	i := 0
	for k := 0; k < n; k++ {
		_, size := utf8.DecodeRuneInString(secret[i:])
		i += size
	}
	return secret[:i] + "****"
}

// fingerprint is a one-way identifier of a secret in a file for a rule.
func fingerprint(ruleID, path, secret string) string {
	h := sha256.New()
	h.Write([]byte(ruleID))
	h.Write([]byte{0})
	h.Write([]byte(path))
	h.Write([]byte{0})
	h.Write([]byte(secret))
	return hex.EncodeToString(h.Sum(nil)[:8])
}
