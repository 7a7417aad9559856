package gate

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sluice-ci/sluice/internal/testrepo"
)

// history makes a repository with a base commit, then a merged pull
// request (two commits behind a merge), then a commit made straight on main.
func history(t *testing.T) (r *testrepo.Repo, base, merge, direct string) {
	t.Helper()
	r = testrepo.New(t)
	r.Write("go.mod", "module example.test/app\n\ngo 1.22\n\nrequire (\n\tgithub.com/old/dep v1.0.0\n)\n")
	r.Write("docs/readme.md", "hello\n")
	base = r.Commit("base")
	r.Git("checkout", "-q", "-b", "feature")
	r.Write("db/migrations/1.up.sql", "create table t(id int);\n")
	r.Commit("add table")
	r.Write("go.mod", "module example.test/app\n\ngo 1.22\n\nrequire (\n\tgithub.com/old/dep v1.1.0 // bumped\n\tgithub.com/new/dep v0.1.0\n)\n")
	r.Write("db/migrations/1.down.sql", "drop table t;\n")
	r.Commit("add dep and down migration")
	r.Git("checkout", "-q", "main")
	r.Git("merge", "-q", "--no-ff", "-m", "Merge pull request #7 from feature", "feature")
	merge = r.Git("rev-parse", "HEAD")
	r.Git("rm", "-q", "docs/readme.md")
	r.Write("docs/guide.md", "guide\n")
	direct = r.Commit("docs: replace readme with a guide")
	return r, base, merge, direct
}

func TestChangeSetFromRangeMakesOneChangePerFirstParentCommit(t *testing.T) {
	r, base, merge, direct := history(t)
	set, err := ChangeSetFromRange(context.Background(), r.Dir, base, "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	if !set.Ordered || len(set.Changes) != 2 {
		t.Fatalf("ordered=%v, %d changes, want an ordered set of 2 (the merge and the direct commit)", set.Ordered, len(set.Changes))
	}
	m, d := set.Changes[0], set.Changes[1]
	if m.Commit != merge || m.Title != "Merge pull request #7 from feature" || m.ID != merge[:12] {
		t.Errorf("first change = %+v, want the merge commit", m)
	}
	if want := []string{"db/migrations/1.down.sql", "db/migrations/1.up.sql", "go.mod"}; !slices.Equal(m.Paths, want) {
		t.Errorf("merge paths = %v, want %v (its diff against its first parent)", m.Paths, want)
	}
	if want := []string{"github.com/new/dep"}; !slices.Equal(m.NewDependencies, want) {
		t.Errorf("new dependencies = %v, want %v (a bumped one is not new)", m.NewDependencies, want)
	}
	if d.Commit != direct || !slices.Equal(d.Paths, []string{"docs/guide.md", "docs/readme.md"}) {
		t.Errorf("second change = %+v, want the direct commit with the deleted file too", d)
	}
	if set.Source != "git "+base[:12]+".."+direct[:12] {
		t.Errorf("source = %q", set.Source)
	}
}

func TestChangeSetFromRangeRefusesBadRefs(t *testing.T) {
	r, base, _, _ := history(t)
	for _, tc := range []struct{ base, head string }{{"nope", "HEAD"}, {base, "--output=/tmp/x"}, {"HEAD", "HEAD"}} {
		_, err := ChangeSetFromRange(context.Background(), r.Dir, tc.base, tc.head)
		if !errors.Is(err, ErrUsage) {
			t.Errorf("%s..%s: err = %v, want a usage error", tc.base, tc.head, err)
		}
	}
}

func TestChangeSetFromMergeGroupReadsTheEventsRange(t *testing.T) {
	r, base, merge, direct := history(t)
	ev := filepath.Join(t.TempDir(), "event.json")
	payload := `{"action": "checks_requested", "merge_group": {"head_sha": "` + direct + `", "head_ref": "refs/heads/gh-readonly-queue/main/pr-8-` + base + `", "base_sha": "` + base + `", "base_ref": "refs/heads/main"}}`
	if err := os.WriteFile(ev, []byte(payload), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := ChangeSetFromMergeGroup(context.Background(), r.Dir, ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Changes) != 2 || set.Changes[0].Commit != merge || set.Changes[1].Commit != direct {
		t.Errorf("changes = %+v", set.Changes)
	}
	if set.Source != "merge_group "+base[:12]+".."+direct[:12] {
		t.Errorf("source = %q", set.Source)
	}

	for name, payload := range map[string]string{
		"not a merge_group event": `{"pull_request": {}}`,
		"a head that is no SHA":   `{"merge_group": {"base_sha": "` + base + `", "head_sha": "main; rm -rf /"}}`,
	} {
		if err := os.WriteFile(ev, []byte(payload), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ChangeSetFromMergeGroup(context.Background(), r.Dir, ev)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.File != ev {
			t.Errorf("%s: err = %v, want a ConfigError naming the event file", name, err)
		}
	}
}

func TestDependencyParsers(t *testing.T) {
	pkg := []byte(`{"name": "app", "dependencies": {"left-pad": "^1.0.0"}, "devDependencies": {"jest": "29"}}`)
	if got := packageJSONDeps(pkg); !slices.Equal(got, []string{"jest", "left-pad"}) {
		t.Errorf("package.json: %v", got)
	}
	req := []byte("# pinned\nrequests==2.31.0\nDjango>=4\n-r base.txt\nnumpy ; python_version > '3'\n")
	if got := requirementsDeps(req); !slices.Equal(got, []string{"requests", "django", "numpy"}) {
		t.Errorf("requirements.txt: %v", got)
	}
	mod := []byte("module x\n\nrequire github.com/a/b v1.0.0\nrequire (\n\tgithub.com/c/d v0.1.0 // indirect\n)\n")
	if got := goModRequires(mod); !slices.Equal(got, []string{"github.com/a/b", "github.com/c/d"}) {
		t.Errorf("go.mod: %v", got)
	}
}
