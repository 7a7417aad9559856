package secrets

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/sourcegraph/conc/pool"
)

// gorootTargets lists $(go env GOROOT)/src, skipping the benchmark if absent.
func gorootTargets(b *testing.B) []Target {
	b.Helper()
	root := filepath.Join(runtime.GOROOT(), "src")
	if _, err := os.Stat(root); err != nil {
		b.Skipf("no GOROOT/src to scan: %v", err)
	}
	targets, _ := walkTree(b, root)
	return targets
}

// BenchmarkScanGoroot measures ScanTargets, reading included, on GOROOT/src:
//
//	GOEXPERIMENT=jsonv2 go test -run '^$' -bench ScanGoroot -count 5 ./fastpath/secrets
func BenchmarkScanGoroot(b *testing.B) {
	targets := gorootTargets(b)
	s, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	rep, err := s.ScanTargets(context.Background(), targets, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%d files, %d bytes, %d skipped, %d findings", rep.Files, rep.Bytes, len(rep.Skipped), len(rep.Findings))
	b.SetBytes(rep.Bytes)
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.ScanTargets(context.Background(), targets, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScanGorootEngine measures the engine alone: the text files of
// GOROOT/src are read once, then scanned on GOMAXPROCS goroutines.
func BenchmarkScanGorootEngine(b *testing.B) {
	targets := gorootTargets(b)
	s, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	var files []Target
	for _, t := range targets {
		data, err := os.ReadFile(t.Abs)
		if err != nil || len(data) > DefaultMaxFileSize || isBinary(data) {
			continue
		}
		files = append(files, Target{Path: t.Path, Content: data})
		total += int64(len(data))
	}
	b.SetBytes(total)
	b.ResetTimer()
	cpu0 := cpuTime()
	for b.Loop() {
		p := pool.New().WithMaxGoroutines(runtime.GOMAXPROCS(0))
		for i := range files {
			p.Go(func() { s.Scan(files[i].Path, files[i].Content) })
		}
		p.Wait()
	}
	// CPU time is steadier than wall time on a shared machine.
	cpu := (cpuTime() - cpu0).Seconds() / float64(b.N)
	b.ReportMetric(cpu, "cpu-s/op")
	b.ReportMetric(float64(total)/1e6/cpu, "MB/cpu-s")
}

// cpuTime is the user and system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkNew measures compiling gitleaks' default rules.
func BenchmarkNew(b *testing.B) {
	for b.Loop() {
		if _, err := New(Config{}); err != nil {
			b.Fatal(err)
		}
	}
}
