package gate

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ConfigError is bad input in a configuration file: it names the file, the
// line and column, and the field. The CLI maps it to exit code 2.
type ConfigError struct {
	File   string
	Line   int
	Column int
	// Field is the dotted path of the offending key, e.g.
	// "controls.secrets.budget" or "rules[2].regex".
	Field string
	Msg   string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// FieldError is an error a control's constructor returns about one of its
// options; the gate turns it into a ConfigError with the option's position.
type FieldError struct {
	// Field is relative to the control's options, e.g. "rules[0].regex".
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// Size is a byte count written as a number of bytes or with a unit
// ("512KiB", "2MiB", "1GiB", "300kB").
type Size int64

// ParseSize parses a Size as written in a policy file.
func ParseSize(s string) (Size, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"kB", 1000}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q (want bytes, or a number with KiB, MiB or GiB)", s)
	}
	return Size(n * mult), nil
}

// Date is a calendar day, written 2006-01-02.
type Date struct{ time.Time }

// Passed reports whether the day is set and over at now: a date used as an
// expiry holds until the end of that day, UTC.
func (d Date) Passed(now time.Time) bool {
	return !d.IsZero() && now.UTC().After(d.Add(24*time.Hour))
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	sizeType     = reflect.TypeFor[Size]()
	dateType     = reflect.TypeFor[Date]()
	nodeType     = reflect.TypeFor[yaml.Node]()
)

// positions maps a field path to where it stands in the file.
type positions map[string]*yaml.Node

// decoder decodes YAML nodes into Go values strictly: unknown keys, wrong
// kinds and bad scalars are ConfigErrors naming file, line and field.
type decoder struct {
	file string
	pos  positions
	// extraKnown are keys accepted beside the struct's own at extraPath
	// (a control's common keys beside its options), listed in errors.
	extraPath  string
	extraKnown []string
}

func (d *decoder) errf(n *yaml.Node, field, format string, args ...any) *ConfigError {
	e := &ConfigError{File: d.file, Field: field, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	return e
}

// DecodeYAML strictly decodes a whole YAML document into v (a pointer to a
// struct whose fields carry `yaml` tags). Errors are *ConfigError.
func DecodeYAML(file string, data []byte, v any) error {
	root, err := parseYAML(file, data)
	if err != nil {
		return err
	}
	d := &decoder{file: file, pos: positions{}}
	if root == nil {
		return nil
	}
	return d.decode(root, reflect.ValueOf(v).Elem(), "")
}

func parseYAML(file string, data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, yamlSyntaxError(file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &ConfigError{File: file, Line: extra.Line, Msg: "more than one YAML document; want exactly one"}
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// yamlSyntaxError turns yaml.v3's "yaml: line 3: ..." into a ConfigError.
func yamlSyntaxError(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	e := &ConfigError{File: file, Msg: msg}
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, tail, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				e.Line, e.Msg = n, tail
			}
		}
	}
	return e
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	d.pos[path] = n
	if v.Type() == nodeType {
		v.Set(reflect.ValueOf(*n))
		return nil
	}
	switch v.Type() {
	case durationType:
		s, err := d.scalar(n, path)
		if err != nil {
			return err
		}
		dur, perr := time.ParseDuration(s)
		if perr != nil {
			return d.errf(n, path, "bad duration %q (want e.g. 500ms, 2s, 1m30s)", s)
		}
		v.SetInt(int64(dur))
		return nil
	case sizeType:
		s, err := d.scalar(n, path)
		if err != nil {
			return err
		}
		sz, perr := ParseSize(s)
		if perr != nil {
			return d.errf(n, path, "%v", perr)
		}
		v.SetInt(int64(sz))
		return nil
	case dateType:
		s, err := d.scalar(n, path)
		if err != nil {
			return err
		}
		t, perr := time.Parse(time.DateOnly, s)
		if perr != nil {
			return d.errf(n, path, "bad date %q (want YYYY-MM-DD)", s)
		}
		v.Set(reflect.ValueOf(Date{t}))
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return d.decode(n, v.Elem(), path)
	case reflect.Struct:
		return d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return d.errf(n, path, "want a list, got %s", kindName(n))
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if err := d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return d.errf(n, path, "want a mapping, got %s", kindName(n))
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			elem := reflect.New(v.Type().Elem()).Elem()
			if err := d.decode(val, elem, join(path, k.Value)); err != nil {
				return err
			}
			v.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), elem)
		}
		return nil
	case reflect.String:
		s, err := d.scalar(n, path)
		if err != nil {
			return err
		}
		v.SetString(s)
		return nil
	case reflect.Bool:
		s, err := d.scalar(n, path)
		if err != nil {
			return err
		}
		b, perr := strconv.ParseBool(s)
		if perr != nil || n.Tag == "!!str" && n.Style != 0 {
			return d.errf(n, path, "want true or false, got %q", s)
		}
		v.SetBool(b)
		return nil
	case reflect.Int, reflect.Int64, reflect.Int32:
		s, err := d.scalar(n, path)
		if err != nil {
			return err
		}
		i, perr := strconv.ParseInt(s, 10, 64)
		if perr != nil {
			return d.errf(n, path, "want a whole number, got %q", s)
		}
		v.SetInt(i)
		return nil
	case reflect.Float64:
		s, err := d.scalar(n, path)
		if err != nil {
			return err
		}
		f, perr := strconv.ParseFloat(s, 64)
		if perr != nil {
			return d.errf(n, path, "want a number, got %q", s)
		}
		v.SetFloat(f)
		return nil
	}
	return d.errf(n, path, "internal: cannot decode into %s", v.Type())
}

func (d *decoder) scalar(n *yaml.Node, path string) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", d.errf(n, path, "want a single value, got %s", kindName(n))
	}
	return n.Value, nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

type structField struct {
	key   string
	index []int
}

// fieldsOf lists a struct's YAML keys (inline structs flattened).
func fieldsOf(t reflect.Type) []structField {
	var out []structField
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(opts, "inline") && f.Type.Kind() == reflect.Struct {
			for _, sub := range fieldsOf(f.Type) {
				sub.index = append([]int{i}, sub.index...)
				out = append(out, sub)
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out = append(out, structField{key: name, index: []int{i}})
	}
	return out
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return d.errf(n, path, "want a mapping, got %s", kindName(n))
	}
	fields := fieldsOf(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		fp := join(path, k.Value)
		if seen[k.Value] {
			return d.errf(k, fp, "key given twice")
		}
		seen[k.Value] = true
		idx := slices.IndexFunc(fields, func(f structField) bool { return f.key == k.Value })
		if idx < 0 {
			known := knownKeys(fields)
			if path == d.extraPath {
				known = append(known, d.extraKnown...)
				slices.Sort(known)
			}
			return d.errf(k, fp, "unknown key %q (known: %s)", k.Value, strings.Join(known, ", "))
		}
		d.pos[fp+"#key"] = k
		if err := d.decode(val, v.FieldByIndex(fields[idx].index), fp); err != nil {
			return err
		}
	}
	return nil
}

func knownKeys(fields []structField) []string {
	keys := make([]string, len(fields))
	for i, f := range fields {
		keys[i] = f.key
	}
	slices.Sort(keys)
	return keys
}

func reflectValue(ptr any) reflect.Value { return reflect.ValueOf(ptr).Elem() }
