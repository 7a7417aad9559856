package lint

import (
	"context"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	oparego "github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/util"
	"github.com/open-policy-agent/opa/v1/version"
	"github.com/sourcegraph/conc/pool"

	trivychecks "github.com/aquasecurity/trivy-checks"
	"github.com/aquasecurity/trivy/pkg/iac/providers"
	"github.com/aquasecurity/trivy/pkg/iac/rego"
	"github.com/aquasecurity/trivy/pkg/iac/scan"
	iactypes "github.com/aquasecurity/trivy/pkg/iac/types"
)

// checkSet is Trivy's Rego checks, compiled together, each check's deny rules
// prepared once and then evaluated for every input. It does what Trivy's
// rego.Scanner does (same parse options, compiler settings, schemas, module
// filters, check selection and result conversion) without Trivy's cost of
// building, parsing and compiling a fresh query for every rule and input.
type checkSet struct {
	compiler *ast.Compiler
	store    storage.Store
	runtime  *ast.Term
	caps     *ast.Capabilities
	checks   []*check
}

// check is one Rego module in one of Trivy's check namespaces.
type check struct {
	path      string
	module    *ast.Module
	namespace string
	// meta is the check's metadata from its annotations; nil for a check
	// in the legacy format, whose metadata is asked of each input.
	meta  *rego.StaticMetadata
	rule  scan.Rule
	rules []*denyRule
}

// denyRule is a deny rule of a check, its query prepared on first use.
type denyRule struct {
	name  string
	query string
	once  sync.Once
	pq    oparego.PreparedEvalQuery
	err   error
}

// maxCheckErrors is Trivy's rego.DefaultAllowedRegoErrors.
const maxCheckErrors = rego.DefaultAllowedRegoErrors

// checkNamespaces are the top-level Rego packages Trivy runs checks from.
var checkNamespaces = []string{"builtin", "defsec", "appshield"}

// parseRegoDir parses the Rego files under fsys as Trivy's
// rego.LoadPoliciesFromDirs does, on two cores.
func parseRegoDir(ctx context.Context, fsys fs.FS) (map[string]*ast.Module, error) {
	var paths []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if strings.HasSuffix(path.Dir(p), "advanced/optional") {
			return fs.SkipDir
		}
		if !rego.IsRegoFile(d.Name()) || rego.IsDotFile(d.Name()) {
			return nil
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return nil, err
	}
	mods := make([]*ast.Module, len(paths))
	p := pool.New().WithErrors().WithContext(ctx).WithMaxGoroutines(2)
	const chunk = 32
	for lo := 0; lo < len(paths); lo += chunk {
		hi := min(lo+chunk, len(paths))
		p.Go(func(context.Context) error {
			for i := lo; i < hi; i++ {
				data, err := fs.ReadFile(fsys, paths[i])
				if err != nil {
					return err
				}
				m, err := rego.ParseRegoModule(paths[i], string(data))
				if err != nil {
					return fmt.Errorf("parsing Rego module %s: %w", paths[i], err)
				}
				mods[i] = m
			}
			return nil
		})
	}
	if err := p.Wait(); err != nil {
		return nil, err
	}
	out := make(map[string]*ast.Module, len(paths))
	for i, p := range paths {
		out[p] = mods[i]
	}
	return out, nil
}

// checkLib is Trivy's checks and libraries, parsed once. They are compiled
// per source type of input (Dockerfile, Kubernetes, cloud state) on first
// need, each time with only the checks that can apply to that source (see
// subset), so a change with one Dockerfile compiles the Dockerfile checks
// alone. A checks bundle is compiled whole, as Trivy does, so that its
// compile errors are handled as Trivy handles them.
type checkLib struct {
	policies, embedded map[string]*ast.Module
	srcFS              fs.FS
	dirs               []string
	whole              bool
	store              storage.Store
	runtime            *ast.Term
	caps               *ast.Capabilities
	sets               map[iactypes.Source]func() (*checkSet, error)
}

