// Package github is sluice's GitHub front end: workflow commands (outputs,
// step summary, annotations, masks, groups) through go-githubactions, the
// change an event describes, and check runs on a commit through GitHub's
// REST API.
package github

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/sethvargo/go-githubactions"
)

// Workflow issues workflow commands to a GitHub Actions runner. It is the
// one place sluice uses go-githubactions: that library panics when it cannot
// write, and cannot tell an unset input from an empty one, so every method
// here turns a panic into an error, and inputs treat empty as "not given"
// (action.yml declares every input's default as "", so on a runner an input
// the workflow did not set is empty).
type Workflow struct {
	a      *githubactions.Action
	getenv func(string) string
	w      io.Writer
}

// NewWorkflow issues commands on w (the step's standard output) and reads
// the environment through getenv.
func NewWorkflow(w io.Writer, getenv func(string) string) *Workflow {
	a := githubactions.New(githubactions.WithWriter(w), githubactions.WithGetenv(githubactions.GetenvFunc(getenv)))
	return &Workflow{a: a, getenv: getenv, w: w}
}

// InActions reports whether getenv describes a GitHub Actions runner.
func InActions(getenv func(string) string) bool {
	return getenv("GITHUB_ACTIONS") == "true"
}

// Input returns the named input, trimmed; "" when not given.
func (wf *Workflow) Input(name string) string { return wf.a.GetInput(name) }

// InputBool reads a boolean input; def when not given.
func (wf *Workflow) InputBool(name string, def bool) (bool, error) {
	s := wf.Input(name)
	if s == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("input %q: %q is not true or false", name, s)
	}
	return b, nil
}

// Getenv reads a variable of the runner's environment.
func (wf *Workflow) Getenv(key string) string { return wf.getenv(key) }

// protect runs fn and turns go-githubactions' panics into errors.
func protect(what string, fn func()) (err error) {
	defer func() {
		if v := recover(); v != nil {
			if e, ok := v.(error); ok {
				err = fmt.Errorf("%s: %w", what, e)
			} else {
				err = fmt.Errorf("%s: %v", what, v)
			}
		}
	}()
	fn()
	return nil
}

// fileDelimiter is the heredoc delimiter go-githubactions writes around an
// output's value; a value holding it could end the value early and set
// other outputs, so such values are refused.
const fileDelimiter = "_GitHubActionsFileCommandDelimeter_"

// SetOutput sets a step output through the GITHUB_OUTPUT file.
func (wf *Workflow) SetOutput(name, value string) error {
	if wf.getenv("GITHUB_OUTPUT") == "" {
		return errors.New("setting output " + name + ": GITHUB_OUTPUT is not set")
	}
	if strings.Contains(name, "<<") || strings.ContainsAny(name, "\r\n=") || strings.Contains(value, fileDelimiter) {
		return fmt.Errorf("setting output %q: refused a name or value that could forge other outputs", name)
	}
	return protect("setting output "+name, func() { wf.a.SetOutput(name, value) })
}

// AddSummary appends Markdown to the step summary (GITHUB_STEP_SUMMARY).
func (wf *Workflow) AddSummary(markdown string) error {
	if wf.getenv("GITHUB_STEP_SUMMARY") == "" {
		return errors.New("writing step summary: GITHUB_STEP_SUMMARY is not set")
	}
	return protect("writing step summary", func() { wf.a.AddStepSummary(markdown) })
}

// Level is an annotation's level.
type Level string

// Annotation levels.
const (
	Error   Level = "error"
	Warning Level = "warning"
	Notice  Level = "notice"
)

// Annotation is a message on a file and line of the change.
type Annotation struct {
	Level   Level
	File    string
	Line    int
	Column  int
	Title   string
	Message string
}

// Annotate issues ::error, ::warning or ::notice with file, line, col and
// title properties. go-githubactions escapes the message (%, CR, LF) and
// property values (also : and ,) per GitHub's workflow-command rules, so an
// untrusted file name cannot end the command or start another.
func (wf *Workflow) Annotate(an Annotation) error {
	props := githubactions.CommandProperties{}
	if an.File != "" {
		props["file"] = an.File
		if an.Line > 0 {
			props["line"] = strconv.Itoa(an.Line)
			if an.Column > 0 {
				props["col"] = strconv.Itoa(an.Column)
			}
		}
	}
	if an.Title != "" {
		props["title"] = an.Title
	}
	a := wf.a.WithFieldsMap(props)
	return protect("writing annotation", func() {
		// The message goes in as an argument, never as a format.
		switch an.Level {
		case Error:
			a.Errorf("%s", an.Message)
		case Warning:
			a.Warningf("%s", an.Message)
		default:
			a.Noticef("%s", an.Message)
		}
	})
}

// Mask tells the runner to hide value in every later line of the job's
// log. The command itself carries the value, so only values sluice was
// given (a token, a password in a queue URL) are masked, never values it
// found.
func (wf *Workflow) Mask(value string) error {
	if strings.TrimSpace(value) == "" {
		return nil
	}
	var err error
	for _, line := range strings.Split(strings.ReplaceAll(value, "\r\n", "\n"), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			err = errors.Join(err, protect("masking a value", func() { wf.a.AddMask(line) }))
		}
	}
	return err
}

// Group folds what fn writes under a collapsible title in the log.
func (wf *Workflow) Group(title string, fn func() error) error {
	if err := protect("starting a log group", func() { wf.a.Group(title) }); err != nil {
		return err
	}
	ferr := fn()
	return errors.Join(ferr, protect("ending a log group", wf.a.EndGroup))
}

// Untrusted writes text the runner must not read as workflow commands
// (file names, messages quoted from a repository) between ::stop-commands::
// and its resume token, a random token the text cannot guess.
func (wf *Workflow) Untrusted(fn func(w io.Writer) error) error {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("making a stop-commands token: %w", err)
	}
	token := hex.EncodeToString(b[:])
	if err := protect("stopping workflow commands", func() {
		wf.a.IssueCommand(&githubactions.Command{Name: "stop-commands", Message: token})
	}); err != nil {
		return err
	}
	ferr := fn(wf.w)
	_, err := fmt.Fprintf(wf.w, "\n::%s::\n", token)
	return errors.Join(ferr, err)
}

// Infof writes a plain log line.
func (wf *Workflow) Infof(format string, args ...any) error {
	return protect("writing the log", func() { wf.a.Infof(format, args...) })
}
