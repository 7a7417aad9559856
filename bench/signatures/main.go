// Command signatures serves an in-process OCI registry on 127.0.0.1 (plain
// HTTP, as local registries are), pushes N random images to it, each in its
// own repository, signs them with a fresh cosign key using cosign's
// library, and writes into -dir: k.pub, refs.txt (one digest reference a
// line) and policy.yaml (a sluice policy that verifies them with k.pub).
// It prints the registry address on stdout, then serves until killed.
//
// bench/signatures.sh drives it.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/sluice-ci/sluice/fastpath/signatures/signtest"
)

func main() {
	dir := flag.String("dir", ".", "directory to write k.pub, refs.txt and policy.yaml to")
	n := flag.Int("n", 20, "number of signed images")
	disable := flag.String("disable", "", "comma-separated controls the policy disables (to time signatures alone)")
	flag.Parse()
	if err := run(*dir, *n, *disable); err != nil {
		fmt.Fprintln(os.Stderr, "signatures bench:", err)
		os.Exit(1)
	}
}

func run(dir string, n int, disable string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }() // serves until the process is killed
	host := ln.Addr().String()

	key, err := signtest.NewKey()
	if err != nil {
		return err
	}
	if err := key.WritePublic(filepath.Join(dir, "k.pub")); err != nil {
		return err
	}
	s := &signtest.Signer{Key: key}
	var refs []string
	for i := range n {
		d, err := signtest.PushRandom(fmt.Sprintf("%s/bench/app%02d:v1", host, i))
		if err != nil {
			return err
		}
		if err := s.Sign(d); err != nil {
			return err
		}
		refs = append(refs, d.String())
	}
	if err := os.WriteFile(filepath.Join(dir, "refs.txt"), []byte(strings.Join(refs, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	var off string
	for _, c := range strings.Split(disable, ",") {
		if c = strings.TrimSpace(c); c != "" {
			off += fmt.Sprintf("  %s:\n    enabled: false\n", c)
		}
	}
	policy := fmt.Sprintf(`version: 1
controls:
%s  signatures:
    enabled: true
    budget: 30s
    images:
      - pattern: "%s/**"
        key: k.pub
`, off, host)
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(policy), 0o644); err != nil {
		return err
	}
	fmt.Println(host)
	return <-errc
}