// The source types sluice's scanners give the checks, in the order their
// sets are compiled when all are needed: the largest first.
var checkSources = []iactypes.Source{iactypes.SourceCloud, iactypes.SourceKubernetes, iactypes.SourceDockerfile}

// loadCheckLib parses Trivy's embedded checks and libraries, or with
// bundle != "" the checks of that folder (falling back to the embedded
// check of the same package for one that does not compile, as Trivy does).
func loadCheckLib(ctx context.Context, bundle string) (*checkLib, error) {
	var libs, embedded map[string]*ast.Module
	p := pool.New().WithErrors().WithContext(ctx).WithMaxGoroutines(2)
	p.Go(func(ctx context.Context) (err error) {
		libs, err = parseRegoDir(ctx, trivychecks.EmbeddedLibraryFileSystem)
		return err
	})
	p.Go(func(ctx context.Context) (err error) {
		embedded, err = parseRegoDir(ctx, trivychecks.EmbeddedPolicyFileSystem)
		return err
	})
	if err := p.Wait(); err != nil {
		return nil, fmt.Errorf("loading embedded Trivy checks: %w", err)
	}
	l := &checkLib{policies: map[string]*ast.Module{}, embedded: embedded, whole: bundle != ""}
	if bundle == "" {
		maps.Copy(l.policies, embedded)
		maps.Copy(l.policies, libs)
	} else {
		l.srcFS, l.dirs = os.DirFS(bundle), []string{"."}
		loaded, err := rego.LoadPoliciesFromDirs(l.srcFS, ".")
		if err != nil {
			return nil, fmt.Errorf("loading checks bundle %s: %w", bundle, err)
		}
		maps.Copy(l.policies, loaded)
	}

	namespaces := map[string]bool{}
	for _, m := range l.policies {
		namespaces[moduleNamespace(m)] = true
	}
	store, err := checkStore(slices.Sorted(maps.Keys(namespaces)))
	if err != nil {
		return nil, fmt.Errorf("loading checks data: %w", err)
	}
	l.store, l.runtime, l.caps = store, runtimeValues(), ast.CapabilitiesForThisVersion()
	l.sets = map[iactypes.Source]func() (*checkSet, error){}
	whole := sync.OnceValues(func() (*checkSet, error) { return l.compileSet(maps.Clone(l.policies)) })
	l.sets[""] = whole
	for _, src := range checkSources {
		if l.whole {
			l.sets[src] = whole
		} else {
			l.sets[src] = sync.OnceValues(func() (*checkSet, error) { return l.compileSet(l.subset(src)) })
		}
	}
	return l, nil
}

// set returns the checks compiled for inputs of the source type.
func (l *checkLib) set(src iactypes.Source) (*checkSet, error) {
	if f, ok := l.sets[src]; ok {
		return f()
	}
	return l.sets[""]()
}

func (l *checkLib) compileSet(policies map[string]*ast.Module) (*checkSet, error) {
	cs := &checkSet{store: l.store, runtime: l.runtime, caps: l.caps}
	if err := cs.compile(policies, maps.Clone(l.embedded), l.srcFS, l.dirs); err != nil {
		return nil, fmt.Errorf("compiling Trivy checks: %w", err)
	}
	return cs, nil
}

// subset is the modules to compile for inputs of the source type: every
// module but the checks that Trivy's selection (policyApplies) can never
// run on that source (a check with a selector of another type), and then
// every module whose package a kept module refers to, so that what is
// compiled evaluates as it would among all the checks.
func (l *checkLib) subset(src iactypes.Source) map[string]*ast.Module {
	keep := map[string]*ast.Module{}
	left := map[string]*ast.Module{}
	for p, m := range l.policies {
		if l.otherSource(m, src) {
			left[p] = m
		} else {
			keep[p] = m
		}
	}
	queue := slices.Collect(maps.Values(keep))
	for len(queue) > 0 && len(left) > 0 {
		m := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		for _, ref := range dataRefs(m) {
			for p, o := range left {
				if pkg := o.Package.Path; pkg.HasPrefix(ref) || ref.HasPrefix(pkg) {
					keep[p] = o
					delete(left, p)
					queue = append(queue, o)
				}
			}
		}
	}
	return keep
}

