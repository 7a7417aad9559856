package signatures_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/sluice-ci/sluice/fastpath/signatures"
)

// BenchmarkVerify20 verifies 20 signed images, each in its own repository,
// on the in-process registry, with a cold cache every time.
func BenchmarkVerify20(b *testing.B) {
	l := newLab(b)
	var refs []string
	for i := range 20 {
		d := l.push(fmt.Sprintf("bench/app%02d:v1", i))
		if err := l.signer(l.good).Sign(d); err != nil {
			b.Fatal(err)
		}
		refs = append(refs, d.String())
	}
	p, err := signatures.NewPolicy(signatures.Config{Rules: []signatures.Rule{{Pattern: l.host + "/**", Keys: []string{l.goodPub}}}})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		v := signatures.NewVerifier(p, signatures.WithTransport(l.srv.Client().Transport))
		for _, o := range v.Verify(context.Background(), refs) {
			if o.Status() != signatures.Verified {
				b.Fatalf("%s: %v %v", o.Ref, o.Failures, o.Err)
			}
		}
	}
}
