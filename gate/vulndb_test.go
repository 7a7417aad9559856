package gate

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestParsePolicyReadsTheVulnDBSection(t *testing.T) {
	src := `version: 1
vulndb:
  repositories: [mirror.example/trivy-db:2, ghcr.io/aquasecurity/trivy-db:2]
  cache_dir: .cache/db
  warn_age: 24h
  fail_age: 72h
`
	p, err := ParsePolicy(".sluice.yaml", []byte(src), testCatalog())
	if err != nil {
		t.Fatal(err)
	}
	want := VulnDB{Repositories: []string{"mirror.example/trivy-db:2", "ghcr.io/aquasecurity/trivy-db:2"}, CacheDir: ".cache/db", WarnAge: 24 * time.Hour, FailAge: 72 * time.Hour}
	if !slices.Equal(p.VulnDB.Repositories, want.Repositories) || p.VulnDB.CacheDir != want.CacheDir || p.VulnDB.WarnAge != want.WarnAge || p.VulnDB.FailAge != want.FailAge {
		t.Errorf("VulnDB = %+v, want %+v", p.VulnDB, want)
	}
	def, err := ParsePolicy(".sluice.yaml", []byte("version: 1\nvulndb:\n  warn_age: 12h\n"), testCatalog())
	if err != nil {
		t.Fatal(err)
	}
	if d := DefaultVulnDB(); !slices.Equal(def.VulnDB.Repositories, d.Repositories) || def.VulnDB.FailAge != d.FailAge || def.VulnDB.WarnAge != 12*time.Hour {
		t.Errorf("keys not given keep their defaults: %+v", def.VulnDB)
	}
}

func TestParsePolicyVulnDBErrorsNameLineAndField(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"an unknown key", "version: 1\nvulndb:\n  mirrors: [x]\n", ".sluice.yaml:3:3: vulndb.mirrors: unknown key"},
		{"a bad age", "version: 1\nvulndb:\n  warn_age: 2 days\n", ".sluice.yaml:3:13: vulndb.warn_age: bad duration"},
		{"a fail age under the warn age", "version: 1\nvulndb:\n  warn_age: 48h\n  fail_age: 24h\n", ".sluice.yaml:4:13: vulndb.fail_age: fail_age 24h0m0s is shorter than warn_age 48h0m0s"},
		{"a blank repository", "version: 1\nvulndb:\n  repositories: [\"a/b:2\", \" \"]\n", ".sluice.yaml:3:27: vulndb.repositories[1]: bad repository"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePolicy(".sluice.yaml", []byte(tt.src), testCatalog())
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a ConfigError", err)
			}
			if got := err.Error(); len(got) < len(tt.want) || got[:len(tt.want)] != tt.want {
				t.Errorf("err = %q, want it to start %q", got, tt.want)
			}
		})
	}
}