// otherSource says whether the module is a check that Trivy never runs on
// inputs of the source type.
func (l *checkLib) otherSource(m *ast.Module, src iactypes.Source) bool {
	if !slices.Contains(checkNamespaces, strings.Split(moduleNamespace(m), ".")[0]) || hasRule(m, "__rego_metadata__") {
		return false
	}
	md, err := rego.MetadataFromAnnotations(m)
	if err != nil || md == nil || md.Library {
		return false
	}
	for _, s := range md.InputOptions.Selectors {
		if s.Type != string(src) {
			return true
		}
	}
	return false
}

// dataRefs are the ground prefixes of the module's references into data,
// its imports included.
func dataRefs(m *ast.Module) []ast.Ref {
	var out []ast.Ref
	add := func(r ast.Ref) {
		if len(r) > 0 && r[0].Equal(ast.DefaultRootDocument) {
			out = append(out, r.GroundPrefix())
		}
	}
	for _, imp := range m.Imports {
		if r, ok := imp.Path.Value.(ast.Ref); ok {
			add(r)
		}
	}
	ast.WalkRefs(m, func(r ast.Ref) bool {
		add(r)
		return false
	})
	return out
}

// checkStore is Trivy's data store. Trivy loads data files only from data
// folders it is given, and sluice gives none: the store holds the list of
// the checks' namespaces.
func checkStore(namespaces []string) (storage.Store, error) {
	docs, err := loader.NewFileLoader().All(nil)
	if err != nil {
		return nil, fmt.Errorf("loading documents: %w", err)
	}
	docs.Documents["namespaces"] = namespaces
	return docs.Store()
}

// runtimeValues is what Trivy gives Rego as opa.runtime().
func runtimeValues() *ast.Term {
	env := ast.NewObject()
	for _, pair := range os.Environ() {
		k, v, ok := strings.Cut(pair, "=")
		if !ok {
			env.Insert(ast.StringTerm(k), ast.NullTerm())
		} else {
			env.Insert(ast.StringTerm(k), ast.StringTerm(v))
		}
	}
	obj := ast.NewObject()
	obj.Insert(ast.StringTerm("env"), ast.NewTerm(env))
	obj.Insert(ast.StringTerm("version"), ast.StringTerm(version.Version))
	obj.Insert(ast.StringTerm("commit"), ast.StringTerm(version.Vcs))
	return ast.NewTerm(obj)
}

func moduleNamespace(m *ast.Module) string {
	return strings.TrimPrefix(m.Package.Path.String(), "data.")
}

func isBuiltinNamespace(ns string) bool {
	for _, b := range checkNamespaces {
		if strings.HasPrefix(ns, b+".") {
			return true
		}
	}
	return false
}

func hasRule(m *ast.Module, name string) bool {
	return slices.ContainsFunc(m.Rules, func(r *ast.Rule) bool { return r.Head.Name.Equal(ast.Var(name)) })
}

