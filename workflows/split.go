package workflows

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/goccy/go-yaml/ast"
)

// Split sends each customer down one arm, chosen by a hash of the customer,
// the workflow and the step: the same customer always lands in the same arm,
// on a retried task and on a later journey alike. An arm whose steps only
// end the journey is a holdout.
type Split struct {
	Arms []Arm
}

// Arm is one branch of a split; it is named by the step it jumps to.
type Arm struct {
	Weight int // percent, 1..100; a split's weights sum to 100
	Then   string

	thenLine int
}

// Digest collects Event for the customer for For (or until Max events),
// then jumps to Then (or the next step). The send that follows sees
// .data.digest.count and .data.digest.events, oldest first.
type Digest struct {
	Event string
	For   time.Duration
	Max   int
	Then  string

	thenLine int
	forText  string
}

// Goal is what a workflow is for: the customer doing Event within Within of
// the journey's start counts one conversion for the journey (and its split
// arms), even after the journey ended; Exit ends a running journey then.
type Goal struct {
	Event  string
	Within time.Duration
	Exit   bool
}

// DigestDefaultMax is a digest's max when the file gives none;
// DigestMaxLimit bounds it, since the events travel with the journey.
const (
	DigestDefaultMax = 100
	DigestMaxLimit   = 1000
)

// splitBuckets is the resolution of a split: weights are whole percent, so
// each percent is 100 buckets.
const splitBuckets = 10000

var (
	armFields    = []string{"weight", "then"}
	digestFields = []string{"event", "for", "max", "then"}
	goalFields   = []string{"event", "within", "exit"}
)

// SplitBucket places a customer in [0, 10000) for a split step of a
// workflow. It depends on nothing but its arguments.
func SplitBucket(customerID, workflowID, stepID string) int {
	sum := sha256.Sum256([]byte(workflowID + "\x00" + stepID + "\x00" + customerID))
	return int(binary.BigEndian.Uint64(sum[:8]) % splitBuckets)
}

// Pick returns the arm a bucket falls in: arms take consecutive ranges of
// buckets in file order, each Weight percent wide.
func (sp *Split) Pick(bucket int) Arm {
	edge := 0
	for _, a := range sp.Arms {
		edge += a.Weight * (splitBuckets / 100)
		if bucket < edge {
			return a
		}
	}
	return sp.Arms[len(sp.Arms)-1]
}

// Assign returns the arm of a customer at a split step of w.
func (w *Workflow) Assign(customerID string, step *Step) Arm {
	return step.Split.Pick(SplitBucket(customerID, w.ID, step.ID))
}

func (d *decoder) split(f field, name string) *Split {
	out := &Split{}
	items := d.list(f, "split")
	if len(items) < 2 && f.ok() {
		d.addf(f.line(), "%s: split needs at least two arms ({weight, then} each)", name)
	}
	sum := 0
	for i, item := range items {
		af, ok := d.mapping(item, fmt.Sprintf("%s split arm %d", name, i+1), armFields...)
		if !ok {
			continue
		}
		line := lineOf(d.resolve(item))
		a := Arm{Then: d.str(af["then"], "then"), thenLine: line}
		if t := af["then"]; t.ok() {
			a.thenLine = t.line()
		}
		if wf := af["weight"]; !wf.ok() {
			d.addf(line, "%s: split arm %d has no weight", name, i+1)
		} else {
			raw := d.str(wf, "weight")
			n, err := strconv.Atoi(raw)
			switch {
			case err != nil:
				d.addf(wf.line(), "%s: split arm %d: weight %q is not a whole number of percent", name, i+1, raw)
			case n <= 0 || n > 100:
				d.addf(wf.line(), "%s: split arm %d: weight must be between 1 and 100, not %d", name, i+1, n)
			default:
				a.Weight = n
				sum += n
			}
		}
		switch {
		case a.Then == "":
			d.addf(line, "%s: split arm %d has no then (the step it leads to)", name, i+1)
		case slices.ContainsFunc(out.Arms, func(o Arm) bool { return o.Then == a.Then }):
			d.addf(a.thenLine, "%s: split arm %d leads to %q like an earlier arm: merge them", name, i+1, a.Then)
		}
		out.Arms = append(out.Arms, a)
	}
	if len(items) >= 2 && sum != 100 {
		d.addf(lineOf(f.key), "%s: split weights sum to %d, not 100", name, sum)
	}
	return out
}

func (d *decoder) digest(f field, name string) *Digest {
	fields, ok := d.mapping(f.value, name+" digest", digestFields...)
	out := &Digest{Max: DigestDefaultMax}
	if !ok {
		return out
	}
	out.Event = d.str(fields["event"], "digest.event")
	if out.Event == "" {
		d.addf(f.line(), "%s: digest needs event (the event to collect)", name)
	}
	out.For, out.forText = d.duration(fields["for"], f, name, "digest", "for")
	if mf := fields["max"]; mf.ok() {
		raw := d.str(mf, "digest.max")
		n, err := strconv.Atoi(raw)
		switch {
		case err != nil:
			d.addf(mf.line(), "%s: digest.max %q is not a whole number", name, raw)
		case n < 1 || n > DigestMaxLimit:
			d.addf(mf.line(), "%s: digest.max must be between 1 and %d, not %d", name, DigestMaxLimit, n)
		default:
			out.Max = n
		}
	}
	out.Then = d.str(fields["then"], "digest.then")
	out.thenLine = fields["then"].line()
	return out
}

func (d *decoder) goal(f field) *Goal {
	fields, ok := d.mapping(f.value, "goal", goalFields...)
	out := &Goal{}
	if !ok {
		return out
	}
	out.Event = d.str(fields["event"], "goal.event")
	if out.Event == "" {
		d.addf(f.line(), "goal needs event (the event that counts as a conversion)")
	}
	out.Within, _ = d.duration(fields["within"], f, "", "goal", "within")
	if ef := fields["exit"]; ef.ok() {
		b, isBool := d.resolve(ef.value).(*ast.BoolNode)
		if !isBool {
			d.addf(ef.line(), "goal.exit must be true or false")
		} else {
			out.Exit = b.Value
		}
	}
	return out
}

// duration decodes the required duration field key of a kind ("wait",
// "digest", "goal") of the mapping at parent, reporting a missing,
// malformed or zero one. name prefixes the problems ("step \"x\"").
func (d *decoder) duration(f, parent field, name, kind, key string) (time.Duration, string) {
	prefix := name + ": "
	if name == "" {
		prefix = ""
	}
	if !f.ok() {
		d.addf(parent.line(), "%s%s needs %s (a duration such as 48h)", prefix, kind, key)
		return 0, ""
	}
	raw := d.str(f, kind+"."+key)
	dur, err := ParseDuration(raw)
	switch {
	case err != nil:
		d.addf(f.line(), "%sbad duration %q: use s, m, h, d, w as in 30m, 48h, 7d or 1h30m", prefix, raw)
	case dur <= 0:
		d.addf(f.line(), "%s%s.%s must be longer than zero", prefix, kind, key)
	}
	return dur, raw
}
