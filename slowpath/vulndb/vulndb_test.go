package vulndb_test

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"

	"github.com/sluice-ci/sluice/internal/vulnfixture"
	"github.com/sluice-ci/sluice/slowpath/vulndb"
)

var built = time.Date(2026, 11, 20, 6, 0, 0, 0, time.UTC)

// dbArchive builds a DB from the fixture advisories and packs it.
func dbArchive(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := vulnfixture.BuildDB(dir, []string{"testdata/advisories.yaml"}, built); err != nil {
		t.Fatal(err)
	}
	b, err := vulnfixture.PackDB(dir)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// blobCounter counts blob downloads of the registry it wraps.
type blobCounter struct {
	h     http.Handler
	blobs atomic.Int32
}

func (c *blobCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
		c.blobs.Add(1)
	}
	c.h.ServeHTTP(w, r)
}

func serve(t *testing.T) (host string, counter *blobCounter) {
	t.Helper()
	counter = &blobCounter{h: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	srv := httptest.NewServer(counter)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), counter
}

// downHost is an address where nothing listens.
func downHost(t *testing.T) string {
	srv := httptest.NewServer(http.NotFoundHandler())
	host := strings.TrimPrefix(srv.URL, "http://")
	srv.Close()
	return host
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestFetchTriesMirrorsInOrderAndInstalls(t *testing.T) {
	ctx := context.Background()
	archive := dbArchive(t)
	host, counter := serve(t)
	art, err := vulnfixture.DBArtifact(archive)
	if err != nil {
		t.Fatal(err)
	}
	if err := vulnfixture.Push(ctx, host+"/aquasec/trivy-db:2", art); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	now := built.Add(3 * time.Hour)
	opts := vulndb.Options{Insecure: true, Logger: quiet(), Now: func() time.Time { return now }}
	repos := []string{downHost(t) + "/trivy-db:2", host + "/aquasec/trivy-db:2"}

	info, err := vulndb.Fetch(ctx, repos, cache, opts)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	layer := static.NewLayer(archive, vulndb.MediaType)
	want, _ := layer.Digest()
	if info.Digest != want.String() {
		t.Errorf("Digest = %s, want the layer's %s", info.Digest, want)
	}
	if info.Version != 2 || !info.UpdatedAt.Equal(built) || !info.DownloadedAt.Equal(now) {
		t.Errorf("Info = %+v, want version 2 built %s downloaded %s", info, built, now)
	}
	if !strings.HasPrefix(info.Source, host+"/aquasec/trivy-db@sha256:") {
		t.Errorf("Source = %q, want the second mirror by digest", info.Source)
	}
	for _, f := range []string{"trivy.db", "metadata.json"} {
		if _, err := os.Stat(filepath.Join(vulndb.Path(cache), f)); err != nil {
			t.Errorf("installed DB lacks %s: %v", f, err)
		}
	}
	loaded, err := vulndb.Load(cache)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if loaded.Digest != info.Digest || loaded.Source != info.Source || !loaded.DownloadedAt.Equal(now) {
		t.Errorf("Load = %+v, want what Fetch returned %+v", loaded, info)
	}
	blobs := counter.blobs.Load()
	if blobs == 0 {
		t.Fatal("no blob was downloaded")
	}

	t.Run("a second fetch of the same digest downloads nothing", func(t *testing.T) {
		now = now.Add(time.Hour)
		again, err := vulndb.Fetch(ctx, repos[1:], cache, opts)
		if err != nil {
			t.Fatal(err)
		}
		if n := counter.blobs.Load(); n != blobs {
			t.Errorf("%d more blob downloads, want none", n-blobs)
		}
		if !again.DownloadedAt.Equal(info.DownloadedAt) {
			t.Errorf("DownloadedAt moved to %s; the DB was not reinstalled", again.DownloadedAt)
		}
	})

	t.Run("every mirror down is an error naming each", func(t *testing.T) {
		down := downHost(t) + "/trivy-db:2"
		_, err := vulndb.Fetch(ctx, []string{down, host + "/missing/trivy-db:2"}, t.TempDir(), opts)
		if err == nil {
			t.Fatal("Fetch succeeded with no mirror up")
		}
		for _, s := range []string{down, "missing/trivy-db:2"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not name %s", err, s)
			}
		}
	})

	t.Run("an artifact that is not a Trivy DB is refused", func(t *testing.T) {
		img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: static.NewLayer([]byte("x"), "application/vnd.example+tar")})
		if err != nil {
			t.Fatal(err)
		}
		if err := vulnfixture.Push(ctx, host+"/other/thing:1", img); err != nil {
			t.Fatal(err)
		}
		_, err = vulndb.Fetch(ctx, []string{host + "/other/thing:1"}, cache, opts)
		if err == nil || !strings.Contains(err.Error(), "not a Trivy DB") {
			t.Fatalf("err = %v, want a media type refusal", err)
		}
		if cur, _ := vulndb.Load(cache); cur.Digest != info.Digest {
			t.Errorf("the installed DB changed to %s", cur.Digest)
		}
	})
}

