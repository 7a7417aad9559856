package secrets

import (
	"bytes"
	"context"
	"encoding/base64"
	"slices"
)

// Decoding follows gitleaks' decoder (detect/codec): candidate segments are
// percent-encoded runs (%XX … %XX on one line), hex runs of 32 or more digits
// and base64 (standard or URL-safe) runs of 16 or more characters; a segment
// is decoded only if the result is printable ASCII, and the text with decoded
// segments spliced in is scanned again, up to Scanner.decodeMax passes, each
// pass looking only at the lines around what the previous pass decoded.
// Unicode escapes are not decoded.

type encoding uint8

const (
	encBase64 encoding = iota + 1
	encHex
	encPercent // highest precedence
)

// encoded is a candidate segment before decoding.
type encoded struct {
	enc        encoding
	start, end int
}

type segment struct {
	enc                encoding
	start, end         int // encoded, in the text it was found in
	decoded            []byte
	decStart, decEnd   int // decoded, in the next text
	origStart, origEnd int // in the original content
}

var b64Char, hexChar, likelyB64, printable [256]bool

func init() {
	for c := 0; c < 256; c++ {
		b := byte(c)
		b64Char[c] = isWordByte(b) || b == '/' || b == '+' || b == '-'
		hexChar[c] = '0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F'
		likelyB64[c] = '0' <= b && b <= '9' || b == '+' || b == '/' || b == '-' || b == '_'
		printable[c] = '\x08' < b && b < '\x7f'
	}
}

// findSegments appends the encoded segments in data[lo:hi] as gitleaks'
// encoding regex finds them (leftmost; percent before hex before base64).
//
// Base64 and hex runs must be 16 bytes or longer, so the scan looks at every
// 16th byte only: a run that long must cover it.
func findSegments(data []byte, lo, hi int, segs []encoded) []encoded {
	first := len(segs)
	// Percent-encoded text: from a %XX to the last %XX on its line.
	pct := first
	for i := lo; i < hi; {
		k := bytes.IndexByte(data[i:hi], '%')
		if k < 0 {
			break
		}
		i += k
		if i+2 < hi && hexChar[data[i+1]] && hexChar[data[i+2]] {
			end := i + 3
			for j := end; j+2 < hi && data[j] != '\n'; j++ {
				if data[j] == '%' && hexChar[data[j+1]] && hexChar[data[j+2]] {
					end = j + 3
				}
			}
			segs = append(segs, encoded{encPercent, i, end})
			i = end
			continue
		}
		i++
	}
	npct := len(segs)
	inPercent := func(at int) bool {
		for ; pct < npct; pct++ {
			if at < segs[pct].end {
				return at >= segs[pct].start
			}
		}
		return false
	}
	for i := lo; i+16 <= hi; {
		if !b64Char[data[i+15]] {
			i += 16
			continue
		}
		s, e := i+15, i+16
		for s > i && b64Char[data[s-1]] {
			s--
		}
		for e < hi && b64Char[data[e]] {
			e++
		}
		if e-s < 16 || inPercent(s) {
			i = e
			continue
		}
		h := s
		if e-s >= 32 {
			for h < e && hexChar[data[h]] {
				h++
			}
		}
		if h-s >= 32 {
			segs = append(segs, encoded{encHex, s, h})
			i = h
			continue
		}
		for k := 0; k < 2 && e < hi && data[e] == '='; k++ {
			e++
		}
		segs = append(segs, encoded{encBase64, s, e})
		i = e
	}
	found := segs[first:]
	if npct > first && len(segs) > npct {
		slices.SortFunc(found, func(a, b encoded) int { return a.start - b.start })
	}
	// Touching segments: the lower precedence one waits (gitleaks drops it).
	kept := found[:0]
	for k, m := range found {
		if k > 0 && found[k-1].end >= m.start && found[k-1].enc > m.enc {
			continue
		}
		if k+1 < len(found) && m.end >= found[k+1].start && found[k+1].enc > m.enc {
			continue
		}
		kept = append(kept, m)
	}
	return segs[:first+len(kept)]
}

