package hook_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/actions/hook"
	"github.com/sluice-ci/sluice/internal/testrepo"
)

func TestInstall(t *testing.T) {
	ctx := context.Background()
	t.Run("writes an executable hook into .git/hooks", func(t *testing.T) {
		r := testrepo.New(t)
		in, err := hook.Install(ctx, r.Dir, hook.InstallOptions{Exe: "/opt/it's/sluice"})
		if err != nil {
			t.Fatal(err)
		}
		if in.Path != filepath.Join(r.Dir, ".git", "hooks", "pre-push") || in.Updated {
			t.Errorf("installed %+v", in)
		}
		st, err := os.Stat(in.Path)
		if err != nil || st.Mode()&0o111 == 0 {
			t.Fatalf("hook not executable: %v %v", st, err)
		}
		body, _ := os.ReadFile(in.Path)
		if !strings.Contains(string(body), `sluice='/opt/it'\''s/sluice'`) {
			t.Errorf("the binary path is not quoted for sh:\n%s", body)
		}
	})
	t.Run("respects core.hooksPath", func(t *testing.T) {
		r := testrepo.New(t)
		r.Git("config", "core.hooksPath", "ci/hooks")
		in, err := hook.Install(ctx, r.Dir, hook.InstallOptions{Exe: "/bin/sluice"})
		if err != nil {
			t.Fatal(err)
		}
		if in.Path != filepath.Join(r.Dir, "ci", "hooks", "pre-push") {
			t.Errorf("installed at %s", in.Path)
		}
	})
	t.Run("is idempotent for its own hook", func(t *testing.T) {
		r := testrepo.New(t)
		if _, err := hook.Install(ctx, r.Dir, hook.InstallOptions{Exe: "/a/sluice"}); err != nil {
			t.Fatal(err)
		}
		in, err := hook.Install(ctx, r.Dir, hook.InstallOptions{Exe: "/b/sluice"})
		if err != nil || !in.Updated || in.Backup != "" {
			t.Fatalf("%+v %v", in, err)
		}
		body, _ := os.ReadFile(in.Path)
		if !strings.Contains(string(body), "/b/sluice") {
			t.Error("reinstalling did not update the binary path")
		}
	})
	t.Run("never overwrites a foreign hook without force", func(t *testing.T) {
		r := testrepo.New(t)
		path := filepath.Join(r.Dir, ".git", "hooks", "pre-push")
		os.MkdirAll(filepath.Dir(path), 0o755)
		os.WriteFile(path, []byte("#!/bin/sh\necho mine\n"), 0o755)
		_, err := hook.Install(ctx, r.Dir, hook.InstallOptions{Exe: "/bin/sluice"})
		if !errors.Is(err, hook.ErrForeignHook) || !strings.Contains(err.Error(), "--force") {
			t.Fatalf("err %v", err)
		}
		if body, _ := os.ReadFile(path); string(body) != "#!/bin/sh\necho mine\n" {
			t.Error("the foreign hook was touched")
		}
		in, err := hook.Install(ctx, r.Dir, hook.InstallOptions{Exe: "/bin/sluice", Force: true})
		if err != nil || in.Backup != path+".before-sluice" {
			t.Fatalf("%+v %v", in, err)
		}
		if body, _ := os.ReadFile(in.Backup); string(body) != "#!/bin/sh\necho mine\n" {
			t.Error("the foreign hook was not kept")
		}
	})
}

func TestParseUpdates(t *testing.T) {
	a, b, z := strings.Repeat("a", 40), strings.Repeat("b", 40), strings.Repeat("0", 40)
	ups, err := hook.ParseUpdates(strings.NewReader("refs/heads/main " + a + " refs/heads/main " + b + "\n(delete) " + z + " refs/heads/old " + a + "\n"))
	if err != nil || len(ups) != 2 || ups[0].LocalSHA != a || ups[1].RemoteRef != "refs/heads/old" {
		t.Fatalf("%+v %v", ups, err)
	}
	if _, err := hook.ParseUpdates(strings.NewReader("refs/heads/main HEAD refs/heads/main " + b + "\n")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("a bad line: %v", err)
	}
}

func TestRanges(t *testing.T) {
	ctx := context.Background()
	up := testrepo.New(t)
	up.Write("a.txt", "a\n")
	root := up.Commit("root")
	remote := t.TempDir()
	up.Git("clone", "-q", "--bare", up.Dir, remote)
	up.Git("remote", "add", "origin", remote)
	up.Git("fetch", "-q", "origin")
	up.Write("b.txt", "b\n")
	second := up.Commit("second")
	up.Git("checkout", "-q", "-b", "topic")
	up.Write("c.txt", "c\n")
	topic := up.Commit("topic")
	z := strings.Repeat("0", 40)

	ups := []hook.Update{
		{"refs/heads/main", second, "refs/heads/main", root}, // an existing branch
		{"refs/heads/topic", topic, "refs/heads/topic", z},   // a new branch
		{"(delete)", z, "refs/heads/gone", root},             // a deletion
		{"refs/heads/main", root, "refs/heads/same", z},      // nothing the remote lacks
	}
	rs, err := hook.Ranges(ctx, up.Dir, "origin", ups)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 {
		t.Fatalf("ranges %+v, want 2 (deletion and known commits skipped)", rs)
	}
	if rs[0].Base != root || rs[0].Head != second {
		t.Errorf("existing branch %+v", rs[0])
	}
	// No origin/HEAD in this clone: the first commit origin lacks.
	if rs[1].Base != root || rs[1].Head != topic || rs[1].BaseSource != "remote-tracking refs" {
		t.Errorf("new branch %+v, want from %s", rs[1], root)
	}
	up.Git("remote", "set-head", "origin", "main")
	rs, err = hook.Ranges(ctx, up.Dir, "origin", ups[1:2])
	if err != nil || len(rs) != 1 || rs[0].Base != root || rs[0].BaseSource != "origin/HEAD" {
		t.Errorf("with origin/HEAD: %+v %v", rs, err)
	}
}
