package secrets

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
)

// TestCompareWithGitleaksReport compares sluice's findings on a tree with a
// gitleaks JSON report of the same tree, by file, line and rule. It runs only
// when asked:
//
//	gitleaks dir --report-format json --report-path /tmp/gl.json "$(go env GOROOT)/src"
//	CMP_ROOT="$(go env GOROOT)/src" CMP_GITLEAKS=/tmp/gl.json \
//	  GOEXPERIMENT=jsonv2 go test -run TestCompareWithGitleaksReport -v ./fastpath/secrets
func TestCompareWithGitleaksReport(t *testing.T) {
	root, glPath := os.Getenv("CMP_ROOT"), os.Getenv("CMP_GITLEAKS")
	if root == "" || glPath == "" {
		t.Skip("set CMP_ROOT and CMP_GITLEAKS to compare with a gitleaks report")
	}
	targets, _ := walkTree(t, root)
	s, _ := New(Config{MaxFileSize: 1 << 30})
	rep, err := s.ScanTargets(context.Background(), targets, 0)
	if err != nil {
		t.Fatal(err)
	}
	var gl []struct {
		RuleID, File string
		StartLine    int
	}
	b, err := os.ReadFile(glPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &gl); err != nil {
		t.Fatal(err)
	}
	key := func(rule, file string, line int) string { return fmt.Sprintf("%s:%d %s", file, line, rule) }
	ours := map[string]bool{}
	for _, f := range rep.Findings {
		ours[key(f.RuleID, root+"/"+f.File, f.Line)] = true
	}
	theirs := map[string]bool{}
	for _, f := range gl {
		theirs[key(f.RuleID, f.File, f.StartLine)] = true
	}
	for k := range theirs {
		if !ours[k] {
			t.Errorf("only gitleaks: %s", k)
		}
	}
	for k := range ours {
		if !theirs[k] {
			t.Logf("only sluice:   %s", k)
		}
	}
	t.Logf("gitleaks %d, sluice %d, skipped %d", len(theirs), len(ours), len(rep.Skipped))
}
