package signatures

import (
	"context"
	"sync"
)

// Cache remembers verification results by image digest and the hash of the
// policy rule that decided them, for the life of the process. Only
// conclusive results (verified, or a Failure) are kept; operational errors
// are not. Concurrent lookups of one key wait for a single verification.
// The zero value is not usable: call NewCache. A Cache is safe for
// concurrent use.
type Cache struct {
	mu sync.Mutex
	m  map[string]*cacheEntry
}

type cacheEntry struct {
	done chan struct{}
	// Set before done is closed; read only after.
	res  result
	keep bool
}

// result is what verifying one digest under one rule concluded.
type result struct {
	failures []*Failure
	// by says what verified it, e.g. "key keys/cosign.pub; attestation
	// https://slsa.dev/provenance/v1".
	by string
}

// NewCache returns an empty cache.
func NewCache() *Cache { return &Cache{m: map[string]*cacheEntry{}} }

// Len reports how many results the cache holds.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range c.m {
		select {
		case <-e.done:
			n++
		default:
		}
	}
	return n
}

// do returns the cached result for key, or runs fn to make it. fn's error
// is returned and not cached. hit reports whether the result came from the
// cache (or from a concurrent caller's fn).
func (c *Cache) do(ctx context.Context, key string, fn func() (result, error)) (res result, hit bool, err error) {
	for {
		c.mu.Lock()
		e, ok := c.m[key]
		if !ok {
			e = &cacheEntry{done: make(chan struct{})}
			c.m[key] = e
			c.mu.Unlock()
			return c.fill(key, e, fn)
		}
		c.mu.Unlock()
		select {
		case <-e.done:
			if e.keep {
				return e.res, true, nil
			}
			// The other caller failed operationally: try ourselves.
		case <-ctx.Done():
			return result{}, false, context.Cause(ctx)
		}
	}
}

// fill runs fn for a new entry and publishes its result; the entry is
// closed even if fn panics, so that waiters never hang.
func (c *Cache) fill(key string, e *cacheEntry, fn func() (result, error)) (res result, hit bool, err error) {
	keep := false
	defer func() {
		c.mu.Lock()
		if keep {
			e.res, e.keep = res, true
		} else {
			delete(c.m, key)
		}
		close(e.done)
		c.mu.Unlock()
	}()
	res, err = fn()
	keep = err == nil
	return res, false, err
}
