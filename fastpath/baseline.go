package fastpath

import (
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/sluice-ci/sluice/gate"
)

// Baseline is a file of accepted findings, by fingerprint, each with a
// reason and an optional expiry date.
type Baseline struct {
	File     string
	Version  int             `yaml:"version"`
	Accepted []BaselineEntry `yaml:"accepted"`
	byFP     map[string]*BaselineEntry
}

// BaselineEntry accepts one finding.
type BaselineEntry struct {
	Fingerprint string `yaml:"fingerprint"`
	// Rule and File are informative, and let an unused entry be told apart
	// from one whose file this change did not touch.
	Rule    string    `yaml:"rule"`
	File    string    `yaml:"file"`
	Reason  string    `yaml:"reason"`
	Expires gate.Date `yaml:"expires"`
}

// Expired reports whether the entry's expiry date has passed.
func (e *BaselineEntry) Expired(now time.Time) bool { return e.Expires.Passed(now) }

// LoadBaseline reads and validates a baseline file.
func LoadBaseline(path string) (*Baseline, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b := &Baseline{File: path}
	if err := gate.DecodeYAML(path, data, b); err != nil {
		return nil, err
	}
	if b.Version != 1 {
		return nil, &gate.ConfigError{File: path, Line: 1, Field: "version", Msg: fmt.Sprintf("want `version: 1`, got %d", b.Version)}
	}
	b.byFP = map[string]*BaselineEntry{}
	for i := range b.Accepted {
		e := &b.Accepted[i]
		field := fmt.Sprintf("accepted[%d]", i)
		switch {
		case e.Fingerprint == "":
			return nil, &gate.ConfigError{File: path, Field: field + ".fingerprint", Msg: "missing"}
		case e.Reason == "":
			return nil, &gate.ConfigError{File: path, Field: field + ".reason", Msg: "missing; say why this finding is accepted"}
		case b.byFP[e.Fingerprint] != nil:
			return nil, &gate.ConfigError{File: path, Field: field + ".fingerprint", Msg: fmt.Sprintf("%s is listed twice", e.Fingerprint)}
		}
		b.byFP[e.Fingerprint] = e
	}
	return b, nil
}

// Lookup returns the entry accepting a fingerprint, or nil.
func (b *Baseline) Lookup(fp string) *BaselineEntry { return b.byFP[fp] }

// Report lists expired entries that matched, and entries that matched
// nothing although they could have: in a whole-tree scan every entry, in a
// change only entries naming a file the change touched.
func (b *Baseline) Report(used map[string]bool, scanned func(string) bool, wholeTree bool, now time.Time) []string {
	var notes []string
	for _, e := range b.Accepted {
		switch {
		case used[e.Fingerprint] && e.Expired(now):
			notes = append(notes, fmt.Sprintf("baseline %s: entry %s expired on %s; its finding is reported again", b.File, e.Fingerprint, e.Expires.Format(time.DateOnly)))
		case !used[e.Fingerprint] && (wholeTree || e.File != "" && scanned(e.File)):
			notes = append(notes, fmt.Sprintf("baseline %s: entry %s matched no finding; remove it", b.File, e.Fingerprint))
		}
	}
	slices.Sort(notes)
	return notes
}
