package secrets

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/sourcegraph/conc/pool"
)

// Scanner scans content for secrets with a compiled rule set. It is safe for
// concurrent use; New does all compilation once.
type Scanner struct {
	rules    []*rule
	pathOnly []*rule // rules that match the file path alone
	// pathGated are the rules a file's path can switch off (a Path regex or
	// a rule allowlist that decides by path alone).
	pathGated []*rule
	global    []*allowlist
	keywords  *automaton
	kwRules   [][]int32 // keyword id → rule indexes
	always    []int32   // rules with a regex and no keywords
	maxSize   int64
	decodeMax int
	scratch   sync.Pool
}

type winMode uint8

const (
	winBytes winMode = iota // ±maxLen bytes (and ±maxNL lines)
	winLines                // ±maxNL lines
	winFile                 // the whole file
)

type rule struct {
	idx         int
	id          string
	description string
	severity    string
	generic     bool
	re          func() *regexp.Regexp // as written, for whole files and secret extraction; compiled on first use; nil for path-only rules
	// Variants for windows touching neither end of the file, only its
	// start, only its end; compiled on first use.
	reMid, reHead, reTail func() *regexp.Regexp
	pre                   func() *regexp.Regexp // relaxed superset, or nil
	required              *automaton            // every match contains one of these, or nil
	// Rules whose every match is prefix·core, core starting with a keyword:
	// core is checked anchored at each keyword occurrence, first relaxed,
	// then exactly; the match then lies in [occurrence-prefix, core end].
	split         bool                  // the rule has a keyword core
	core          func() *regexp.Regexp // relaxed core, anchored, or nil
	coreHead      func() *regexp.Regexp // bounded head of the core, anchored, without assertions, or nil
	coreHeadLen   int
	coreHeadRunes int
	coreMid       func() *regexp.Regexp // exact core, anchored, for text not at the file end
	coreEnd       func() *regexp.Regexp // exact core, anchored, for text at the file end
	prefixInfo    regexInfo
	path          *regexp.Regexp
	secretGroup   int
	entropy       float64
	info          regexInfo
	kw            []string // lowercased, deduplicated
	mode          winMode
	allow         []*allowlist
}

type regexTarget uint8

const (
	targetSecret regexTarget = iota
	targetMatch
	targetLine
)

type allowlist struct {
	and      bool
	target   regexTarget
	paths    *regexSet
	regexes  *regexSet
	stop     *automaton
	ruleIDs  []string
	pathOnly bool // decides by path alone (OR with paths, or AND with only paths)
}

// New compiles cfg into a Scanner. Errors name the rule or allowlist and the
// field at fault.
func New(cfg Config) (*Scanner, error) {
	var (
		rules  []Rule
		global []Allow
	)
	if !cfg.NoDefaults {
		var err error
		rules, global, err = DefaultRules()
		if err != nil {
			return nil, err
		}
	}
	disabled := map[string]bool{}
	for _, id := range cfg.Disable {
		disabled[id] = true
	}
	custom := map[string]bool{}
	for _, r := range cfg.Rules {
		custom[r.ID] = true
	}
	rules = slices.DeleteFunc(rules, func(r Rule) bool { return disabled[r.ID] || custom[r.ID] })
	seen := map[string]bool{}
	for _, r := range cfg.Rules {
		if strings.TrimSpace(r.ID) == "" {
			return nil, &RuleError{Rule: r.ID, Field: "id", Err: errors.New("must not be empty")}
		}
		if seen[r.ID] {
			return nil, &RuleError{Rule: r.ID, Field: "id", Err: errors.New("defined twice")}
		}
		seen[r.ID] = true
	}
	rules = append(rules, cfg.Rules...)
	global = append(global, cfg.Allow...)

	s := &Scanner{maxSize: cfg.MaxFileSize, decodeMax: 5}
	if s.maxSize <= 0 {
		s.maxSize = DefaultMaxFileSize
	}
	// Rules compile independently: side by side, on every core.
	compiled := make([]*rule, len(rules))
	errs := make([]error, len(rules))
	p := pool.New().WithMaxGoroutines(runtime.GOMAXPROCS(0))
	for i, r := range rules {
		p.Go(func() { compiled[i], errs[i] = compileRule(r) })
	}
	p.Wait()
	if err := cmp.Or(errs...); err != nil {
		return nil, err
	}
	byID := map[string]*rule{}
	for _, cr := range compiled {
		cr.idx = len(s.rules)
		s.rules = append(s.rules, cr)
		byID[cr.id] = cr
	}
	for i, a := range global {
		ca, err := compileAllow(a)
		if err != nil {
			return nil, fmt.Errorf("allow[%d]%s: %w", i, describe(a), err)
		}
		if len(a.Rules) == 0 {
			s.global = append(s.global, ca)
			continue
		}
		for _, id := range a.Rules {
			r, ok := byID[id]
			if !ok {
				if disabled[id] {
					continue
				}
				return nil, fmt.Errorf("allow[%d]%s: rules: no rule %q", i, describe(a), id)
			}
			r.allow = append(r.allow, ca)
		}
	}

	// Keywords: one automaton for all rules.
	kwID := map[string]int32{}
	var kws []string
	for _, r := range s.rules {
		if r.re == nil {
			if r.path != nil {
				s.pathOnly = append(s.pathOnly, r)
			}
			continue
		}
		if r.path != nil || slices.ContainsFunc(r.allow, func(a *allowlist) bool { return a.pathOnly }) {
			s.pathGated = append(s.pathGated, r)
		}
		if len(r.kw) == 0 {
			s.always = append(s.always, int32(r.idx))
			continue
		}
		for _, k := range r.kw {
			id, ok := kwID[k]
			if !ok {
				id = int32(len(kws))
				kwID[k] = id
				kws = append(kws, k)
				s.kwRules = append(s.kwRules, nil)
			}
			if !slices.Contains(s.kwRules[id], int32(r.idx)) {
				s.kwRules[id] = append(s.kwRules[id], int32(r.idx))
			}
		}
	}
	s.keywords = newAutomaton(kws)
	s.scratch.New = func() any { return newScratch(len(s.rules)) }
	return s, nil
}