// decodeSegment decodes v, using buf as scratch space; the result is a new
// slice, or nil when v does not decode to printable ASCII.
func decodeSegment(enc encoding, v []byte, buf *[]byte) []byte {
	switch enc {
	case encBase64:
		ok := false
		for _, c := range v {
			if likelyB64[c] {
				ok = true
				break
			}
		}
		if !ok {
			return nil
		}
		need := max(base64.StdEncoding.DecodedLen(len(v)), base64.RawURLEncoding.DecodedLen(len(v)))
		if cap(*buf) < need {
			*buf = make([]byte, need)
		}
		b := (*buf)[:need]
		if n, err := base64.StdEncoding.Decode(b, v); err == nil && isPrintable(b[:n]) {
			return bytes.Clone(b[:n])
		}
		if n, err := base64.RawURLEncoding.Decode(b, v); err == nil && isPrintable(b[:n]) {
			return bytes.Clone(b[:n])
		}
	case encHex:
		if len(v)%2 != 0 {
			return nil
		}
		digit := false
		for _, c := range v {
			if '0' <= c && c <= '9' {
				digit = true
				break
			}
		}
		if !digit {
			return nil
		}
		out := make([]byte, len(v)/2)
		for i := 0; i < len(v); i += 2 {
			b := unhex(v[i])<<4 | unhex(v[i+1])
			if !printable[b] {
				return nil
			}
			out[i/2] = b
		}
		return out
	case encPercent:
		out := make([]byte, 0, len(v))
		for i := 0; i < len(v); i++ {
			if v[i] == '%' && i+2 < len(v) && hexChar[v[i+1]] && hexChar[v[i+2]] {
				b := unhex(v[i+1])<<4 | unhex(v[i+2])
				if !printable[b] {
					return nil
				}
				out = append(out, b)
				i += 2
				continue
			}
			out = append(out, v[i])
		}
		return out
	}
	return nil
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func isPrintable(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !printable[c] {
			return false
		}
	}
	return true
}

// decodePasses decodes candidate segments and scans the decoded text.
func (s *Scanner) decodePasses(ctx context.Context, st *scratch, orig *text, path string) error {
	cur := orig
	var prev []segment
	for depth := 1; depth <= s.decodeMax; depth++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		found := st.encoded[:0]
		if depth == 1 {
			found = findSegments(cur.data, 0, len(cur.data), found)
		} else {
			last := 0
			for _, p := range prev {
				lo, hi := max(p.decStart, last), p.decEnd
				for lo > last && (b64Char[cur.data[lo-1]] || cur.data[lo-1] == '%') {
					lo--
				}
				for hi < len(cur.data) && (b64Char[cur.data[hi]] || cur.data[hi] == '=') {
					hi++
				}
				if lo < hi {
					found = findSegments(cur.data, lo, hi, found)
					last = hi
				}
			}
		}
		st.encoded = found
		var segs []segment
		for _, e := range found {
			g := segment{enc: e.enc, start: e.start, end: e.end}
			g.decoded = decodeSegment(g.enc, cur.data[g.start:g.end], &st.decBuf)
			if g.decoded == nil {
				continue
			}
			if depth == 1 {
				g.origStart, g.origEnd = g.start, g.end
			} else {
				ok := false
				for _, p := range prev {
					if p.decStart <= g.end && p.decEnd >= g.start {
						if !ok {
							g.origStart, g.origEnd, ok = p.origStart, p.origEnd, true
						}
						g.origStart, g.origEnd = min(g.origStart, p.origStart), max(g.origEnd, p.origEnd)
					}
				}
				if !ok {
					continue
				}
			}
			segs = append(segs, g)
		}
		if len(segs) == 0 {
			return nil
		}
		// Splice the decoded values in.
		grow := 0
		for _, g := range segs {
			grow += len(g.decoded) - (g.end - g.start)
		}
		next := make([]byte, 0, len(cur.data)+max(grow, 0))
		at := 0
		for i := range segs {
			g := &segs[i]
			next = append(next, cur.data[at:g.start]...)
			g.decStart = len(next)
			next = append(next, g.decoded...)
			g.decEnd = len(next)
			at = g.end
		}
		next = append(next, cur.data[at:]...)
		nt := &text{data: next, nl: indexNewlines(next, nil), ascii: isASCII(next)}

		// Keywords only on the lines around decoded text.
		hits := st.hits[:0]
		end := 0
		for _, g := range segs {
			lo := max(nt.lineStart(nt.line(g.decStart)), end)
			hi := nt.lineEnd(nt.line(max(g.decEnd-1, g.decStart)))
			if lo >= hi {
				continue
			}
			var state uint32
			hits, _ = s.keywords.scan(next[lo:hi], lo, state, hits)
			end = hi
		}
		st.hits = hits
		st.resetWindows()
		s.addWindows(st, nt, hits)
		keep := func(start, end int) (int, int, bool) {
			ok := false
			os, oe := 0, 0
			for _, g := range segs {
				if g.decStart <= end && g.decEnd >= start {
					if !ok {
						os, oe, ok = g.origStart, g.origEnd, true
					}
					os, oe = min(os, g.origStart), max(oe, g.origEnd)
				}
			}
			return os, oe, ok
		}
		if err := s.runWindows(ctx, st, nt, path, keep); err != nil {
			return err
		}
		prev, cur = segs, nt
	}
	return nil
}