// compile compiles the modules as Trivy's rego.Scanner.compilePolicies
// does, dropping (or replacing by their embedded version) the modules that
// fail, and keeps the checks Trivy would run.
func (cs *checkSet) compile(policies, embedded map[string]*ast.Module, srcFS fs.FS, dirs []string) error {
	for {
		schemas, err := rego.BuildSchemaSetFromPolicies(policies, dirs, srcFS, map[string][]byte{})
		if err != nil {
			return err
		}
		c := ast.NewCompiler().
			WithUseTypeCheckAnnotations(true).
			WithCapabilities(ast.CapabilitiesForThisVersion()).
			WithSchemas(schemas)
		c.SetErrorLimit(maxCheckErrors + 1)
		c.Compile(policies)
		if !c.Failed() {
			cs.compiler = c
			break
		}
		fallbackChecks(c, policies, embedded)
		var errs ast.Errors
		for _, e := range c.Errors {
			if e.Message != "error limit reached" {
				errs = append(errs, e)
			}
		}
		if len(errs) > maxCheckErrors {
			return errs
		}
		for _, e := range errs {
			if e.Location == nil {
				continue
			}
			trivyLogger().Warn("dropping a Rego check that does not compile", "file", e.Location.File, "err", e)
			delete(policies, e.Location.File)
		}
	}

	retriever := rego.NewMetadataRetriever(cs.compiler)
	for _, p := range slices.Sorted(maps.Keys(policies)) {
		m := policies[p]
		var meta *rego.StaticMetadata
		legacy := hasRule(m, "__rego_metadata__")
		if !legacy {
			md, err := rego.MetadataFromAnnotations(m)
			if err != nil {
				legacy = true // Trivy asks the module itself
			} else if md == nil {
				continue // no metadata: Trivy drops the module
			} else {
				meta = md
			}
		}
		// Trivy's module filters: the default framework, no deprecated checks.
		md := meta
		if legacy {
			var err error
			if md, err = retriever.RetrieveMetadata(context.Background(), m); err != nil {
				return fmt.Errorf("retrieving metadata of %s: %w", p, err)
			}
		}
		if md == nil || !rego.FrameworksFilter(nil)(m, md) || !rego.IncludeDeprecatedFilter(false)(m, md) {
			continue
		}
		ns := moduleNamespace(m)
		if !slices.Contains(checkNamespaces, strings.Split(ns, ".")[0]) {
			continue // libraries and checks of other namespaces
		}
		ck := &check{path: p, module: m, namespace: ns, meta: meta}
		if meta != nil {
			ck.rule = meta.ToRule()
		}
		seen := map[string]bool{}
		for _, r := range m.Rules {
			name := r.Head.Name.String()
			if seen[name] {
				continue
			}
			seen[name] = true
			if name == "deny" || strings.HasPrefix(name, "deny_") {
				ck.rules = append(ck.rules, &denyRule{name: name, query: fmt.Sprintf("data.%s.%s", ns, name)})
			}
		}
		cs.checks = append(cs.checks, ck)
	}
	return nil
}

// fallbackChecks replaces a check of Trivy's namespaces that fails to
// compile by the embedded check of the same package or ID, as Trivy does.
func fallbackChecks(c *ast.Compiler, policies, embedded map[string]*ast.Module) {
	var excluded []string
	for _, e := range c.Errors {
		if e.Location == nil || slices.Contains(excluded, e.Location.File) {
			continue
		}
		loc := e.Location.File
		bad := policies[loc]
		if bad == nil || !isBuiltinNamespace(moduleNamespace(bad)) {
			continue
		}
		emb := matchEmbedded(bad, embedded)
		if emb == nil {
			continue
		}
		delete(policies, loc)
		policies[emb.Package.Location.File] = emb
		delete(embedded, emb.Package.Location.File)
		excluded = append(excluded, loc)
	}
	c.Errors = slices.DeleteFunc(c.Errors, func(e *ast.Error) bool {
		return e.Location != nil && slices.Contains(excluded, e.Location.File)
	})
}

func matchEmbedded(bad *ast.Module, embedded map[string]*ast.Module) *ast.Module {
	for _, p := range slices.Sorted(maps.Keys(embedded)) {
		if embedded[p].Package.Path.String() == bad.Package.Path.String() {
			return embedded[p]
		}
	}
	bm, err := rego.MetadataFromAnnotations(bad)
	if err != nil || bm == nil {
		return nil
	}
	for _, p := range slices.Sorted(maps.Keys(embedded)) {
		m, err := rego.MetadataFromAnnotations(embedded[p])
		if err != nil || m == nil {
			continue
		}
		if bm.AVDID != "" && bm.AVDID == m.AVDID || bm.ID != "" && bm.ID != "N/A" && bm.ID == m.ID {
			return embedded[p]
		}
	}
	return nil
}

