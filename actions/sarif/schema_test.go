package sarif_test

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/sluice-ci/sluice/actions/sarif"
	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/internal/golden"
)

// schema compiles the SARIF 2.1.0 JSON schema in testdata (see
// testdata/README.md for where it comes from), asserting formats such as
// uri and uri-reference too.
func schema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("testdata/sarif-schema-2.1.0.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("sarif-schema-2.1.0.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("sarif-schema-2.1.0.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validate(t *testing.T, s *jsonschema.Schema, data []byte) error {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return s.Validate(inst)
}

func TestSARIFValidatesAgainstTheSchema(t *testing.T) {
	s := schema(t)
	many := &gate.Verdict{Verdict: "fail", Change: gate.ChangeInfo{Mode: gate.PathsMode, Root: "/w w/ü"}}
	var fs []gate.Finding
	for i := range 12 {
		fs = append(fs, gate.Finding{Rule: "r" + strings.Repeat("x", i%4), Severity: []string{"LOW", "MEDIUM", "HIGH", "CRITICAL"}[i%4],
			File: "dir with space/ä#%?.yaml", Line: i + 1, Column: i, Message: "m", InChange: i%2 == 0})
	}
	fs = append(fs, gate.Finding{Rule: "unsigned", Severity: "HIGH", Message: "image ghcr.io/a/b:1 is not signed"})
	many.Controls = []gate.ControlRun{{Name: "lint", Status: "failed", Blocks: true, Findings: fs}}
	cases := map[string]struct {
		v *gate.Verdict
		o sarif.Options
	}{
		"the golden verdict":             {golden.Verdict(t, "../testdata/verdict.json"), sarif.Options{}},
		"a clean verdict with no result": {&gate.Verdict{Verdict: "pass", Change: gate.ChangeInfo{Mode: gate.RangeMode, Root: "/r"}}, sarif.Options{}},
		"odd names, no file, truncated":  {many, sarif.Options{Limits: sarif.Limits{Results: 5, Rules: 2, Message: 10}}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := sarif.Write(&buf, c.v, c.o); err != nil {
				t.Fatal(err)
			}
			if err := validate(t, s, buf.Bytes()); err != nil {
				t.Errorf("invalid SARIF: %v\n%s", err, buf.String())
			}
		})
	}
}

// The validator is not vacuous: a log with a level SARIF does not know, or
// a region starting at line 0, fails.
func TestSchemaRejectsInvalidSARIF(t *testing.T) {
	s := schema(t)
	var buf bytes.Buffer
	if err := sarif.Write(&buf, golden.Verdict(t, "../testdata/verdict.json"), sarif.Options{}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ from, to string }{
		{`"level": "error"`, `"level": "fatal"`},
		{`"startLine": 5`, `"startLine": 0`},
		{`"version": "2.1.0"`, `"version": "2.0.0"`},
	} {
		data := bytes.Replace(buf.Bytes(), []byte(bad.from), []byte(bad.to), 1)
		if bytes.Equal(data, buf.Bytes()) {
			t.Fatalf("%s not found in the log", bad.from)
		}
		if err := validate(t, s, data); err == nil {
			t.Errorf("%s passed the schema", bad.to)
		}
	}
}