func TestImport(t *testing.T) {
	ctx := context.Background()
	archive := dbArchive(t)
	file := filepath.Join(t.TempDir(), "db.tar.gz")
	if err := os.WriteFile(file, archive, 0o644); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	if _, err := vulndb.Load(cache); !errors.Is(err, vulndb.ErrNotInstalled) {
		t.Fatalf("Load on an empty cache = %v, want ErrNotInstalled", err)
	}
	info, err := vulndb.Import(ctx, file, cache, vulndb.Options{Logger: quiet()})
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if info.Source != "file:"+file || info.Version != 2 || !info.UpdatedAt.Equal(built) {
		t.Errorf("Info = %+v", info)
	}
	if _, err := vulndb.Load(cache); err != nil {
		t.Errorf("Load after Import: %v", err)
	}

	t.Run("importing the same file again keeps the installed DB", func(t *testing.T) {
		later := func() time.Time { return info.DownloadedAt.Add(time.Hour) }
		again, err := vulndb.Import(ctx, file, cache, vulndb.Options{Logger: quiet(), Now: later})
		if err != nil {
			t.Fatal(err)
		}
		if again.Digest != info.Digest || !again.DownloadedAt.Equal(info.DownloadedAt) {
			t.Errorf("second import = %+v, want the first one kept %+v", again, info)
		}
	})

	t.Run("a file that is not the DB archive leaves the cache as it was", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.tar.gz")
		os.WriteFile(bad, []byte("not gzip"), 0o644)
		if _, err := vulndb.Import(ctx, bad, cache, vulndb.Options{Logger: quiet()}); err == nil {
			t.Fatal("Import of garbage succeeded")
		}
		cur, err := vulndb.Load(cache)
		if err != nil || cur.Digest != info.Digest {
			t.Errorf("after a failed import: %+v, %v", cur, err)
		}
		entries, _ := os.ReadDir(cache)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".incoming-") {
				t.Errorf("left behind %s", e.Name())
			}
		}
	})
}

func TestStaleness(t *testing.T) {
	info := vulndb.Info{UpdatedAt: built}
	s := vulndb.Staleness{WarnAge: 24 * time.Hour, FailAge: 72 * time.Hour}
	tests := []struct {
		name     string
		age      time.Duration
		warn     bool
		stale    bool
		mentions string
	}{
		{"a fresh DB passes quietly", 2 * time.Hour, false, false, ""},
		{"a DB past the warn age warns", 30 * time.Hour, true, false, "30h0m0s old, past the warn age of 24h0m0s"},
		{"a DB past the fail age fails", 80 * time.Hour, false, true, "3d8h old, past the fail age of 3d0h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			warning, err := s.Check(info, built.Add(tt.age))
			var se *vulndb.StaleError
			if got := errors.As(err, &se); got != tt.stale {
				t.Fatalf("stale = %v (%v), want %v", got, err, tt.stale)
			}
			if (warning != "") != tt.warn {
				t.Errorf("warning = %q, want one: %v", warning, tt.warn)
			}
			msg := warning
			if err != nil {
				msg = err.Error()
			}
			if !strings.Contains(msg, tt.mentions) || (tt.mentions != "" && !strings.Contains(msg, "sluice db fetch")) {
				t.Errorf("message %q, want it to contain %q and name `sluice db fetch`", msg, tt.mentions)
			}
		})
	}
}

// tamper serves other bytes for one blob, as a compromised mirror would.
type tamper struct {
	h      http.Handler
	digest string
	with   []byte
}

func (t *tamper) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+t.digest) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(t.with)
		return
	}
	t.h.ServeHTTP(w, r)
}

func TestFetchRefusesALayerThatDoesNotMatchItsDigest(t *testing.T) {
	ctx := context.Background()
	archive := dbArchive(t)
	art, err := vulnfixture.DBArtifact(archive)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := static.NewLayer(archive, vulndb.MediaType).Digest()
	// The same archive with its gzip header's timestamp changed: it still
	// unpacks to the same DB, and has the same size, but not the digest.
	forged := append([]byte(nil), archive...)
	forged[4] ^= 0xff
	srv := httptest.NewServer(&tamper{h: registry.New(registry.Logger(log.New(io.Discard, "", 0))), digest: d.String(), with: forged})
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	if err := vulnfixture.Push(ctx, host+"/evil/trivy-db:2", art); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	_, err = vulndb.Fetch(ctx, []string{host + "/evil/trivy-db:2"}, cache, vulndb.Options{Insecure: true, Logger: quiet()})
	if err == nil {
		t.Fatal("Fetch installed a layer whose bytes do not match its digest")
	}
	if !strings.Contains(err.Error(), "digest") && !strings.Contains(err.Error(), "checksum") {
		t.Errorf("err = %v, want it to say the digest does not match", err)
	}
	if _, err := vulndb.Load(cache); !errors.Is(err, vulndb.ErrNotInstalled) {
		t.Errorf("after a refused fetch, Load = %v; want nothing installed", err)
	}
}
