package gate

// Event tells a progress observer that a fast control started or finished.
type Event struct {
	Control string
	// Done is false when the control starts, true when it has finished or
	// been abandoned; Run is set only then.
	Done bool
	Run  *ControlRun
}

// WithProgress makes the gate call fn when each fast control starts and
// finishes. Controls run side by side, so fn is called from several
// goroutines at once and must be safe for that; it should return quickly.
// The default (nil) reports nothing.
func (g *Gate) WithProgress(fn func(Event)) *Gate {
	g.progress = fn
	return g
}

func (g *Gate) report(e Event) {
	if g.progress != nil {
		g.progress(e)
	}
}
