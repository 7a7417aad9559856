package main

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/sluice-ci/sluice/internal/vulnfixture"
)

// fixtureDB builds a DB from the vulndb package's fixture advisories,
// built at the given time, and returns its db.tar.gz.
func fixtureDB(t *testing.T, built time.Time) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := vulnfixture.BuildDB(dir, []string{"../../slowpath/vulndb/testdata/advisories.yaml"}, built); err != nil {
		t.Fatal(err)
	}
	b, err := vulnfixture.PackDB(dir)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDBFetchFromMirrorsThenShow(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	art, err := vulnfixture.DBArtifact(fixtureDB(t, time.Now().Add(-time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	if err := vulnfixture.Push(context.Background(), host+"/mirror/trivy-db:2", art); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// The policy's first mirror does not exist; the second is used. The
	// cache comes from XDG_CACHE_HOME.
	os.WriteFile(filepath.Join(dir, ".sluice.yaml"), []byte("version: 1\nvulndb:\n  repositories: ["+host+"/gone/trivy-db:2, "+host+"/mirror/trivy-db:2]\n  warn_age: 30m\n  fail_age: 24h\n"), 0o644)
	envs := map[string]string{"XDG_CACHE_HOME": filepath.Join(dir, "xdg")}
	r := sluiceEnv(t, dir, envs, "db", "fetch", "--insecure")
	if r.code != 0 || !strings.Contains(r.stdout, "installed v2") || !strings.Contains(r.stdout, host+"/mirror/trivy-db@sha256:") {
		t.Fatalf("fetch: %+v", r)
	}
	if !strings.Contains(r.stderr, "past the warn age") {
		t.Errorf("a DB an hour old with warn_age 30m should warn: %q", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "xdg", "sluice", "db", "current", "trivy.db")); err != nil {
		t.Errorf("not installed under XDG_CACHE_HOME: %v", err)
	}

	r = sluiceEnv(t, dir, envs, "db", "show", "--format", "json")
	var show dbShow
	if err := json.Unmarshal([]byte(r.stdout), &show); err != nil {
		t.Fatalf("show JSON: %v\n%s", err, r.stdout)
	}
	if r.code != 0 || !show.Installed || show.Status != "warn" || show.Info.Version != 2 || show.AgeSeconds < 3600 {
		t.Errorf("show: code %d %+v", r.code, show)
	}
	r = sluiceEnv(t, dir, envs, "db", "show")
	if r.code != 0 || !strings.Contains(r.stdout, "version:     2") || !strings.Contains(r.stdout, "status:      warn") {
		t.Errorf("show text: %+v", r)
	}
}

func TestDBImportAndStaleness(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "db.tar.gz")
	os.WriteFile(file, fixtureDB(t, time.Now().Add(-10*24*time.Hour)), 0o644)
	cache := filepath.Join(dir, "cache")
	r := sluice(t, dir, "db", "import", "--cache-dir", cache, file)
	if r.code != 1 || !strings.Contains(r.stderr, "past the fail age of 7d0h") || !strings.Contains(r.stdout, "installed v2") {
		t.Errorf("import of a 10-day-old DB with the default fail_age: %+v", r)
	}
	r = sluice(t, dir, "db", "show", "--cache-dir", cache, "--format", "json")
	if r.code != 1 || !strings.Contains(r.stdout, `"status": "stale"`) {
		t.Errorf("show of a stale DB: %+v", r)
	}
	r = sluice(t, dir, "db", "show", "--cache-dir", filepath.Join(dir, "empty"))
	if r.code != 1 || !strings.Contains(r.stderr, "sluice db fetch") {
		t.Errorf("show with no DB: %+v", r)
	}
}

func TestDBUsageAndConfigErrorsExitTwo(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("version: 1\nvulndb:\n  fail_age: soon\n"), 0o644)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no subcommand", []string{"db"}, "Usage:"},
		{"an unknown subcommand", []string{"db", "pull"}, `unknown subcommand "pull"`},
		{"import without a file", []string{"db", "import", "--cache-dir", dir}, "unexpected arguments"},
		{"a bad format", []string{"db", "show", "--format", "xml", "--cache-dir", dir}, `--format "xml"`},
		{"a bad policy", []string{"db", "show", "--policy", "bad.yaml"}, "bad.yaml:3:13: vulndb.fail_age: bad duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := sluice(t, dir, tt.args...)
			if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("code %d stderr %q, want 2 and %q", r.code, r.stderr, tt.want)
			}
		})
	}
}