func describe(a Allow) string {
	if a.Description == "" {
		return ""
	}
	return fmt.Sprintf(" (%s)", a.Description)
}

// RuleError is a mistake in a rule's definition.
type RuleError struct {
	Rule string // the rule id
	// Field is the field at fault, named as in a policy file: "id", "regex",
	// "path", "keywords", "secret_group", "entropy", "severity", or
	// "allow[N].paths" (0-based) and the like.
	Field string
	Err   error
}

func (e *RuleError) Error() string { return fmt.Sprintf("rule %q: %s: %v", e.Rule, e.Field, e.Err) }

func (e *RuleError) Unwrap() error { return e.Err }

// fieldError is a mistake in one field of an allowlist.
type fieldError struct {
	field string
	err   error
}

func (e *fieldError) Error() string {
	if e.field == "" {
		return e.err.Error()
	}
	return e.field + ": " + e.err.Error()
}

func (e *fieldError) Unwrap() error { return e.err }

func regexError(field string, err error) *fieldError {
	var se *syntax.Error
	if errors.As(err, &se) {
		return &fieldError{field, fmt.Errorf("%s in `%s`", se.Code, se.Expr)}
	}
	return &fieldError{field, err}
}

func compileRule(r Rule) (*rule, error) {
	fail := func(field string, err error) error { return &RuleError{Rule: r.ID, Field: field, Err: err} }
	wrap := func(fe *fieldError) error { return fail(fe.field, fe.err) }
	if strings.TrimSpace(r.ID) == "" {
		return nil, fail("id", errors.New("must not be empty"))
	}
	cr := &rule{
		id:          r.ID,
		description: r.Description,
		severity:    strings.ToUpper(r.Severity),
		generic:     strings.Contains(strings.ToLower(r.ID), "generic"),
		secretGroup: r.SecretGroup,
		entropy:     r.Entropy,
	}
	switch cr.severity {
	case "":
		cr.severity = "HIGH"
	case "CRITICAL", "HIGH", "MEDIUM", "LOW":
	default:
		return nil, fail("severity", fmt.Errorf("%q is not CRITICAL, HIGH, MEDIUM or LOW", r.Severity))
	}
	if r.Regex == "" && r.Path == "" {
		return nil, fail("regex", errors.New("a rule needs a regex, a path or both"))
	}
	if r.Entropy < 0 {
		return nil, fail("entropy", errors.New("must not be negative"))
	}
	if r.Path != "" {
		p, err := regexp.Compile(r.Path)
		if err != nil {
			return nil, wrap(regexError("path", err))
		}
		cr.path = p
	}
	for _, k := range r.Keywords {
		k = strings.ToLower(k)
		if k == "" {
			return nil, fail("keywords", errors.New("empty keyword"))
		}
		if !slices.Contains(cr.kw, k) {
			cr.kw = append(cr.kw, k)
		}
	}
	for i, a := range r.Allow {
		ca, err := compileAllow(a)
		if err != nil {
			field := fmt.Sprintf("allow[%d]", i)
			if err.field != "" {
				field += "." + err.field
			}
			return nil, fail(field, err.err)
		}
		cr.allow = append(cr.allow, ca)
	}
	if r.Regex == "" {
		if r.SecretGroup != 0 {
			return nil, fail("secret_group", errors.New("set without a regex"))
		}
		return cr, nil
	}
	tree, err := parseRegex(r.Regex)
	if err != nil {
		return nil, wrap(regexError("regex", err))
	}
	// A regex that parses compiles (regexp.Compile is Parse, Simplify and a
	// program build that cannot fail), so compiling waits for first use.
	expr := r.Regex
	cr.re = lazyCompile(func() string { return expr })
	cr.info = analyse(tree)
	if r.SecretGroup < 0 || r.SecretGroup > cr.info.groups {
		return nil, fail("secret_group", fmt.Errorf("%d, but the regex has %d groups", r.SecretGroup, cr.info.groups))
	}
	switch {
	case !containsKeyword(tree, cr.kw):
		// A match need not contain a keyword: as gitleaks, scan the whole
		// file once any keyword occurs.
		cr.mode = winFile
	case cr.info.maxLen != unbounded:
		cr.mode = winBytes
	case cr.info.maxNL != unbounded:
		cr.mode = winLines
	default:
		cr.mode = winFile
	}
	cr.reMid, cr.reHead, cr.reTail = cr.re, cr.re, cr.re
	if cr.info.beginText || cr.info.endText {
		cr.reMid = lazyCompile(windowVariant(tree, true, true).String)
		cr.reHead = lazyCompile(windowVariant(tree, false, true).String)
		cr.reTail = lazyCompile(windowVariant(tree, true, false).String)
	}
	if prefix, core, ok := keywordSplit(tree, cr.kw); ok {
		cr.split = true
		cr.prefixInfo = analyse(prefix)
		cr.coreEnd = lazyCompile(anchored(core.String))
		cr.coreMid = lazyCompile(anchored(windowVariant(core, false, true).String))
		head := boundedHead(core)
		if head != nil {
			cr.coreHead = lazyCompile(anchored(dropAssertions(head).String))
			cr.coreHeadLen, cr.coreHeadRunes = maxBytes(head), maxRunes(head)
		}
		if head != core {
			relaxed := prefilter(core)
			if relaxed == nil {
				relaxed = core
			}
			cr.core = lazyCompile(anchored(relaxed.String))
		}
	} else if p := prefilter(tree); p != nil {
		if set, ok := requiredSet(tree, cr.kw); ok {
			cr.required = newAutomaton(set)
		}
		cr.pre = lazyCompile(p.String)
	}
	return cr, nil
}

