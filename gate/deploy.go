package gate

import (
	"fmt"
	"strings"
)

// Deployability is how safely a change can be deployed and rolled back, as
// a score from 0 to 100 with the reasons that made it.
type Deployability struct {
	Score int `json:"score"`
	// Reasons list each deduction ("-25 ...") and each fact that spared
	// one, in a fixed order.
	Reasons []string `json:"reasons"`
	// Rollback is true when a rollback artifact is present (a previous image
	// digest, a down migration) or none is needed (configuration only).
	Rollback        bool     `json:"rollback"`
	Migration       bool     `json:"migration"`
	ConfigOnly      bool     `json:"config_only"`
	NewDependencies []string `json:"new_dependencies,omitempty"`
}

// Score deductions; see the README's "Deployability score".
const (
	penaltyNoImageRollback = 25
	penaltyMigration       = 20
	penaltyNoDown          = 25
	penaltyNewDependency   = 15
)

// Score rates a change's deployability. It starts at 100 and deducts:
//   - 25 when it releases images and names no rollback artifact (the
//     previous image digests);
//   - 20 when it touches a schema migration (batch.migration_paths), and 25
//     more when it has no down migration (batch.down_migration_paths);
//   - 15 when it adds an external dependency.
//
// A configuration-only change (every path in batch.config_paths, no image,
// no new dependency) is rolled back by reverting it and loses nothing.
func (b BatchRules) Score(c *BatchChange) Deployability {
	d := Deployability{Score: 100, Reasons: []string{}, NewDependencies: c.NewDependencies}
	var migrations, downs []string
	configOnly := len(c.Paths) > 0 && len(c.Images) == 0 && len(c.NewDependencies) == 0
	for _, p := range c.Paths {
		if matchAny(b.DownMigrationPaths, p) {
			downs = append(downs, p)
		}
		if matchAny(b.MigrationPaths, p) {
			migrations = append(migrations, p)
		}
		if !matchAny(b.ConfigPaths, p) {
			configOnly = false
		}
	}
	d.Migration = len(migrations) > 0
	if d.Migration {
		configOnly = false
	}
	d.ConfigOnly = configOnly
	deduct := func(n int, format string, args ...any) {
		d.Score -= n
		d.Reasons = append(d.Reasons, fmt.Sprintf("-%d ", n)+fmt.Sprintf(format, args...))
	}
	imageRollback := len(c.Images) == 0 || len(c.Rollback) > 0
	switch {
	case configOnly:
		d.Reasons = append(d.Reasons, "configuration only: rolled back by reverting it")
	case len(c.Images) > 0 && len(c.Rollback) > 0:
		d.Reasons = append(d.Reasons, "rollback artifact: "+strings.Join(c.Rollback, ", "))
	case len(c.Images) > 0:
		deduct(penaltyNoImageRollback, "releases %s with no rollback artifact (no previous image digest)", plural(len(c.Images), "image"))
	}
	downOK := true
	if d.Migration {
		deduct(penaltyMigration, "schema migration touched: %s", first(migrations))
		if len(downs) > 0 {
			d.Reasons = append(d.Reasons, "rollback artifact: down migration "+first(downs))
		} else {
			downOK = false
			deduct(penaltyNoDown, "no down migration beside it")
		}
	}
	if len(c.NewDependencies) > 0 {
		deduct(penaltyNewDependency, "new external dependency: %s", strings.Join(c.NewDependencies, ", "))
	}
	d.Rollback = configOnly || imageRollback && downOK
	d.Score = max(0, d.Score)
	return d
}

func first(s []string) string {
	if len(s) > 1 {
		return fmt.Sprintf("%s (and %d more)", s[0], len(s)-1)
	}
	return s[0]
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
