package secrets

import (
	"regexp/syntax"
	"strings"
	"unicode"
	"unicode/utf8"
)

// unbounded marks a length with no upper bound.
const unbounded = -1

// regexInfo is what the engine needs to know about a rule's regex to scan
// only windows of a file with it.
type regexInfo struct {
	maxLen     int  // longest match in bytes, or unbounded
	maxRunes   int  // longest match in runes, or unbounded
	maxNL      int  // most '\n' in a match, or unbounded
	beginText  bool // uses ^ (without m) or \A
	endText    bool // uses $ (without m) or \z
	lineAnchor bool // uses ^ or $ with the m flag
	wordAnchor bool // uses \b or \B
	groups     int  // capture groups
}

func parseRegex(expr string) (*syntax.Regexp, error) {
	// The flags regexp.Compile uses.
	return syntax.Parse(expr, syntax.Perl)
}

func analyse(re *syntax.Regexp) regexInfo {
	info := regexInfo{
		maxLen:   maxBytes(re),
		maxRunes: maxRunes(re),
		maxNL:    maxNewlines(re),
		groups:   re.MaxCap(),
	}
	walk(re, func(r *syntax.Regexp) {
		switch r.Op {
		case syntax.OpBeginText:
			info.beginText = true
		case syntax.OpEndText:
			info.endText = true
		case syntax.OpBeginLine, syntax.OpEndLine:
			info.lineAnchor = true
		case syntax.OpWordBoundary, syntax.OpNoWordBoundary:
			info.wordAnchor = true
		}
	})
	return info
}

func walk(re *syntax.Regexp, f func(*syntax.Regexp)) {
	f(re)
	for _, s := range re.Sub {
		walk(s, f)
	}
}

func addLen(a, b int) int {
	if a == unbounded || b == unbounded {
		return unbounded
	}
	return a + b
}

func mulLen(a, n int) int {
	if a == 0 {
		return 0
	}
	if a == unbounded || n == unbounded {
		return unbounded
	}
	return a * n
}

func maxLen2(a, b int) int {
	if a == unbounded || b == unbounded {
		return unbounded
	}
	return max(a, b)
}

// runeBytes is the longest UTF-8 encoding of r or of a rune it folds to.
func runeBytes(r rune, fold bool) int {
	n := utf8.RuneLen(r)
	if n < 0 {
		n = 3 // utf8.RuneError
	}
	if fold {
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			n = max(n, utf8.RuneLen(f))
		}
	}
	return n
}

// maxBytes is the length in bytes of the longest string re matches.
func maxBytes(re *syntax.Regexp) int {
	return maxMeasure(re, func(r *syntax.Regexp) int {
		switch r.Op {
		case syntax.OpLiteral:
			n := 0
			for _, c := range r.Rune {
				n += runeBytes(c, r.Flags&syntax.FoldCase != 0)
			}
			return n
		case syntax.OpCharClass:
			n := 0
			for i := 1; i < len(r.Rune); i += 2 {
				n = max(n, runeBytes(r.Rune[i], false))
			}
			return n
		case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
			return utf8.UTFMax
		}
		return 0
	})
}

// maxNewlines is the most newlines a match of re can hold.
func maxNewlines(re *syntax.Regexp) int {
	return maxMeasure(re, func(r *syntax.Regexp) int {
		switch r.Op {
		case syntax.OpLiteral:
			n := 0
			for _, c := range r.Rune {
				if c == '\n' {
					n++
				}
			}
			return n
		case syntax.OpCharClass:
			for i := 0; i < len(r.Rune); i += 2 {
				if r.Rune[i] <= '\n' && '\n' <= r.Rune[i+1] {
					return 1
				}
			}
			return 0
		case syntax.OpAnyChar:
			return 1
		}
		return 0
	})
}

// maxMeasure sums leaf measures along the longest path through re.
func maxMeasure(re *syntax.Regexp, leaf func(*syntax.Regexp) int) int {
	switch re.Op {
	case syntax.OpCapture:
		return maxMeasure(re.Sub[0], leaf)
	case syntax.OpStar, syntax.OpPlus:
		return mulLen(maxMeasure(re.Sub[0], leaf), unbounded)
	case syntax.OpQuest:
		return maxMeasure(re.Sub[0], leaf)
	case syntax.OpRepeat:
		return mulLen(maxMeasure(re.Sub[0], leaf), re.Max)
	case syntax.OpConcat:
		n := 0
		for _, s := range re.Sub {
			n = addLen(n, maxMeasure(s, leaf))
		}
		return n
	case syntax.OpAlternate:
		n := 0
		for _, s := range re.Sub {
			n = maxLen2(n, maxMeasure(s, leaf))
		}
		return n
	}
	return leaf(re)
}

