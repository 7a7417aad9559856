package slowpath_test

import (
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/slowpath"
)

func TestScanOptionsFromThePolicy(t *testing.T) {
	src := `version: 1
controls:
  image-scan:
    severity: high
    ignore_unfixed: true
    sbom: false
    platform: linux/arm64
`
	p, err := gate.ParsePolicy("p.yaml", []byte(src), slowpath.Specs())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Validate(gate.Env{}); err != nil {
		t.Fatal(err)
	}
	o := p.Control("image-scan").Options.(*slowpath.ScanOptions).DeepOptions()
	if o.MinSeverity != "HIGH" || !o.IgnoreUnfixed || !o.SkipSBOM || o.Platform != "linux/arm64" {
		t.Errorf("deep options = %+v", o)
	}
	d := p.Control("dependency-scan").Options.(*slowpath.ScanOptions).DeepOptions()
	if d.MinSeverity != "" || d.IgnoreUnfixed || d.SkipSBOM {
		t.Errorf("defaults = %+v, want every severity, unfixed kept, an SBOM", d)
	}
}

func TestScanOptionErrorsNameLineAndField(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"an unknown severity", "version: 1\ncontrols:\n  image-scan:\n    severity: urgent\n", `p.yaml:4:15: controls.image-scan.severity: unknown severity "urgent"`},
		{"a platform on a dependency scan", "version: 1\ncontrols:\n  dependency-scan:\n    platform: linux/amd64\n", "p.yaml:4:15: controls.dependency-scan.platform: applies to image-scan only"},
		{"an unknown key", "version: 1\ncontrols:\n  image-scan:\n    sboms: true\n", "p.yaml:4:5: controls.image-scan.sboms: unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := gate.ParsePolicy("p.yaml", []byte(tt.src), slowpath.Specs())
			if err == nil {
				err = p.Validate(gate.Env{})
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