func (cs *checkSet) prepare(ctx context.Context, r *denyRule) (oparego.PreparedEvalQuery, error) {
	r.once.Do(func() {
		r.pq, r.err = oparego.New(
			oparego.Query(r.query),
			oparego.Compiler(cs.compiler),
			oparego.Store(cs.store),
			oparego.Runtime(cs.runtime),
			oparego.Capabilities(cs.caps),
		).PrepareForEval(ctx)
	})
	return r.pq, r.err
}

// regoInput is one input to the checks, as Trivy's rego.Input.
type regoInput struct {
	path     string
	fsys     fs.FS
	contents any
	parsed   ast.Value
}

// scanInput runs the checks that apply to inputs of the source type, as
// Trivy's rego.Scanner.ScanInput does, and returns the failed results.
func (cs *checkSet) scanInput(ctx context.Context, source iactypes.Source, inputs ...regoInput) (scan.Results, error) {
	var ins []regoInput
	for _, in := range inputs {
		c := in.contents
		if err := util.RoundTrip(&c); err != nil {
			trivyLogger().Debug("skipping an input Trivy cannot convert", "file", in.path, "err", err)
			continue
		}
		v, err := ast.InterfaceToValue(c)
		if err != nil {
			trivyLogger().Debug("skipping an input Trivy cannot convert", "file", in.path, "err", err)
			continue
		}
		in.parsed = v
		ins = append(ins, in)
	}
	if len(ins) == 0 {
		return nil, nil
	}
	contents := make([]any, len(ins))
	for i, in := range ins {
		contents[i] = in.contents
	}
	var results scan.Results
	for _, ck := range cs.checks {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		meta, rule := ck.meta, ck.rule
		if meta == nil {
			md, err := rego.NewMetadataRetriever(cs.compiler).RetrieveMetadata(ctx, ck.module, contents...)
			if err != nil {
				continue // Trivy logs and skips the check
			}
			meta, rule = md, md.ToRule()
		}
		if !policyApplies(source, meta, ins) {
			continue
		}
		for _, r := range ck.rules {
			pq, err := cs.prepare(ctx, r)
			if err != nil {
				continue // Trivy logs and skips the rule
			}
			var rr scan.Results
			for _, in := range ins {
				rs, err := pq.Eval(ctx, oparego.EvalParsedInput(in.parsed))
				if err != nil {
					rr = nil
					break // Trivy drops the whole rule
				}
				convertResults(&rr, rs, in, ck.namespace, r.name)
			}
			rr.SetRule(rule)
			results = append(results, rr...)
		}
	}
	return results, nil
}

// supportedProviders are Trivy's cloud providers and "kind" for Kubernetes.
var supportedProviders = func() map[string]bool {
	m := map[string]bool{"kind": true}
	for _, p := range providers.AllProviders() {
		m[string(p)] = true
	}
	return m
}()

// policyApplies is Trivy's isPolicyApplicable.
func policyApplies(source iactypes.Source, meta *rego.StaticMetadata, inputs []regoInput) bool {
	sels := meta.InputOptions.Selectors
	if len(sels) == 0 {
		return source != iactypes.SourceTerraformRaw
	}
	for _, s := range sels {
		if s.Type != string(source) {
			return false
		}
	}
	switch source {
	case iactypes.SourceCloud, iactypes.SourceDefsec, iactypes.SourceKubernetes:
	default:
		return true
	}
	for _, in := range inputs {
		ii, ok := in.contents.(map[string]any)
		if !ok {
			continue
		}
		for provider := range ii {
			if !supportedProviders[provider] {
				continue
			}
			for _, s := range sels {
				if checkSubtype(ii, provider, s.Subtypes) {
					return true
				}
			}
		}
	}
	return false
}

func checkSubtype(ii map[string]any, provider string, subTypes []rego.SubType) bool {
	if len(subTypes) == 0 {
		return true
	}
	for _, st := range subTypes {
		switch services := ii[provider].(type) {
		case map[string]any:
			if st.Provider != provider {
				continue
			}
			if _, ok := services[st.Service]; ok {
				return true
			}
		case string:
			if strings.EqualFold(services, st.Group) || strings.EqualFold(services, st.Version) ||
				strings.EqualFold(services, st.Kind) {
				return true
			}
		}
	}
	return false
}

