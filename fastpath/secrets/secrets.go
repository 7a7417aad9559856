// Package secrets owns sluice's secret rules and the engine that scans files
// for them.
//
// The rules are gitleaks' default rules, loaded from the gitleaks.toml that
// gitleaks' Go module embeds (see DefaultRules), plus any custom rules and
// allowlists from the policy. The engine follows gitleaks' semantics
// (keywords gate rules; regex, secretGroup, entropy, path rules, rule and
// global allowlists with regexTarget, stopwords and AND conditions, the
// precedence of specific rules over generic-api-key, "gitleaks:allow" line
// markers, recursive decoding of base64, hex and percent-encoded text) but is
// built for speed:
//
//   - one pass over the bytes with an ASCII case-folding Aho–Corasick DFA finds
//     every keyword occurrence for all rules at once;
//   - a rule's regex runs only in windows of the file. From regexp/syntax the
//     engine derives the longest match a rule can have (in runes or bytes, and
//     in lines) and whether every match must contain one of its keywords; if
//     so, every match lies in a window around a keyword occurrence, and
//     windows of one rule are merged so each byte is scanned at most once per
//     rule. Where every match must even start with a keyword (most rules), a
//     cheap anchored check at the occurrence comes first and the window ends
//     where the exact match can end. A rule whose matches need not contain a
//     keyword, or are unbounded in both bytes and lines, scans the whole file
//     once, as gitleaks does, when one of its keywords occurs;
//   - a relaxed regex (large counted repetitions opened up, optional leading and
//     trailing parts dropped, assertions removed) accepts a superset of the
//     rule's matches and runs first, after a check for literals every match
//     must contain; the exact regex runs only where it matched, and capture
//     groups are extracted only on matched spans;
//   - decoding only decodes candidate segments and only rescans, near the
//     decoded text, segments that decode to printable ASCII.
//
// Differences from gitleaks, all deliberate:
//
//   - Keywords are matched with ASCII case folding (gitleaks lowercases with
//     Unicode rules: a "K" KELVIN SIGN in place of a "k" is missed).
//   - A scan of a window starts at the window, so a match that gitleaks'
//     left-to-right scan of the whole file would have consumed before the
//     window can, rarely, yield a different overlapping match.
//   - After decoding, keywords are looked for only on the lines that hold
//     decoded text, and further passes look for encoded text only in and
//     around what the previous pass decoded (gitleaks rescans everything).
//   - A "line" allowlist target is the match's lines without the preceding
//     newline that gitleaks includes.
//   - Composite rules ([[rules.required]], gitleaks' "multi-part" rules) and
//     skipReport are not implemented: a rule with required rules reports its
//     own matches alone. No default rule uses them.
//   - Allowlists by commit are not supported (sluice scans trees and changes,
//     not commit history); unicode escapes (U+XXXX, \uXXXX) are not decoded.
//   - Columns are true 1-based byte columns (gitleaks' are one greater on every
//     line but the first); findings from decoded text are located at the
//     encoded text they came from.
//   - Findings of rules that match the file path only (e.g. pkcs12-file) have
//     Line 0.
//
// The raw secret never leaves the package: a Finding carries a redacted prefix
// and a one-way fingerprint only.
package secrets

// Rule is one secret rule, in gitleaks' terms.
type Rule struct {
	ID          string
	Description string
	// Regex finds candidate secrets. Empty with Path set makes a rule that
	// matches file paths only.
	Regex string
	// Keywords gate the rule: it runs only near one of them (case-insensitive).
	// A rule without keywords runs on every file.
	Keywords []string
	// SecretGroup is the capture group holding the secret; 0 means the first
	// non-empty group, or the whole match when the regex has none.
	SecretGroup int
	// Entropy is the minimum Shannon entropy of the secret; 0 disables the check.
	Entropy float64
	// Path is a regex on the slash-separated file path; optional.
	Path string
	// Severity is CRITICAL, HIGH, MEDIUM or LOW; empty means HIGH.
	Severity string
	Allow    []Allow
}

// Allow is an allowlist: a finding it matches is dropped.
type Allow struct {
	Description string
	// Paths are regexes on the file path.
	Paths []string
	// Regexes are matched against the RegexTarget.
	Regexes []string
	// StopWords are matched, case-insensitively, as substrings of the secret.
	StopWords []string
	// RegexTarget is "secret" (default), "match" or "line".
	RegexTarget string
	// Condition is "OR" (default: any check allows) or "AND" (all the checks
	// that are set must allow).
	Condition string
	// Rules limits a global allowlist to these rule ids; ignored on a rule.
	Rules []string
}

// Config selects and extends the rules a Scanner uses. Its zero value means
// gitleaks' default rules and global allowlist, and a 2 MiB file size limit.
type Config struct {
	// Rules are custom rules added to the defaults; a rule with the id of a
	// default rule replaces it.
	Rules []Rule
	// Disable lists default rule ids to turn off.
	Disable []string
	// Allow lists global allowlists added to gitleaks' global allowlist.
	Allow []Allow
	// MaxFileSize is the largest file ScanTargets scans; 0 means 2 MiB.
	MaxFileSize int64
	// NoDefaults drops gitleaks' default rules and global allowlist.
	NoDefaults bool
}

// DefaultMaxFileSize is the file size limit when Config.MaxFileSize is 0.
const DefaultMaxFileSize = 2 << 20

// Finding is one secret found. It never holds the secret itself.
type Finding struct {
	RuleID      string
	Description string
	Severity    string
	// File is the slash path relative to the scanned root.
	File string
	// Line, Column and EndLine are 1-based; Line is 0 for rules that match the
	// file path only.
	Line, Column, EndLine int
	// Redacted is at most the first four characters of the secret (fewer for
	// short secrets) followed by "****".
	Redacted string
	// Fingerprint identifies the secret in this file for this rule: 16 hex
	// digits of SHA-256 over rule id, file and secret.
	Fingerprint string
	// Entropy is the Shannon entropy of the secret.
	Entropy float64
}

// Skipped is a file that was not scanned, and why.
type Skipped struct {
	File   string
	Reason string
}

// Report is the outcome of ScanTargets: findings sorted by file, line,
// column and rule id; skipped files sorted by file.
type Report struct {
	Findings []Finding
	Skipped  []Skipped
	// Files and Bytes count the files and bytes scanned.
	Files int
	Bytes int64
}

// Target is one file to scan.
type Target struct {
	// Path is the slash path relative to the scanned root; findings, path
	// rules and allowlists use it.
	Path string
	// Abs is where to read the file when Content is nil.
	Abs string
	// Content, when not nil, is scanned instead of reading Abs (e.g. a git blob).
	Content []byte
}