// minBytes reports whether re can match the empty string.
func nullable(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText,
		syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary, syntax.OpStar, syntax.OpQuest:
		return true
	case syntax.OpCapture, syntax.OpPlus:
		return nullable(re.Sub[0])
	case syntax.OpRepeat:
		return re.Min == 0 || nullable(re.Sub[0])
	case syntax.OpConcat:
		for _, s := range re.Sub {
			if !nullable(s) {
				return false
			}
		}
		return true
	case syntax.OpAlternate:
		for _, s := range re.Sub {
			if nullable(s) {
				return true
			}
		}
		return false
	}
	return false
}

// clone copies re deeply, applying f to each copied node bottom-up.
func clone(re *syntax.Regexp, f func(*syntax.Regexp) *syntax.Regexp) *syntax.Regexp {
	c := *re
	c.Sub = nil
	c.Sub0 = [1]*syntax.Regexp{}
	for _, s := range re.Sub {
		c.Sub = append(c.Sub, clone(s, f))
	}
	c.Rune = append([]rune(nil), re.Rune...)
	return f(&c)
}

var noMatch = &syntax.Regexp{Op: syntax.OpNoMatch}

// windowVariant rewrites re for a window that does not start (noBegin) or
// end (noEnd) where the file does: ^ and \A, or $ and \z, cannot match there.
func windowVariant(re *syntax.Regexp, noBegin, noEnd bool) *syntax.Regexp {
	return clone(re, func(r *syntax.Regexp) *syntax.Regexp {
		if (noBegin && r.Op == syntax.OpBeginText) || (noEnd && r.Op == syntax.OpEndText) {
			return noMatch
		}
		return r
	})
}

// relaxRepeat is the largest counted repetition kept as it is in a
// prefilter; larger ones are opened up, as Go's regexp expands each copy.
const relaxRepeat = 8

// prefilter returns a regex that matches wherever re matches (a superset)
// but compiles to a much smaller program: counted repetitions are opened up
// ({m,n} → {min(m,8),}), assertions are dropped, and optional leading and
// trailing parts of the top-level concatenation are removed (they cannot
// decide whether a match exists). It returns nil when that changes nothing.
func prefilter(re *syntax.Regexp) *syntax.Regexp {
	changed := false
	r := clone(re, func(r *syntax.Regexp) *syntax.Regexp {
		switch r.Op {
		case syntax.OpRepeat:
			if r.Max == unbounded && r.Min <= relaxRepeat {
				return r
			}
			if r.Max != unbounded && r.Max <= relaxRepeat {
				return r
			}
			changed = true
			r.Min = min(r.Min, relaxRepeat)
			r.Max = unbounded
		case syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
			syntax.OpWordBoundary, syntax.OpNoWordBoundary:
			changed = true
			return &syntax.Regexp{Op: syntax.OpEmptyMatch}
		case syntax.OpCapture:
			// Captures cost time and are not needed.
			changed = true
			return r.Sub[0]
		}
		return r
	})
	if r.Op == syntax.OpConcat {
		subs := r.Sub
		for len(subs) > 1 && nullable(subs[0]) {
			subs = subs[1:]
			changed = true
		}
		for len(subs) > 1 && nullable(subs[len(subs)-1]) {
			subs = subs[:len(subs)-1]
			changed = true
		}
		r.Sub = subs
	}
	if !changed {
		return nil
	}
	return r
}

// maxRunes is the length in runes of the longest string re matches; in
// ASCII text that is its length in bytes.
func maxRunes(re *syntax.Regexp) int {
	return maxMeasure(re, func(r *syntax.Regexp) int {
		switch r.Op {
		case syntax.OpLiteral:
			return len(r.Rune)
		case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
			return 1
		}
		return 0
	})
}

// maxLitSet bounds the literal prefix sets computed below.
const maxLitSet = 256