// convertResults adds a failed result for each value of the result set,
// as Trivy's rego.Scanner.convertResults does.
func convertResults(out *scan.Results, rs oparego.ResultSet, in regoInput, namespace, rule string) {
	offset := 0
	if m, ok := in.contents.(map[string]any); ok {
		if md, ok := m["__defsec_metadata"].(map[string]any); ok {
			offset, _ = md["offset"].(int)
		}
	}
	for _, r := range rs {
		for _, e := range r.Expressions {
			values, ok := e.Value.([]any)
			if !ok {
				values = []any{e.Value}
			}
			for _, v := range values {
				res := parseResult(v)
				res.FS = in.fsys
				if res.Filepath == "" && in.path != "" {
					res.Filepath = in.path
				}
				if res.Message == "" {
					res.Message = fmt.Sprintf("Rego check rule: %s.%s", namespace, rule)
				}
				res.StartLine += offset
				res.EndLine += offset
				out.AddRego(res.Message, namespace, rule, nil, res)
			}
		}
	}
}

// regoResult is Trivy's rego result: where a check's deny points.
type regoResult struct {
	Filepath     string
	Resource     string
	StartLine    int
	EndLine      int
	SourcePrefix string
	Message      string
	Explicit     bool
	Managed      bool
	FSKey        string
	FS           fs.FS
	Parent       *regoResult
}

func (r *regoResult) GetMetadata() iactypes.Metadata {
	var m iactypes.Metadata
	if !r.Managed {
		m = iactypes.NewUnmanagedMetadata()
	} else {
		rng := iactypes.NewRangeWithFSKey(r.Filepath, r.StartLine, r.EndLine, r.SourcePrefix, r.FSKey, r.FS)
		if r.Explicit {
			m = iactypes.NewExplicitMetadata(rng, r.Resource)
		} else {
			m = iactypes.NewMetadata(rng, r.Resource)
		}
	}
	if r.Parent != nil {
		return m.WithParent(r.Parent.GetMetadata())
	}
	return m
}

func (r *regoResult) GetRawValue() any { return nil }

func parseResult(raw any) *regoResult {
	res := regoResult{Managed: true}
	switch val := raw.(type) {
	case []any:
		var msg string
		for _, item := range val {
			switch it := item.(type) {
			case map[string]any:
				res = parseCause(it)
			case string:
				msg = it
			}
		}
		res.Message = msg
	case string:
		res.Message = val
	case map[string]any:
		res = parseCause(val)
	default:
		res.Message = "Rego check resulted in DENY"
	}
	return &res
}

func parseCause(cause map[string]any) regoResult {
	res := regoResult{Managed: true}
	str := func(k string) (string, bool) {
		v, ok := cause[k]
		if !ok {
			return "", false
		}
		return fmt.Sprintf("%s", v), true
	}
	if s, ok := str("msg"); ok {
		res.Message = s
	}
	if s, ok := str("filepath"); ok {
		res.Filepath = s
	}
	if s, ok := str("fskey"); ok {
		res.FSKey = s
	}
	if s, ok := str("resource"); ok {
		res.Resource = s
	}
	if s, ok := str("startline"); ok {
		res.StartLine, _ = strconv.Atoi(s)
	}
	if s, ok := str("endline"); ok {
		res.EndLine, _ = strconv.Atoi(s)
	}
	if s, ok := str("sourceprefix"); ok {
		res.SourcePrefix = s
	}
	if b, ok := cause["explicit"].(bool); ok {
		res.Explicit = b
	}
	if b, ok := cause["managed"].(bool); ok {
		res.Managed = b
	}
	if p, ok := cause["parent"].(map[string]any); ok {
		pr := parseCause(p)
		res.Parent = &pr
	}
	return res
}
