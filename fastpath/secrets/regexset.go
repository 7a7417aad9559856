package secrets

import "regexp"

// regexSet matches any of several regexes. Each runs only if the input
// contains one of the literals all its matches contain, which spares most
// inputs the regex engine.
type regexSet struct {
	res []*regexp.Regexp
	req []*automaton // per regex, or nil
}

func newRegexSet(exprs []string) (*regexSet, error) {
	s := &regexSet{}
	for _, e := range exprs {
		re, err := regexp.Compile(e)
		if err != nil {
			return nil, err
		}
		var req *automaton
		if tree, err := parseRegex(e); err == nil {
			if set, ok := requiredSet(tree, nil); ok {
				req = newAutomaton(set)
			}
		}
		s.res = append(s.res, re)
		s.req = append(s.req, req)
	}
	return s, nil
}

func (s *regexSet) match(b []byte) bool {
	for i, re := range s.res {
		if s.req[i] != nil && s.req[i].first(b) < 0 {
			continue
		}
		if re.Match(b) {
			return true
		}
	}
	return false
}
