package junit_test

import (
	"bytes"
	"encoding/xml"
	"testing"

	"github.com/sluice-ci/sluice/actions/junit"
	"github.com/sluice-ci/sluice/internal/golden"
)

func TestJUnitMatchesGolden(t *testing.T) {
	v := golden.Verdict(t, "../testdata/verdict.json")
	var buf bytes.Buffer
	if err := junit.Write(&buf, v); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "testdata/verdict.xml", buf.Bytes())
}

func TestJUnitCountsControlsFindingsAndDeferredWork(t *testing.T) {
	v := golden.Verdict(t, "../testdata/verdict.json")
	var buf bytes.Buffer
	if err := junit.Write(&buf, v); err != nil {
		t.Fatal(err)
	}
	var doc junit.Suites
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("not XML: %v", err)
	}
	// 3 controls + 3 findings + 2 deferred jobs; the 3 findings fail; the
	// deferred lint run, the fail-open signatures error and the 2 jobs skip.
	if doc.Tests != 8 || doc.Failures != 3 || doc.Errors != 0 || doc.Skipped != 4 {
		t.Errorf("tests %d failures %d errors %d skipped %d; want 8 3 0 4", doc.Tests, doc.Failures, doc.Errors, doc.Skipped)
	}
	names := map[string]bool{}
	for _, s := range doc.Suites {
		names[s.Name] = true
	}
	for _, want := range []string{"sluice.secrets", "sluice.lint", "sluice.signatures", "sluice.deferred"} {
		if !names[want] {
			t.Errorf("no suite %s", want)
		}
	}
	sec := doc.Suites[1]
	if sec.Name != "sluice.secrets" || sec.Cases[1].Failure == nil || sec.Cases[1].Failure.Type != "github-pat" || sec.Cases[1].File != "config/app.env" || sec.Cases[1].Line != 5 {
		t.Errorf("secrets suite %+v", sec.Cases)
	}
}