// litSet returns lowercased strings such that every match of re starts with
// one of them; complete reports that re matches exactly those strings
// (case-insensitively). ok is false when re has no such finite set.
func litSet(re *syntax.Regexp) (set []string, complete, ok bool) {
	switch re.Op {
	case syntax.OpLiteral:
		return []string{lowerASCII(string(re.Rune))}, true, true
	case syntax.OpEmptyMatch:
		return []string{""}, true, true
	case syntax.OpCharClass:
		n := 0
		for i := 0; i < len(re.Rune); i += 2 {
			n += int(re.Rune[i+1]-re.Rune[i]) + 1
			if n > 16 {
				return nil, false, false
			}
		}
		for i := 0; i < len(re.Rune); i += 2 {
			for c := re.Rune[i]; c <= re.Rune[i+1]; c++ {
				s := lowerASCII(string(c))
				if !containsString(set, s) {
					set = append(set, s)
				}
			}
		}
		return set, true, true
	case syntax.OpCapture:
		return litSet(re.Sub[0])
	case syntax.OpConcat:
		return litPrefixes(re.Sub)
	case syntax.OpAlternate:
		complete = true
		for _, s := range re.Sub {
			sub, c, ok := litSet(s)
			if !ok {
				return nil, false, false
			}
			complete = complete && c
			for _, x := range sub {
				if !containsString(set, x) {
					set = append(set, x)
				}
			}
			if len(set) > maxLitSet {
				return nil, false, false
			}
		}
		return set, complete, true
	case syntax.OpQuest:
		set, complete, ok = litSet(re.Sub[0])
		if !ok || containsString(set, "") {
			return set, complete, ok
		}
		return append(set, ""), complete, true
	case syntax.OpPlus:
		set, _, ok = litSet(re.Sub[0])
		return set, false, ok
	case syntax.OpRepeat:
		if re.Min >= 1 {
			set, _, ok = litSet(re.Sub[0])
			return set, false, ok
		}
	}
	return nil, false, false
}

// litPrefixes is litSet for a concatenation.
func litPrefixes(subs []*syntax.Regexp) (set []string, complete, ok bool) {
	set = []string{""}
	for _, r := range subs {
		ext, c, ok := litSet(r)
		if !ok {
			return set, false, true
		}
		if len(set)*len(ext) > maxLitSet {
			return set, false, true
		}
		next := make([]string, 0, len(set)*len(ext))
		for _, a := range set {
			for _, b := range ext {
				next = append(next, a+b)
			}
		}
		set = next
		if !c {
			return set, false, true
		}
	}
	return set, true, true
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = foldByte(c)
	}
	return string(b)
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// keywordSplit splits re's top-level concatenation at the first part from
// which every match starts with one of keywords: every match is then
// prefix·core with core matching, anchored, at a keyword occurrence. ok is
// false when there is no such part.
func keywordSplit(re *syntax.Regexp, keywords []string) (prefix, core *syntax.Regexp, ok bool) {
	if len(keywords) == 0 {
		return nil, nil, false
	}
	for re.Op == syntax.OpCapture {
		re = re.Sub[0]
	}
	subs := []*syntax.Regexp{re}
	if re.Op == syntax.OpConcat {
		subs = re.Sub
	}
	for i := range subs {
		set, _, ok := litPrefixes(subs[i:])
		if !ok || len(set) == 0 {
			continue
		}
		led := true
		for _, s := range set {
			if !hasKeywordPrefix(s, keywords) {
				led = false
				break
			}
		}
		if !led {
			continue
		}
		core = &syntax.Regexp{Op: syntax.OpConcat, Flags: re.Flags, Sub: subs[i:]}
		if len(subs[i:]) == 1 {
			core = subs[i]
		}
		prefix = &syntax.Regexp{Op: syntax.OpEmptyMatch}
		if i > 0 {
			prefix = &syntax.Regexp{Op: syntax.OpConcat, Flags: re.Flags, Sub: subs[:i]}
		}
		return prefix, core, true
	}
	return nil, nil, false
}

// anchored returns expr anchored at the start of the text.
func anchored(expr func() string) func() string {
	return func() string { return `\A(?:` + expr() + `)` }
}

func hasKeywordPrefix(s string, keywords []string) bool {
	for _, k := range keywords {
		if len(s) >= len(k) && s[:len(k)] == k {
			return true
		}
	}
	return false
}

