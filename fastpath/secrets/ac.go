package secrets

import "slices"

// automaton is an Aho–Corasick DFA over bytes that folds ASCII case. Bytes
// that occur in no pattern share one input class, so the transition table
// is states × classes. States are renumbered so that every state with an
// output has an id ≥ firstOut: the hot loop tests one comparison per byte.
type automaton struct {
	class    [256]uint8
	nclass   uint32
	trans    []uint32 // (state*nclass + class) → next state * nclass
	firstOut uint32   // premultiplied: states ≥ firstOut have outputs
	out      [][]int32
	lens     []int // pattern lengths
}

func foldByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// newAutomaton builds the DFA for patterns (matched case-insensitively in
// ASCII). Pattern ids are indexes into patterns.
func newAutomaton(patterns []string) *automaton {
	a := &automaton{lens: make([]int, len(patterns))}
	// Input classes: 0 for bytes in no pattern.
	var used [256]bool
	for _, p := range patterns {
		for i := 0; i < len(p); i++ {
			used[foldByte(p[i])] = true
		}
	}
	n := uint8(1)
	var classOf [256]uint8
	for c := 0; c < 256; c++ {
		if used[c] {
			classOf[c] = n
			n++
		}
	}
	for c := 0; c < 256; c++ {
		a.class[c] = classOf[foldByte(byte(c))]
	}
	a.nclass = uint32(n)
	nc := int(n)

	// Trie.
	type node struct {
		next []int32
		fail int32
		out  []int32
	}
	newNode := func() node { return node{next: slices.Repeat([]int32{-1}, nc)} }
	nodes := []node{newNode()}
	for id, p := range patterns {
		a.lens[id] = len(p)
		s := 0
		for i := 0; i < len(p); i++ {
			c := a.class[p[i]]
			if nodes[s].next[c] < 0 {
				nodes[s].next[c] = int32(len(nodes))
				nodes = append(nodes, newNode())
			}
			s = int(nodes[s].next[c])
		}
		if len(p) > 0 {
			nodes[s].out = append(nodes[s].out, int32(id))
		}
	}
	// Breadth-first: failure links, full transitions and inherited outputs.
	queue := []int32{}
	for c := 0; c < nc; c++ {
		if t := nodes[0].next[c]; t < 0 {
			nodes[0].next[c] = 0
		} else {
			nodes[t].fail = 0
			queue = append(queue, t)
		}
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		f := nodes[s].fail
		nodes[s].out = append(nodes[s].out, nodes[f].out...)
		for c := 0; c < nc; c++ {
			t := nodes[s].next[c]
			if t < 0 {
				nodes[s].next[c] = nodes[f].next[c]
				continue
			}
			nodes[t].fail = nodes[f].next[c]
			queue = append(queue, t)
		}
	}
	// Renumber: states without output first.
	order := make([]int32, 0, len(nodes))
	for i := range nodes {
		if len(nodes[i].out) == 0 {
			order = append(order, int32(i))
		}
	}
	firstOut := len(order)
	for i := range nodes {
		if len(nodes[i].out) > 0 {
			order = append(order, int32(i))
		}
	}
	newID := make([]uint32, len(nodes))
	for to, from := range order {
		newID[from] = uint32(to)
	}
	// The root must stay state 0: it has no output, so it is order[0] only if
	// it sorts first, which it does (index 0 without output).
	a.trans = make([]uint32, len(nodes)*nc)
	a.out = make([][]int32, len(nodes))
	for from, n := range nodes {
		id := newID[from]
		for c := 0; c < nc; c++ {
			a.trans[int(id)*nc+c] = newID[n.next[c]] * a.nclass
		}
		if len(n.out) > 0 {
			out := slices.Clone(n.out)
			slices.Sort(out)
			a.out[id] = slices.Compact(out)
		}
	}
	a.firstOut = uint32(firstOut) * a.nclass
	return a
}

// hit is one pattern occurrence: data[end-len(pattern):end].
type hit struct {
	end int
	id  int32
}

// scan appends every occurrence of every pattern in data to hits, with
// positions offset by base; state carries the automaton across chunks.
func (a *automaton) scan(data []byte, base int, state uint32, hits []hit) ([]hit, uint32) {
	trans, class, firstOut := a.trans, &a.class, a.firstOut
	s := state
	for i, c := range data {
		s = trans[s+uint32(class[c])]
		if s >= firstOut {
			for _, id := range a.out[s/a.nclass] {
				hits = append(hits, hit{end: base + i + 1, id: id})
			}
		}
	}
	return hits, s
}

// first reports the first pattern found in data, or -1.
func (a *automaton) first(data []byte) int32 {
	trans, class, firstOut := a.trans, &a.class, a.firstOut
	s := uint32(0)
	for _, c := range data {
		s = trans[s+uint32(class[c])]
		if s >= firstOut {
			return a.out[s/a.nclass][0]
		}
	}
	return -1
}
