package signatures

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Image is an image reference found in a manifest.
type Image struct {
	Ref string
	// File, Line and Column locate the image field (1-based).
	File   string
	Line   int
	Column int
	// Workload names where it was found, e.g. "Deployment/api container app".
	Workload string
}

// Problem is a manifest sluice could not fully read: malformed YAML, or an
// image field that is not a plain string.
type Problem struct {
	File string
	Line int
	Msg  string
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
	}
	return p.File + ": " + p.Msg
}

// IsManifest reports whether a file may hold Kubernetes manifests (by name:
// .yaml or .yml).
func IsManifest(file string) bool {
	switch strings.ToLower(path.Ext(file)) {
	case ".yaml", ".yml":
		return true
	}
	return false
}

// podSpecPaths are where each workload kind keeps its pod spec.
var podSpecPaths = map[string][]string{
	"Pod":                   {"spec"},
	"Deployment":            {"spec", "template", "spec"},
	"StatefulSet":           {"spec", "template", "spec"},
	"DaemonSet":             {"spec", "template", "spec"},
	"ReplicaSet":            {"spec", "template", "spec"},
	"ReplicationController": {"spec", "template", "spec"},
	"Job":                   {"spec", "template", "spec"},
	"CronJob":               {"spec", "jobTemplate", "spec", "template", "spec"},
	"PodTemplate":           {"template", "spec"},
}

var containerLists = []string{"initContainers", "containers", "ephemeralContainers"}

// ManifestImages finds the images of the workloads in a YAML file (one or
// more documents; Helm-rendered output included). Documents that are not
// Kubernetes workloads are ignored silently. Malformed YAML is a Problem,
// never a panic; images found before it are still returned.
func ManifestImages(file string, data []byte) ([]Image, []Problem) {
	var imgs []Image
	var probs []Problem
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			probs = append(probs, yamlProblem(file, err))
			break
		}
		if len(doc.Content) == 0 {
			continue
		}
		walkObject(file, doc.Content[0], &imgs, &probs, 0)
	}
	return imgs, probs
}

func walkObject(file string, n *yaml.Node, imgs *[]Image, probs *[]Problem, depth int) {
	if n.Kind != yaml.MappingNode || depth > 8 {
		return
	}
	kind := scalar(get(n, "kind"))
	if strings.HasSuffix(kind, "List") {
		if items := get(n, "items"); items != nil && items.Kind == yaml.SequenceNode {
			for _, it := range items.Content {
				walkObject(file, it, imgs, probs, depth+1)
			}
		}
		return
	}
	specPath, ok := podSpecPaths[kind]
	if !ok || get(n, "apiVersion") == nil {
		return
	}
	workload := kind
	if meta := get(n, "metadata"); meta != nil {
		if nm := scalar(get(meta, "name")); nm != "" {
			workload += "/" + nm
		}
	}
	spec := n
	for _, k := range specPath {
		if spec = get(spec, k); spec == nil {
			return
		}
	}
	for _, list := range containerLists {
		cs := get(spec, list)
		if cs == nil || cs.Kind != yaml.SequenceNode {
			continue
		}
		for _, c := range cs.Content {
			img := get(c, "image")
			if img == nil {
				continue
			}
			line, col := img.Line, img.Column
			if raw := getRaw(c, "image"); raw.Kind == yaml.AliasNode {
				// Report where the alias is used, not the anchor.
				line, col = raw.Line, raw.Column
			}
			if img.Kind != yaml.ScalarNode || img.Tag == "!!null" {
				*probs = append(*probs, Problem{File: file, Line: line, Msg: fmt.Sprintf("%s: image is not a string; not checked", workload)})
				continue
			}
			if img.Value == "" {
				continue
			}
			where := workload
			if cn := scalar(get(c, "name")); cn != "" {
				where += " " + strings.TrimSuffix(list, "s") + " " + cn
			}
			*imgs = append(*imgs, Image{Ref: img.Value, File: file, Line: line, Column: col, Workload: where})
		}
	}
}

// get returns the value of key in a mapping, aliases followed.
func get(n *yaml.Node, key string) *yaml.Node {
	v := getRaw(n, key)
	if v != nil && v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	return v
}

func getRaw(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func scalar(n *yaml.Node) string {
	if n == nil || n.Kind != yaml.ScalarNode {
		return ""
	}
	return n.Value
}

// yamlProblem turns yaml.v3's "yaml: line 3: ..." into a Problem.
func yamlProblem(file string, err error) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	p := Problem{File: file}
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, tail, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				p.Line, msg = n, tail
			}
		}
	}
	p.Msg = "not valid YAML (" + msg + "); images after this point were not checked"
	return p
}
