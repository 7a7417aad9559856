package gate

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
)

// ResultState is how far a result for one (kind, subject) has got.
type ResultState string

const (
	// ResultMissing: nothing is known of it (never queued, or not stored).
	ResultMissing ResultState = "missing"
	// ResultPending: queued or running.
	ResultPending ResultState = "pending"
	// ResultPassed: complete and clean.
	ResultPassed ResultState = "passed"
	// ResultFailed: complete, with findings that block.
	ResultFailed ResultState = "failed"
	// ResultErrored: the control could not finish.
	ResultErrored ResultState = "errored"
)

var resultStates = []ResultState{ResultMissing, ResultPending, ResultPassed, ResultFailed, ResultErrored}

// ResultStatus is what a Results store knows of one result.
type ResultStatus struct {
	State ResultState `json:"status"`
	// Summary is a short human account ("2 HIGH vulnerabilities").
	Summary string `json:"summary,omitempty"`
}

// Results answers whether a control's result for a subject is complete and
// clean. kind is a slow-path job kind ("image-scan"), a control name, or
// FastVerdict; subject is what the control analysed (an image reference,
// "commit:<sha>"). The slow path's results store implements it; FileResults
// is the file-backed one.
type Results interface {
	Lookup(ctx context.Context, kind, subject string) (ResultStatus, error)
}

// ResultsSchema names the results file's version.
const ResultsSchema = "sluice.results/v1"

// ResultRecord is one entry of a results file.
type ResultRecord struct {
	Kind    string      `json:"kind" yaml:"kind"`
	Subject string      `json:"subject" yaml:"subject"`
	Status  ResultState `json:"status" yaml:"status"`
	Summary string      `json:"summary,omitempty" yaml:"summary"`
}

// FileResults is a Results held in memory, read from a results file or the
// `results:` of a changes file. A later record for the same kind and
// subject replaces an earlier one.
type FileResults struct {
	m map[[2]string]ResultStatus
}

// NewFileResults indexes records.
func NewFileResults(records ...ResultRecord) *FileResults {
	r := &FileResults{m: map[[2]string]ResultStatus{}}
	r.Add(records...)
	return r
}

// Add records more results.
func (r *FileResults) Add(records ...ResultRecord) {
	for _, rec := range records {
		r.m[[2]string{rec.Kind, rec.Subject}] = ResultStatus{State: rec.Status, Summary: rec.Summary}
	}
}

// Lookup implements Results; an unknown result is ResultMissing.
func (r *FileResults) Lookup(_ context.Context, kind, subject string) (ResultStatus, error) {
	if s, ok := r.m[[2]string{kind, subject}]; ok {
		return s, nil
	}
	return ResultStatus{State: ResultMissing}, nil
}

type resultsFile struct {
	Schema  string         `yaml:"schema"`
	Results []ResultRecord `yaml:"results"`
}

// LoadResultsFile reads a results file (JSON or YAML):
// {"schema": "sluice.results/v1", "results": [{"kind", "subject", "status", "summary"}]}.
func LoadResultsFile(path string) ([]ResultRecord, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("--results %s: %v", path, unwrapPathError(err))
	}
	var f resultsFile
	if err := DecodeYAML(path, data, &f); err != nil {
		return nil, err
	}
	if f.Schema != "" && f.Schema != ResultsSchema {
		return nil, &ConfigError{File: path, Line: 1, Field: "schema", Msg: fmt.Sprintf("unsupported schema %q (want %s)", f.Schema, ResultsSchema)}
	}
	if err := checkRecords(path, f.Results, "results"); err != nil {
		return nil, err
	}
	return f.Results, nil
}

func checkRecords(file string, recs []ResultRecord, field string) error {
	for i, r := range recs {
		f := fmt.Sprintf("%s[%d]", field, i)
		switch {
		case r.Kind == "":
			return &ConfigError{File: file, Field: f + ".kind", Msg: "missing"}
		case r.Subject == "":
			return &ConfigError{File: file, Field: f + ".subject", Msg: "missing"}
		case !slices.Contains(resultStates, r.Status):
			names := make([]string, len(resultStates))
			for i, s := range resultStates {
				names[i] = string(s)
			}
			return &ConfigError{File: file, Field: f + ".status", Msg: fmt.Sprintf("unknown status %q (want %s)", r.Status, strings.Join(names, ", "))}
		}
	}
	return nil
}

// Debt is a result a shipped change still owes: a control that passed it
// under fail-open, or work deferred to the slow path. It is cleared when
// the Results store holds a complete, clean result for Kind and Subject.
type Debt struct {
	Change  string `json:"change"`
	Control string `json:"control"`
	Kind    string `json:"kind"`
	Subject string `json:"subject"`
	// Why is "fail-open" or "deferred".
	Why string `json:"why"`
	// Batch is the batch run that recorded it (its --batch-id).
	Batch string `json:"batch,omitempty"`
}

func (d Debt) String() string {
	return fmt.Sprintf("%s of %s (%s, change %s)", d.Kind, d.Subject, d.Why, d.Change)
}

// DebtSchema names the debt file's version.
const DebtSchema = "sluice.debt/v1"

// DebtFile is the debt ledger as stored between batch runs.
type DebtFile struct {
	Schema string `json:"schema"`
	Debt   []Debt `json:"debt"`
}

// LoadDebt reads a debt file; a missing file is no debt.
func LoadDebt(path string) ([]Debt, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading debt file: %w", err)
	}
	var f DebtFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, &ConfigError{File: path, Msg: "not a debt file: " + err.Error()}
	}
	if f.Schema != DebtSchema {
		return nil, &ConfigError{File: path, Field: "schema", Msg: fmt.Sprintf("unsupported schema %q (want %s)", f.Schema, DebtSchema)}
	}
	return f.Debt, nil
}