// containsKeyword reports whether every match of re provably contains one
// of keywords (case-insensitively): then a window around each keyword
// occurrence holds every match, exactly as a scan of the whole file would.
func containsKeyword(re *syntax.Regexp, keywords []string) bool {
	if len(keywords) == 0 {
		return false
	}
	switch re.Op {
	case syntax.OpCapture, syntax.OpPlus:
		return containsKeyword(re.Sub[0], keywords)
	case syntax.OpRepeat:
		return re.Min >= 1 && containsKeyword(re.Sub[0], keywords)
	case syntax.OpAlternate:
		for _, s := range re.Sub {
			if !containsKeyword(s, keywords) {
				return false
			}
		}
		return true
	case syntax.OpConcat:
		for i, s := range re.Sub {
			if containsKeyword(s, keywords) {
				return true
			}
			if set, _, ok := litPrefixes(re.Sub[i:]); ok && allContainKeyword(set, keywords) {
				return true
			}
		}
		return false
	}
	set, _, ok := litSet(re)
	return ok && allContainKeyword(set, keywords)
}

func allContainKeyword(set []string, keywords []string) bool {
	if len(set) == 0 {
		return false
	}
	for _, s := range set {
		found := false
		for _, k := range keywords {
			if strings.Contains(s, k) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// requiredSet returns lowercased strings such that every match of re
// contains one of them, preferring strings that are not keywords (which the
// engine already knows occur) and long ones; ok is false if it finds none
// worth checking.
func requiredSet(re *syntax.Regexp, keywords []string) (set []string, ok bool) {
	best, score := []string(nil), 0
	consider := func(s []string) {
		if sc := setScore(s, keywords); sc > score {
			best, score = s, sc
		}
	}
	switch re.Op {
	case syntax.OpCapture, syntax.OpPlus:
		return requiredSet(re.Sub[0], keywords)
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return requiredSet(re.Sub[0], keywords)
		}
		return nil, false
	case syntax.OpAlternate:
		var union []string
		for _, s := range re.Sub {
			sub, ok := requiredSet(s, keywords)
			if !ok {
				return nil, false
			}
			for _, x := range sub {
				if !containsString(union, x) {
					union = append(union, x)
				}
			}
		}
		if len(union) > 64 {
			return nil, false
		}
		consider(union)
	case syntax.OpConcat:
		for i, s := range re.Sub {
			if sub, ok := requiredSet(s, keywords); ok {
				consider(sub)
			}
			if sub, _, ok := litPrefixes(re.Sub[i:]); ok {
				consider(sub)
			}
		}
	default:
		if sub, _, ok := litSet(re); ok {
			consider(sub)
		}
	}
	return best, score > 0
}

// setScore rates a required set: its shortest string, if at least three
// bytes long and not containing a keyword.
func setScore(set []string, keywords []string) int {
	if len(set) == 0 {
		return 0
	}
	shortest := -1
	for _, s := range set {
		if shortest < 0 || len(s) < shortest {
			shortest = len(s)
		}
		for _, k := range keywords {
			if strings.Contains(s, k) {
				return 0
			}
		}
	}
	if shortest < 3 {
		return 0
	}
	return shortest
}

// dropAssertions removes ^, $, \A, \z, \b and \B from re (a superset).
func dropAssertions(re *syntax.Regexp) *syntax.Regexp {
	return clone(re, func(r *syntax.Regexp) *syntax.Regexp {
		switch r.Op {
		case syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
			syntax.OpWordBoundary, syntax.OpNoWordBoundary:
			return &syntax.Regexp{Op: syntax.OpEmptyMatch}
		}
		return r
	})
}

// boundedHead returns the longest leading part of re's concatenation whose
// matches are bounded in length, or nil if even the first part is not.
func boundedHead(re *syntax.Regexp) *syntax.Regexp {
	subs := []*syntax.Regexp{re}
	if re.Op == syntax.OpConcat {
		subs = re.Sub
	}
	k := 0
	n := 0
	for k < len(subs) {
		if n = addLen(n, maxBytes(subs[k])); n == unbounded {
			break
		}
		k++
	}
	switch k {
	case 0:
		return nil
	case 1:
		return subs[0]
	}
	return &syntax.Regexp{Op: syntax.OpConcat, Flags: re.Flags, Sub: subs[:k]}
}