// lazyCompile compiles the regex expr returns, derived from a valid regex,
// on first use. Printing a syntax tree is most of the cost of building a
// Scanner (regexp/syntax folds every character class to print it), so it is
// deferred too: most rules never meet their keywords in a small change.
func lazyCompile(expr func() string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr()) })
}

func compileAllow(a Allow) (*allowlist, *fieldError) {
	ca := &allowlist{ruleIDs: a.Rules}
	switch strings.ToUpper(a.Condition) {
	case "", "OR", "||":
	case "AND", "&&":
		ca.and = true
	default:
		return nil, &fieldError{"condition", fmt.Errorf("%q is not OR or AND", a.Condition)}
	}
	switch a.RegexTarget {
	case "", "secret":
	case "match":
		ca.target = targetMatch
	case "line":
		ca.target = targetLine
	default:
		return nil, &fieldError{"regex_target", fmt.Errorf("%q is not secret, match or line", a.RegexTarget)}
	}
	if len(a.Paths) == 0 && len(a.Regexes) == 0 && len(a.StopWords) == 0 {
		return nil, &fieldError{"", errors.New("needs at least one of paths, regexes or stopwords")}
	}
	join := func(field string, exprs []string) (*regexSet, *fieldError) {
		if len(exprs) == 0 {
			return nil, nil
		}
		set, err := newRegexSet(exprs)
		if err != nil {
			return nil, regexError(field, err)
		}
		return set, nil
	}
	var err *fieldError
	if ca.paths, err = join("paths", a.Paths); err != nil {
		return nil, err
	}
	if ca.regexes, err = join("regexes", a.Regexes); err != nil {
		return nil, err
	}
	if len(a.StopWords) > 0 {
		words := make([]string, 0, len(a.StopWords))
		for _, w := range a.StopWords {
			if w == "" {
				return nil, &fieldError{"stopwords", errors.New("empty stop word")}
			}
			words = append(words, strings.ToLower(w))
		}
		ca.stop = newAutomaton(words)
	}
	ca.pathOnly = ca.paths != nil && (!ca.and || (ca.regexes == nil && ca.stop == nil))
	return ca, nil
}
