// Command imagescan prepares the inputs of bench/image-scan.sh and runs
// sluice's image scan (package deep, as the worker runs it) on them.
//
//	go run ./bench/imagescan prepare DIR   # DIR/image.tar, DIR/db.tar.gz, DIR/trivy-cache/db
//	imagescan scan REF DBDIR               # prints the sorted vulnerability IDs (SBOM=0: no SBOM)
//
// The image is this machine's Debian package database in one layer; the DB
// is built from slowpath/deep/testdata fixtures rendered for the packages
// installed here (run from the repository root).
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/sluice-ci/sluice/internal/vulnfixture"
	"github.com/sluice-ci/sluice/slowpath/deep"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: imagescan prepare DIR | imagescan scan REF DBDIR")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "prepare":
		err = prepare(os.Args[2])
	case "scan":
		if len(os.Args) != 4 {
			err = fmt.Errorf("usage: imagescan scan REF DBDIR")
			break
		}
		err = scan(os.Args[2], os.Args[3])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "imagescan:", err)
		os.Exit(1)
	}
}

func prepare(dir string) error {
	pkgs, err := vulnfixture.Installed("/var/lib/dpkg/status", "libc6", "zlib1g", "openssl", "bash", "tar")
	if err != nil {
		return err
	}
	rendered := filepath.Join(dir, "debian.yaml")
	if err := vulnfixture.Render("slowpath/deep/testdata/debian.yaml.tmpl", rendered, pkgs); err != nil {
		return err
	}
	dbDir := filepath.Join(dir, "trivy-cache", "db") // Trivy's CLI layout: <cache-dir>/db
	if err := vulnfixture.BuildDB(dbDir, []string{rendered, "slowpath/deep/testdata/lang.yaml"}, time.Now().Add(-time.Hour)); err != nil {
		return err
	}
	archive, err := vulnfixture.PackDB(dbDir)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "db.tar.gz"), archive, 0o644); err != nil {
		return err
	}
	img, err := vulnfixture.DebianImage("/")
	if err != nil {
		return err
	}
	// EXTRA="usr/bin usr/lib/python3" adds those directories of this
	// machine as a second layer: binaries and language packages for the
	// analyzers to read, as in a real image.
	if extra := strings.Fields(os.Getenv("EXTRA")); len(extra) > 0 {
		layer, err := vulnfixture.DirLayer("/", filepath.Join(dir, "extra.tar"), extra...)
		if err != nil {
			return err
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			return err
		}
	}
	tag, err := name.NewTag("bench/debian:12")
	if err != nil {
		return err
	}
	return tarball.WriteToFile(filepath.Join(dir, "image.tar"), tag, img)
}

func scan(ref, dbDir string) error {
	if p := os.Getenv("CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	slog.SetDefault(logger)
	rep, err := deep.ScanImage(context.Background(), ref, deep.Options{DBDir: dbDir, Logger: logger, SkipSBOM: os.Getenv("SBOM") == "0"})
	if cerr := deep.Cleanup(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	var ids []string
	for _, f := range rep.Findings {
		ids = append(ids, f.Rule)
	}
	slices.Sort(ids)
	for _, id := range slices.Compact(ids) {
		fmt.Println(id)
	}
	return nil
}
