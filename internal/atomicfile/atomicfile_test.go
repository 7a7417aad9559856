package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReplacesWholeWithThePermissionsGiven(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "report.json")
	if err := os.WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, []byte("new"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil || string(b) != "new" {
		t.Fatalf("read %q, %v; want new", b, err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("mode %v, %v; want 0755", st.Mode().Perm(), err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temporary files left behind: %v", ents)
	}
}

func TestWriteIntoAMissingFolderLeavesNothing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "missing", "report.json")
	if err := Write(p, []byte("x"), 0o644); err == nil {
		t.Fatal("want an error writing into a folder that does not exist")
	}
	if _, err := os.Stat(p); err == nil {
		t.Fatal("a file was written")
	}
}
