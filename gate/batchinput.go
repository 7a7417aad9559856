package gate

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// ChangesSchema names the changes file's version.
const ChangesSchema = "sluice.changes/v1"

type changesFile struct {
	Schema  string         `yaml:"schema"`
	Ordered bool           `yaml:"ordered"`
	Changes []changeYAML   `yaml:"changes"`
	Results []ResultRecord `yaml:"results"`
}

type changeYAML struct {
	ID              string   `yaml:"id"`
	Title           string   `yaml:"title"`
	Commit          string   `yaml:"commit"`
	Paths           []string `yaml:"paths"`
	Images          []string `yaml:"images"`
	Rollback        []string `yaml:"rollback"`
	NewDependencies []string `yaml:"new_dependencies"`
	Verdict         string   `yaml:"verdict"`
}

// LoadChangeSet reads a changes file (YAML, or JSON, which is YAML):
//
//	schema: sluice.changes/v1
//	ordered: false          # true: each change builds on the one before
//	changes:
//	  - id: PR-101          # required, unique
//	    title: Fix login
//	    commit: 3f2a...     # optional: results are looked up as commit:<sha>
//	    paths: [api/login.go]
//	    images: [ghcr.io/acme/api@sha256:...]
//	    rollback: [ghcr.io/acme/api@sha256:...]   # previous image digests
//	    new_dependencies: [github.com/foo/bar]
//	    verdict: verdicts/101.json                # sluice check --output
//	results:                # file-backed results (see LoadResultsFile)
//	  - {kind: image-scan, subject: ghcr.io/acme/api@sha256:..., status: passed}
//
// Verdict paths are relative to the file. Errors are *ConfigError naming
// the file, line and field.
func LoadChangeSet(file string) (*ChangeSet, []ResultRecord, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, usagef("--changes %s: %v", file, unwrapPathError(err))
	}
	root, err := parseYAML(file, data)
	if err != nil {
		return nil, nil, err
	}
	if root == nil {
		return nil, nil, &ConfigError{File: file, Line: 1, Field: "changes", Msg: "empty; want a list of changes"}
	}
	d := &decoder{file: file, pos: positions{}}
	var f changesFile
	if err := d.decode(root, reflectValue(&f), ""); err != nil {
		return nil, nil, err
	}
	if f.Schema != "" && f.Schema != ChangesSchema {
		return nil, nil, d.errf(d.pos["schema"], "schema", "unsupported schema %q (want %s)", f.Schema, ChangesSchema)
	}
	if len(f.Changes) == 0 {
		return nil, nil, d.errf(root, "changes", "missing or empty; want a list of changes")
	}
	set := &ChangeSet{Source: file, Ordered: f.Ordered}
	seen := map[string]bool{}
	for i, y := range f.Changes {
		field := fmt.Sprintf("changes[%d]", i)
		if y.ID == "" {
			return nil, nil, d.errf(d.pos[field], field+".id", "missing; every change needs an id")
		}
		if seen[y.ID] {
			return nil, nil, d.errf(d.pos[field+".id"], field+".id", "id %q given twice", y.ID)
		}
		seen[y.ID] = true
		if len(y.Paths) == 0 && len(y.Images) == 0 {
			return nil, nil, d.errf(d.pos[field], field+".paths", "missing; a change touches paths or releases images")
		}
		for j, p := range y.Paths {
			if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, `\`) {
				pf := fmt.Sprintf("%s.paths[%d]", field, j)
				return nil, nil, d.errf(d.pos[pf], pf, "want a slash path relative to the repository root, got %q", p)
			}
		}
		c := &BatchChange{ID: y.ID, Title: y.Title, Commit: y.Commit, Paths: y.Paths, Images: y.Images,
			Rollback: y.Rollback, NewDependencies: y.NewDependencies}
		if y.Verdict != "" {
			vf := y.Verdict
			if !filepath.IsAbs(vf) {
				vf = filepath.Join(filepath.Dir(file), vf)
			}
			v, err := loadVerdict(vf)
			if err != nil {
				return nil, nil, d.errf(d.pos[field+".verdict"], field+".verdict", "%v", err)
			}
			c.Verdict = v
		}
		set.Changes = append(set.Changes, c)
	}
	for i, r := range f.Results {
		if err := checkRecords(file, []ResultRecord{r}, fmt.Sprintf("results[%d]", i)); err != nil {
			ce := err.(*ConfigError)
			ce.Field = strings.Replace(ce.Field, "[0]", "", 1)
			if n := d.pos[fmt.Sprintf("results[%d]", i)]; n != nil {
				ce.Line, ce.Column = n.Line, n.Column
			}
			return nil, nil, ce
		}
	}
	return set, f.Results, nil
}

func loadVerdict(file string) (*Verdict, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading verdict %s: %v", file, unwrapPathError(err))
	}
	var v Verdict
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("verdict %s is not JSON: %v", file, err)
	}
	if v.Schema != Schema {
		return nil, fmt.Errorf("verdict %s: schema %q, want %s", file, v.Schema, Schema)
	}
	return &v, nil
}

// ChangeSetFromRange makes one change of each first-parent commit of
// base..head, oldest first: a merge commit (one pull request) is one
// change, its diff against its first parent; a commit made straight on the
// branch is one change. The set is ordered: each commit builds on the one
// before it.
func ChangeSetFromRange(ctx context.Context, dir, base, head string) (*ChangeSet, error) {
	root, err := RepoRoot(ctx, dir)
	if err != nil {
		return nil, usagef("not inside a git repository (%v)", err)
	}
	if base == "" {
		return nil, usagef("--base is required with a git range")
	}
	if head == "" {
		head = "HEAD"
	}
	b, err := resolveCommit(ctx, root, base, "--base")
	if err != nil {
		return nil, err
	}
	h, err := resolveCommit(ctx, root, head, "--head")
	if err != nil {
		return nil, err
	}
	out, err := git(ctx, root, "log", "--first-parent", "--reverse", "-z", "--format=%H%x01%P%x01%s", b+".."+h, "--")
	if err != nil {
		return nil, err
	}
	set := &ChangeSet{Source: fmt.Sprintf("git %s..%s", short(b), short(h)), Ordered: true}
	for _, rec := range strings.Split(string(out), "\x00") {
		rec = strings.TrimPrefix(rec, "\n")
		if rec == "" {
			continue
		}
		parts := strings.SplitN(rec, "\x01", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("parsing git log: unexpected record %q", rec)
		}
		commit, parents, subject := parts[0], strings.Fields(parts[1]), parts[2]
		parent := ""
		if len(parents) > 0 {
			parent = parents[0]
		} else if parent, err = gitLine(ctx, root, "hash-object", "-t", "tree", "--stdin"); err != nil {
			return nil, err
		}
		c, err := commitChange(ctx, root, parent, commit, subject)
		if err != nil {
			return nil, err
		}
		set.Changes = append(set.Changes, c)
	}
	if len(set.Changes) == 0 {
		return nil, usagef("%s..%s has no commits", base, head)
	}
	return set, nil
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

func commitChange(ctx context.Context, root, parent, commit, subject string) (*BatchChange, error) {
	out, err := git(ctx, root, "diff", "--name-only", "-z", "--no-renames", "--no-ext-diff", parent, commit, "--")
	if err != nil {
		return nil, err
	}
	c := &BatchChange{ID: short(commit), Title: subject, Commit: commit, Paths: []string{}}
	for _, p := range strings.Split(string(out), "\x00") {
		if p != "" {
			c.Paths = append(c.Paths, filepath.ToSlash(p))
		}
	}
	slices.Sort(c.Paths)
	for _, p := range c.Paths {
		parse := dependencyParser(path.Base(p))
		if parse == nil {
			continue
		}
		before := parse(showFile(ctx, root, parent, p))
		for _, dep := range parse(showFile(ctx, root, commit, p)) {
			if !slices.Contains(before, dep) && !slices.Contains(c.NewDependencies, dep) {
				c.NewDependencies = append(c.NewDependencies, dep)
			}
		}
	}
	slices.Sort(c.NewDependencies)
	return c, nil
}

// showFile reads a file at a commit; nil when it does not exist there.
func showFile(ctx context.Context, root, commit, p string) []byte {
	out, err := git(ctx, root, "cat-file", "blob", commit+":"+p)
	if err != nil {
		return nil
	}
	return out
}

// dependencyParser returns a function listing the external dependencies a
// manifest names, or nil for a file that is not one.
func dependencyParser(base string) func([]byte) []string {
	switch {
	case base == "go.mod":
		return goModRequires
	case base == "package.json":
		return packageJSONDeps
	case strings.HasPrefix(base, "requirements") && strings.HasSuffix(base, ".txt"):
		return requirementsDeps
	}
	return nil
}

func goModRequires(data []byte) []string {
	var out []string
	inBlock := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "//"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		switch {
		case line == "require (":
			inBlock = true
		case inBlock && line == ")":
			inBlock = false
		case inBlock:
			if f := strings.Fields(line); len(f) >= 2 {
				out = append(out, f[0])
			}
		case strings.HasPrefix(line, "require "):
			if f := strings.Fields(line); len(f) >= 3 {
				out = append(out, f[1])
			}
		}
	}
	return out
}

func packageJSONDeps(data []byte) []string {
	var pj map[string]json.RawMessage
	if json.Unmarshal(data, &pj) != nil {
		return nil
	}
	var out []string
	for _, k := range []string{"dependencies", "devDependencies", "peerDependencies", "optionalDependencies"} {
		var m map[string]any
		if json.Unmarshal(pj[k], &m) == nil {
			for name := range m {
				out = append(out, name)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func requirementsDeps(data []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "-") {
			continue
		}
		if i := strings.IndexAny(line, "=<>~![; @"); i >= 0 {
			line = line[:i]
		}
		if line != "" {
			out = append(out, strings.ToLower(line))
		}
	}
	return out
}

// MergeGroupEvent is the part of a GitHub merge_group event payload sluice
// reads.
type MergeGroupEvent struct {
	MergeGroup *struct {
		BaseSHA string `json:"base_sha"`
		HeadSHA string `json:"head_sha"`
		HeadRef string `json:"head_ref"`
	} `json:"merge_group"`
}

// ChangeSetFromMergeGroup reads a merge_group event payload (the file
// GITHUB_EVENT_PATH names) and makes the change set of its
// base_sha..head_sha in the repository around dir: in a merge queue, each
// queued pull request is one commit on the queue's branch.
func ChangeSetFromMergeGroup(ctx context.Context, dir, eventPath string) (*ChangeSet, error) {
	data, err := os.ReadFile(eventPath)
	if err != nil {
		return nil, usagef("reading the event payload: %v", err)
	}
	var ev MergeGroupEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, &ConfigError{File: eventPath, Msg: "not a JSON event payload: " + err.Error()}
	}
	if ev.MergeGroup == nil {
		return nil, &ConfigError{File: eventPath, Field: "merge_group", Msg: "missing: not a merge_group event"}
	}
	for _, f := range []struct{ name, v string }{{"base_sha", ev.MergeGroup.BaseSHA}, {"head_sha", ev.MergeGroup.HeadSHA}} {
		if !isHexSHA(f.v) {
			return nil, &ConfigError{File: eventPath, Field: "merge_group." + f.name, Msg: fmt.Sprintf("want a commit SHA, got %q", f.v)}
		}
	}
	set, err := ChangeSetFromRange(ctx, dir, ev.MergeGroup.BaseSHA, ev.MergeGroup.HeadSHA)
	if err != nil {
		return nil, err
	}
	set.Source = fmt.Sprintf("merge_group %s..%s", short(ev.MergeGroup.BaseSHA), short(ev.MergeGroup.HeadSHA))
	return set, nil
}

func isHexSHA(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return true
}
