package lint

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"gopkg.in/yaml.v3"
)

// Check ids of syntax findings.
const (
	CheckYAMLSyntax = "yaml-syntax"
	CheckHCLSyntax  = "hcl-syntax"
)

// yamlDoc is one parsed YAML document.
type yamlDoc struct {
	root *yaml.Node // the top mapping (or whatever the document holds)
}

// get returns the value of a key of a mapping node, or nil.
func get(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			v := n.Content[i+1]
			if v.Kind == yaml.AliasNode {
				v = v.Alias
			}
			return v
		}
	}
	return nil
}

func scalar(n *yaml.Node, key string) string {
	v := get(n, key)
	if v == nil || v.Kind != yaml.ScalarNode {
		return ""
	}
	return v.Value
}

// sniff settles an input's kind from its content, and checks its syntax.
// An input whose kind is cleared is of no interest to lint.
func sniff(in *input) {
	switch in.kind {
	case Terraform:
		checkHCL(in)
	case YAML:
		lower := strings.ToLower(in.path)
		if strings.HasSuffix(lower, ".json") && !interestingJSON(in.content) {
			in.kind = ""
			return
		}
		if !parseYAML(in) {
			return
		}
		in.kind = yamlKind(in.docs)
		if in.kind == YAML && strings.HasSuffix(lower, ".json") {
			in.kind = ""
		}
	case Action:
		parseYAML(in)
	}
}

// interestingJSON is a cheap test for JSON that may be a Kubernetes
// manifest or a CloudFormation template.
func interestingJSON(b []byte) bool {
	return bytes.Contains(b, []byte(`"AWSTemplateFormatVersion"`)) || bytes.Contains(b, []byte(`"AWS::`)) ||
		bytes.Contains(b, []byte(`"apiVersion"`)) && bytes.Contains(b, []byte(`"kind"`))
}

// yamlKind says what YAML documents are: CloudFormation, Tekton, Kubernetes,
// or none of these.
func yamlKind(docs []*yamlDoc) Kind {
	var kube, tekton bool
	for _, d := range docs {
		r := d.root
		if r == nil || r.Kind != yaml.MappingNode {
			continue
		}
		if get(r, "AWSTemplateFormatVersion") != nil || cfnResources(get(r, "Resources")) {
			return CloudFormation
		}
		api, kind := scalar(r, "apiVersion"), scalar(r, "kind")
		if api == "" || kind == "" {
			continue
		}
		if strings.HasPrefix(api, "tekton.dev/") {
			tekton = true
		} else {
			kube = true
		}
	}
	switch {
	case tekton:
		return Tekton
	case kube:
		return Kubernetes
	}
	return YAML
}

func cfnResources(n *yaml.Node) bool {
	if n == nil || n.Kind != yaml.MappingNode {
		return false
	}
	for i := 1; i < len(n.Content); i += 2 {
		if strings.HasPrefix(scalar(n.Content[i], "Type"), "AWS::") {
			return true
		}
	}
	return false
}

// parseYAML parses every document of the input once. A syntax error is a
// finding naming the line; it returns false then.
func parseYAML(in *input) bool {
	dec := yaml.NewDecoder(bytes.NewReader(in.content))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return true
		}
		if err != nil {
			line, msg := yamlErrorLine(err)
			in.syntax = append(in.syntax, Finding{
				Check: CheckYAMLSyntax, Severity: High, File: in.path, Line: line, Kind: in.kind,
				Message: fmt.Sprintf("not valid YAML: %s; fix the syntax so that the file can be checked", msg),
			})
			in.docs = nil
			return false
		}
		d := &yamlDoc{}
		if len(doc.Content) > 0 {
			d.root = doc.Content[0]
		}
		in.docs = append(in.docs, d)
	}
}

var yamlLineRE = regexp.MustCompile(`^yaml: (?:line (\d+): )?`)

// yamlErrorLine takes the line out of a yaml.v3 error.
func yamlErrorLine(err error) (int, string) {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = "yaml: " + te.Errors[0]
	}
	line := 1
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		if m[1] != "" {
			line, _ = strconv.Atoi(m[1])
		}
		msg = msg[len(m[0]):]
	}
	return line, msg
}

// checkHCL parses a Terraform file for syntax errors only; Trivy evaluates
// it later.
func checkHCL(in *input) {
	p := hclparse.NewParser()
	var diags hcl.Diagnostics
	if strings.HasSuffix(strings.ToLower(in.path), ".json") {
		_, diags = p.ParseJSON(in.content, in.path)
	} else {
		_, diags = p.ParseHCL(in.content, in.path)
	}
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		line := 1
		if d.Subject != nil {
			line = d.Subject.Start.Line
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + strings.TrimSuffix(d.Detail, ".")
		}
		in.syntax = append(in.syntax, Finding{
			Check: CheckHCLSyntax, Severity: High, File: in.path, Line: line, Kind: Terraform,
			Message: fmt.Sprintf("not valid HCL: %s; fix the syntax so that the module can be checked", msg),
		})
		break // the first error; the rest tend to follow from it
	}
}
