// Command sluice is a CI/CD security gate: cheap checks on the release path
// under budgets, deep analysis queued for workers, release batches approved
// by rules. See the README for commands and exit codes.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/sluice-ci/sluice/slowpath/deep"
)

// gcPercent is the garbage collector's target when GOGC is not set. sluice
// is a short-lived process whose live heap is small next to what it
// allocates (Trivy's checks are parsed and compiled on every run), so a
// collection every 100% of growth, Go's default, spends a fifth of a lint
// run's CPU in the collector. At 400 that share falls to about a tenth,
// and peak memory of linting 200 configuration files rises from about 225
// to about 400 MiB. memoryLimit keeps the collector working harder as the
// heap nears 1 GiB, unless GOMEMLIMIT says otherwise. The worker, a
// long-lived service scanning images, keeps Go's defaults.
const (
	gcPercent   = 400
	memoryLimit = 1 << 30
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "worker" {
		if os.Getenv("GOGC") == "" {
			debug.SetGCPercent(gcPercent)
		}
		if os.Getenv("GOMEMLIMIT") == "" {
			debug.SetMemoryLimit(memoryLimit)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	// Trivy keeps a temporary folder per process once it has scanned (the
	// worker's deep scans); it is removed when the process ends, not when
	// a command returns, since Trivy does not make it again.
	if err := deep.Cleanup(); err != nil {
		fmt.Fprintln(os.Stderr, "sluice:", err)
	}
	os.Exit(code)
}
