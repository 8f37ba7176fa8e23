package workflows

import (
	"errors"
	"slices"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"
)

const validWorkflow = `id: trial-onboarding
topic: onboarding
trigger: trial.started
exit_on: [subscription.purchased]
steps:
  - id: welcome
    send:
      template: welcome
      channels: [slack, email]
  - id: wait-for-project
    wait:
      for: 48h
      until: project.created
      then: congrats
  - id: nudge
    delay_until_local: "09:00"
    send: { template: nudge, channels: [email] }
  - id: done
    end: true
  - id: congrats
    send: { template: congrats }
`

func TestParseValid(t *testing.T) {
	t.Parallel()

	w, err := Parse("trial.yaml", []byte(validWorkflow), LoadOptions{})
	require.NoError(t, err)
	require.Equal(t, "trial-onboarding", w.ID)
	require.Equal(t, "onboarding", w.Topic)
	require.Equal(t, "trial.started", w.Trigger)
	require.Equal(t, []string{"subscription.purchased"}, w.ExitOn)
	require.Equal(t, EntryOnceActive, w.Entry)
	require.Len(t, w.Version, 12, "default version is a short content hash")
	require.Equal(t, "trial.yaml", w.File)
	require.Equal(t, []byte(validWorkflow), w.Source)
	require.Len(t, w.Steps, 5)
	require.Equal(t, []string{"welcome", "nudge", "congrats"}, w.Templates())
	require.True(t, w.IsExit("subscription.purchased"))
	require.False(t, w.IsExit("trial.started"))

	welcome, ok := w.Step("welcome")
	require.True(t, ok)
	require.Equal(t, KindSend, welcome.Kind)
	require.Equal(t, 6, welcome.Line)
	require.Equal(t, &Send{Template: "welcome", Channels: []string{"slack", "email"}, Mode: ModeFirst}, welcome.Send)

	wait, ok := w.Step("wait-for-project")
	require.True(t, ok)
	require.Equal(t, 48*time.Hour, wait.Wait.For)
	require.Equal(t, []string{"project.created"}, wait.Wait.Until)
	require.Equal(t, "congrats", wait.Wait.Then)

	nudge, _ := w.Step("nudge")
	require.Equal(t, "09:00", nudge.DelayUntilLocal)

	done, _ := w.Step("done")
	require.Equal(t, KindEnd, done.Kind)

	_, ok = w.Step("missing")
	require.False(t, ok)

	// Same source, same version; any edit, a new one.
	again, err := Parse("other-name.yaml", []byte(validWorkflow), LoadOptions{})
	require.NoError(t, err)
	require.Equal(t, w.Version, again.Version)
	edited, err := Parse("trial.yaml", []byte(validWorkflow+"# edited\n"), LoadOptions{})
	require.NoError(t, err)
	require.NotEqual(t, w.Version, edited.Version)
}

func TestParseFields(t *testing.T) {
	t.Parallel()

	src := `id: x
version: "2026-03"
topic: t
trigger: a
exit_on: b
entry: once
steps:
  - id: s
    send: {template: x, mode: all}
  - id: w
    wait: {for: 1w2d3h4m5s, until: [c, d], then: b}
  - id: b
    branch:
      cases:
        - if: 'customer.plan == "pro" && data.total > 100'
          then: s2
  - id: s2
    send: {template: y}
`
	w, err := Parse("x.yaml", []byte(src), LoadOptions{})
	require.NoError(t, err)
	require.Equal(t, "2026-03", w.Version)
	require.Equal(t, EntryOnce, w.Entry)
	require.Equal(t, []string{"b"}, w.ExitOn, "a single event is a list of one")
	s, _ := w.Step("s")
	require.Equal(t, ModeAll, s.Send.Mode)
	require.Empty(t, s.Send.Channels)
	wt, _ := w.Step("w")
	require.Equal(t, 9*24*time.Hour+3*time.Hour+4*time.Minute+5*time.Second, wt.Wait.For)
	require.Equal(t, []string{"c", "d"}, wt.Wait.Until)
	b, _ := w.Step("b")
	require.Len(t, b.Branch.Cases, 1)
	require.Empty(t, b.Branch.Default)
}

func TestParseAnchorsAndMerge(t *testing.T) {
	t.Parallel()

	src := `id: x
topic: t
trigger: a
steps:
  - id: first
    send: &mail {template: hello, channels: [email]}
  - id: second
    send: *mail
  - id: third
    send:
      <<: *mail
      template: bye
`
	w, err := Parse("x.yaml", []byte(src), LoadOptions{})
	require.NoError(t, err)
	second, _ := w.Step("second")
	require.Equal(t, "hello", second.Send.Template)
	third, _ := w.Step("third")
	require.Equal(t, "bye", third.Send.Template)
	require.Equal(t, []string{"email"}, third.Send.Channels)
}

// Every problem the loader reports, each with its file and line.
func TestParseProblems(t *testing.T) {
	t.Parallel()

	opts := LoadOptions{
		TemplateExists: func(name string) bool { return name != "missing" },
		Topics:         func(name string) bool { return name != "nope" },
	}
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{
			name: "unknown fields everywhere",
			src: `id: x
topic: t
trigger: a
colour: blue
steps:
  - id: s
    sned: {template: x}
    send: {template: x, chanels: [email]}
  - id: w
    wait: {for: 1h, untill: b}
  - id: b
    branch:
      cases:
        - {if: 'true', then: s, else: s}
      otherwise: s
`,
			want: []string{
				`x.yaml:4: unknown field "colour" in workflow (known: id, version, topic, trigger, exit_on, entry, goal, steps)`,
				`x.yaml:7: unknown field "sned" in step (known: id, send, wait, branch, split, digest, end, delay_until_local)`,
				`x.yaml:8: unknown field "chanels" in step "s" send (known: template, channels, mode)`,
				`x.yaml:10: unknown field "untill" in step "w" wait (known: for, until, then)`,
				`x.yaml:14: unknown field "else" in step "b" branch case 1 (known: if, then)`,
				`x.yaml:15: unknown field "otherwise" in step "b" branch (known: cases, default)`,
			},
		},
		{
			name: "split weights and targets",
			src: `id: x
topic: t
trigger: a
steps:
  - id: s
    split:
      - { weight: 50, then: a }
      - { weight: 0, then: b }
      - { weight: 45, then: nowhere }
      - { weight: "ten", then: a }
      - { then: b }
  - id: one
    split: [{ weight: 100, then: a }]
  - id: a
    end: true
  - id: b
    end: true
`,
			want: []string{
				`x.yaml:8: step "s": split arm 2: weight must be between 1 and 100, not 0`,
				`x.yaml:9: step "s": jump to unknown step "nowhere"`,
				`x.yaml:10: step "s": split arm 4: weight "ten" is not a whole number of percent`,
				`x.yaml:10: step "s": split arm 4 leads to "a" like an earlier arm: merge them`,
				`x.yaml:11: step "s": split arm 5 has no weight`,
				`x.yaml:11: step "s": split arm 5 leads to "b" like an earlier arm: merge them`,
				`x.yaml:6: step "s": split weights sum to 95, not 100`,
				`x.yaml:13: step "one": split needs at least two arms`,
				`x.yaml:12: step "one" is unreachable`,
			},
		},
		{
			name: "digest fields",
			src: `id: x
topic: t
trigger: a
steps:
  - id: d
    digest: { for: 0s, max: 5000, then: nowhere, every: 1h }
  - id: e
    digest: { event: c, max: many }
  - id: f
    digest: { event: c, for: soon }
`,
			want: []string{
				`x.yaml:6: step "d": digest needs event`,
				`x.yaml:6: step "d": digest.for must be longer than zero`,
				`x.yaml:6: step "d": digest.max must be between 1 and 1000, not 5000`,
				`x.yaml:6: step "d": jump to unknown step "nowhere"`,
				`x.yaml:6: unknown field "every" in step "d" digest (known: event, for, max, then)`,
				`x.yaml:7: step "e" is unreachable`,
				`x.yaml:9: step "f" is unreachable`,
				`x.yaml:8: step "e": digest needs for (a duration such as 48h)`,
				`x.yaml:8: step "e": digest.max "many" is not a whole number`,
				`x.yaml:10: step "f": bad duration "soon"`,
			},
		},
		{
			name: "goal fields",
			src: `id: x
topic: t
trigger: a
goal: { within: forever, exit: maybe, when: now }
steps:
  - id: s
    end: true
`,
			want: []string{
				`x.yaml:4: goal needs event`,
				`x.yaml:4: bad duration "forever"`,
				`x.yaml:4: goal.exit must be true or false`,
				`x.yaml:4: unknown field "when" in goal (known: event, within, exit)`,
			},
		},
		{
			name: "goal without within",
			src:  "id: x\ntopic: t\ntrigger: a\ngoal: {event: b}\nsteps: [{id: s, end: true}]\n",
			want: []string{"x.yaml:4: goal needs within (a duration such as 48h)"},
		},
		{
			name: "loop through a digest is fine, through a split is not",
			src: `id: x
topic: t
trigger: a
steps:
  - id: d
    digest: { event: a, for: 1h }
  - id: s
    split: [{ weight: 50, then: d }, { weight: 50, then: t }]
  - id: t
    split: [{ weight: 50, then: s }, { weight: 50, then: d }]
`,
			want: []string{`x.yaml:7: loop without a wait: "s" → "t" → "s"`},
		},
		{
			name: "missing id trigger topic",
			src: `steps:
  - id: s
    end: true
`,
			want: []string{"x.yaml:1: missing id", "x.yaml:1: missing topic", "x.yaml:1: missing trigger"},
		},
		{
			name: "event names the API refuses",
			src: `id: x
topic: t
trigger: Payment.Failed
exit_on: [ok.done, Sub Cancelled]
steps:
  - id: w
    wait: {for: 1h, until: [project.created, "-late"], then: w}
`,
			want: []string{
				`x.yaml:3: trigger: event name "Payment.Failed": use lower-case letters`,
				`x.yaml:4: exit_on: event name "Sub Cancelled": use lower-case letters`,
				`x.yaml:7: step "w": wait.until: event name "-late": use lower-case letters`,
			},
		},
		{
			name: "empty id",
			src:  "id: \"\"\ntopic: t\ntrigger: a\nsteps: [{id: s, end: true}]\n",
			want: []string{"x.yaml:1: missing id"},
		},
		{
			name: "unknown topic",
			src:  "id: x\ntopic: nope\ntrigger: a\nsteps: [{id: s, end: true}]\n",
			want: []string{`x.yaml:2: unknown topic "nope"`},
		},
		{
			name: "bad entry",
			src:  "id: x\ntopic: t\ntrigger: a\nentry: twice\nsteps: [{id: s, end: true}]\n",
			want: []string{`x.yaml:4: entry must be once or once_active, not "twice"`},
		},
		{
			name: "no steps",
			src:  "id: x\ntopic: t\ntrigger: a\n",
			want: []string{"x.yaml:1: workflow has no steps"},
		},
		{
			name: "duplicate step id",
			src: `id: x
topic: t
trigger: a
steps:
  - id: s
    send: {template: a}
  - id: s
    end: true
`,
			want: []string{`x.yaml:7: duplicate step id "s" (first at line 5)`},
		},
		{
			name: "step without id",
			src:  "id: x\ntopic: t\ntrigger: a\nsteps:\n  - end: true\n",
			want: []string{"x.yaml:5: step has no id"},
		},
		{
			name: "jumps to missing steps",
			src: `id: x
topic: t
trigger: a
steps:
  - id: w
    wait: {for: 1h, until: b, then: nowhere}
  - id: b
    branch:
      cases:
        - if: 'true'
          then: lost
      default: gone
`,
			want: []string{
				`x.yaml:6: step "w": jump to unknown step "nowhere"`,
				`x.yaml:11: step "b": jump to unknown step "lost"`,
				`x.yaml:12: step "b": jump to unknown step "gone"`,
			},
		},
		{
			name: "unreachable steps",
			src: `id: x
topic: t
trigger: a
steps:
  - id: s
    send: {template: a}
  - id: stop
    end: true
  - id: orphan
    send: {template: b}
  - id: orphan-too
    end: true
`,
			want: []string{
				`x.yaml:9: step "orphan" is unreachable: no jump leads to it and the step before it does not continue`,
				`x.yaml:11: step "orphan-too" is unreachable: no jump leads to it and the step before it does not continue`,
			},
		},
		{
			name: "loop without a wait",
			src: `id: x
topic: t
trigger: a
steps:
  - id: a
    send: {template: a}
  - id: b
    branch:
      cases:
        - if: 'data.n > 1'
          then: a
  - id: c
    branch:
      cases:
        - if: 'true'
          then: c
`,
			want: []string{
				`x.yaml:5: loop without a wait: "a" → "b" → "a" (add a wait step to the loop)`,
				`x.yaml:12: loop without a wait: "c" → "c" (add a wait step to the loop)`,
			},
		},
		{
			name: "unknown template",
			src:  "id: x\ntopic: t\ntrigger: a\nsteps:\n  - id: s\n    send:\n      template: missing\n",
			want: []string{`x.yaml:7: step "s": unknown template "missing"`},
		},
		{
			name: "send without template",
			src:  "id: x\ntopic: t\ntrigger: a\nsteps:\n  - id: s\n    send: {channels: [email]}\n",
			want: []string{`x.yaml:6: step "s": send has no template`},
		},
		{
			name: "unknown and repeated channel",
			src:  "id: x\ntopic: t\ntrigger: a\nsteps:\n  - id: s\n    send: {template: a, channels: [email, sms, email]}\n",
			want: []string{
				`x.yaml:6: step "s": unknown channel "sms" (known: email, slack)`,
				`x.yaml:6: step "s": channel "email" listed twice`,
			},
		},
		{
			name: "bad mode",
			src:  "id: x\ntopic: t\ntrigger: a\nsteps:\n  - id: s\n    send: {template: a, mode: some}\n",
			want: []string{`x.yaml:6: step "s": send.mode must be first or all, not "some"`},
		},
		{
			name: "bad durations",
			src: `id: x
topic: t
trigger: a
steps:
  - id: a
    wait: {for: 2x}
  - id: b
    wait: {for: 1.5h}
  - id: c
    wait: {for: h}
  - id: d
    wait: {for: 0s}
  - id: e
    wait: {until: z}
`,
			want: []string{
				`x.yaml:6: step "a": bad duration "2x": use s, m, h, d, w as in 30m, 48h, 7d or 1h30m`,
				`x.yaml:8: step "b": bad duration "1.5h": use s, m, h, d, w as in 30m, 48h, 7d or 1h30m`,
				`x.yaml:10: step "c": bad duration "h": use s, m, h, d, w as in 30m, 48h, 7d or 1h30m`,
				`x.yaml:12: step "d": wait.for must be longer than zero`,
				`x.yaml:14: step "e": wait needs for (a duration such as 48h)`,
				`x.yaml:14: step "e": wait.until needs then (the step to jump to)`,
			},
		},
		{
			name: "then without until",
			src:  "id: x\ntopic: t\ntrigger: a\nsteps:\n  - id: a\n    wait: {for: 1h, then: a}\n",
			want: []string{`x.yaml:6: step "a": wait.then needs until (the event that jumps)`},
		},
		{
			name: "delay_until_local not HH:MM",
			src: `id: x
topic: t
trigger: a
steps:
  - id: a
    delay_until_local: "9am"
    send: {template: a}
  - id: b
    delay_until_local: "24:00"
    send: {template: a}
  - id: c
    delay_until_local: "09:00"
    wait: {for: 1h}
`,
			want: []string{
				`x.yaml:6: step "a": delay_until_local "9am" is not HH:MM (24-hour, e.g. 09:00)`,
				`x.yaml:9: step "b": delay_until_local "24:00" is not HH:MM (24-hour, e.g. 09:00)`,
				`x.yaml:12: step "c": delay_until_local only applies to send steps`,
			},
		},
		{
			name: "branch expressions",
			src: `id: x
topic: t
trigger: a
steps:
  - id: b
    branch:
      cases:
        - if: 'customer.plan =='
          then: e
        - if: '"pro"'
          then: e
        - if: 'plan == "pro"'
          then: e
        - then: e
        - if: 'true'
        - if: 'now().Hour() > 9'
          then: e
  - id: e
    end: true
`,
			want: []string{
				`x.yaml:8: step "b": branch case 1: unexpected token EOF (column 16)`,
				`x.yaml:10: step "b": branch case 2: expected bool, but got string`,
				`x.yaml:12: step "b": branch case 3: unknown name plan (column 1)`,
				`x.yaml:14: step "b": branch case 4 has no if`,
				`x.yaml:15: step "b": branch case 5 has no then`,
				`x.yaml:16: step "b": branch case 6: unknown name now (column 1)`,
			},
		},
		{
			name: "branch without cases",
			src:  "id: x\ntopic: t\ntrigger: a\nsteps:\n  - id: b\n    branch: {default: b2}\n  - id: b2\n    end: true\n",
			want: []string{`x.yaml:6: step "b": branch needs at least one case`},
		},
		{
			name: "zero or two kinds",
			src: `id: x
topic: t
trigger: a
steps:
  - id: none
  - id: two
    send: {template: a}
    wait: {for: 1h}
  - id: end-false
    end: false
`,
			want: []string{
				`x.yaml:5: step "none" has no kind: give it one of send, wait, branch, split, digest, end`,
				`x.yaml:6: step "two" has more than one kind (send, wait): give it exactly one`,
				`x.yaml:10: step "end-false": end must be true`,
			},
		},
		{
			name: "wrong types",
			src: `id: [x]
topic: t
trigger: a
exit_on: {a: b}
steps:
  - id: s
    send: hello
  - id: e
    end: yes please
`,
			want: []string{
				"x.yaml:1: id must be a string",
				"x.yaml:1: missing id",
				"x.yaml:4: exit_on must be a string or a list of strings",
				`x.yaml:7: step "s" send must be a mapping`,
				`x.yaml:9: step "e": end must be true`,
			},
		},
		{
			name: "steps not a list",
			src:  "id: x\ntopic: t\ntrigger: a\nsteps: {a: b}\n",
			want: []string{"x.yaml:4: steps must be a list", "x.yaml:4: workflow has no steps"},
		},
		{
			name: "not a mapping",
			src:  "- just\n- a list\n",
			want: []string{"x.yaml:1: workflow must be a mapping"},
		},
		{
			name: "invalid YAML",
			src:  "id: x\ntopic: t\ntrigger: [a, b\n",
			want: []string{"x.yaml:3: invalid YAML"},
		},
		{
			name: "duplicate key",
			src:  "id: x\nid: y\ntopic: t\ntrigger: a\nsteps: [{id: s, end: true}]\n",
			want: []string{"x.yaml:2: invalid YAML: mapping key \"id\" already defined"},
		},
		{
			name: "empty file",
			src:  "# nothing here\n",
			want: []string{"x.yaml: empty workflow file"},
		},
		{
			name: "two documents",
			src:  "id: x\ntopic: t\ntrigger: a\nsteps: [{id: s, end: true}]\n---\nid: y\n",
			want: []string{"x.yaml:6: one workflow per file: found 2 documents"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			w, err := Parse("x.yaml", []byte(tt.src), opts)
			require.Nil(t, w)
			var probs Problems
			require.True(t, errors.As(err, &probs), "error %v is not Problems", err)
			got := make([]string, len(probs))
			for i, p := range probs {
				got[i] = p.String()
			}
			for _, want := range tt.want {
				require.True(t, slices.ContainsFunc(got, func(g string) bool { return len(g) >= len(want) && g[:len(want)] == want }),
					"missing problem %q in:\n%s", want, err)
			}
			require.Len(t, got, len(tt.want), "unexpected problems:\n%s", err)
		})
	}
}

func TestParseChannelsOption(t *testing.T) {
	t.Parallel()

	src := "id: x\ntopic: t\ntrigger: a\nsteps:\n  - id: s\n    send: {template: a, channels: [sms]}\n"
	_, err := Parse("x.yaml", []byte(src), LoadOptions{})
	require.ErrorContains(t, err, `unknown channel "sms" (known: email, slack)`)
	_, err = Parse("x.yaml", []byte(src), LoadOptions{Channels: []string{"email", "sms"}})
	require.NoError(t, err)
}

// A version stored with a running journey is parsed again even if it
// names events the rule, newer than it, refuses: its journeys finish.
func TestParseStoredKeepsOldEventNames(t *testing.T) {
	t.Parallel()
	src := []byte("id: x\ntopic: t\ntrigger: a\nsteps:\n  - id: w\n    wait: {for: 1h, until: Project Created, then: w}\n")
	_, err := Parse("x.yaml", src, LoadOptions{})
	require.ErrorContains(t, err, `event name "Project Created"`)
	w, err := Parse("x.yaml", src, LoadOptions{Stored: true})
	require.NoError(t, err)
	require.Equal(t, []string{"Project Created"}, w.Steps[0].Wait.Until)
}

// A send step whose channels all lack a provider is a problem when the
// configured channels are known.
func TestParseConfiguredChannels(t *testing.T) {
	t.Parallel()

	for _, tt := range []struct {
		name       string
		channels   string // the step's channels field, "" for none
		configured []string
		want       string // the problem, "" for none
	}{
		{"slack only, email configured", "[slack]", []string{"email"}, `x.yaml:6: step "s": sends only by slack, which is not configured (configured: email)`},
		{"both listed, one configured", "[slack, email]", []string{"email"}, ""},
		{"listed channel configured", "[slack]", []string{"email", "slack"}, ""},
		{"no channels listed, one configured", "", []string{"slack"}, ""},
		{"no channels listed, none configured", "", []string{}, `x.yaml:6: step "s": no channel is configured`},
		{"nothing configured", "[email, slack]", []string{}, `x.yaml:6: step "s": sends only by email or slack, which is not configured (configured: none)`},
		{"check off", "[slack]", nil, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			send := "{template: a}"
			if tt.channels != "" {
				send = "{template: a, channels: " + tt.channels + "}"
			}
			src := "id: x\ntopic: t\ntrigger: a\nsteps:\n  - id: s\n    send: " + send + "\n"
			_, err := Parse("x.yaml", []byte(src), LoadOptions{Configured: tt.configured})
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()

	fsys := fstest.MapFS{
		"a.yaml":        {Data: []byte("id: a\ntopic: t\ntrigger: go\nsteps: [{id: s, end: true}]\n")},
		"nested/b.yml":  {Data: []byte("id: b\ntopic: t\ntrigger: go\nsteps: [{id: s, end: true}]\n")},
		"c.yaml":        {Data: []byte("id: c\ntopic: t\ntrigger: other\nsteps: [{id: s, end: true}]\n")},
		"README.md":     {Data: []byte("not a workflow")},
		"notes.yaml.md": {Data: []byte("neither")},
	}
	set, err := Load(fsys, LoadOptions{})
	require.NoError(t, err)
	ids := func(ws []*Workflow) []string {
		var out []string
		for _, w := range ws {
			out = append(out, w.ID)
		}
		return out
	}
	require.Equal(t, []string{"a", "b", "c"}, ids(set.All()))
	require.Equal(t, []string{"a", "b"}, ids(set.Triggered("go")))
	require.Empty(t, set.Triggered("nothing"))
	b, ok := set.Get("b")
	require.True(t, ok)
	require.Equal(t, "nested/b.yml", b.File)
	_, ok = set.Get("zzz")
	require.False(t, ok)
}

func TestLoadReportsEveryProblemInEveryFile(t *testing.T) {
	t.Parallel()

	fsys := fstest.MapFS{
		"a.yaml":  {Data: []byte("id: dup\ntopic: t\ntrigger: go\nsteps: [{id: s, end: true}]\n")},
		"b.yaml":  {Data: []byte("topic: t\n\nid: dup\ntrigger: go\nsteps: [{id: s, end: true}]\n")},
		"c.yaml":  {Data: []byte("id: c\ntopic: t\ntrigger: go\nsteps:\n  - id: s\n    send: {template: nope}\n")},
		"d.yml":   {Data: []byte("id: d\ntopic: t\nsteps: [{id: s, end: true}]\n")},
		"ok.yaml": {Data: []byte("id: ok\ntopic: t\ntrigger: go\nsteps: [{id: s, end: true}]\n")},
	}
	set, err := Load(fsys, LoadOptions{TemplateExists: func(string) bool { return false }})
	require.EqualError(t, err, `b.yaml:3: duplicate workflow id "dup" (also in a.yaml:1)
c.yaml:6: step "s": unknown template "nope"
d.yml:1: missing trigger`)

	// The set still knows every workflow by its ID, those with problems
	// too, so that what names them is not reported unknown as well.
	var ids []string
	for _, w := range set.All() {
		ids = append(ids, w.ID)
	}
	require.ElementsMatch(t, []string{"dup", "c", "d", "ok"}, ids)
	c, ok := set.Get("c")
	require.True(t, ok)
	require.Equal(t, "t", c.Topic)
	dup, _ := set.Get("dup")
	require.Equal(t, "a.yaml", dup.File, "the first file keeps a duplicated ID")
}

func TestSetVersions(t *testing.T) {
	t.Parallel()

	src := "id: a\ntopic: t\ntrigger: go\nsteps: [{id: s, end: true}]\n"
	old, err := Parse("a.yaml", []byte("# v1\n"+src), LoadOptions{})
	require.NoError(t, err)
	cur, err := Parse("a.yaml", []byte(src), LoadOptions{})
	require.NoError(t, err)
	require.NotEqual(t, old.Version, cur.Version)

	set := NewSet(cur)
	_, ok := set.Version("a", old.Version)
	require.False(t, ok)

	set.Add(old)
	got, ok := set.Version("a", old.Version)
	require.True(t, ok)
	require.Same(t, old, got)
	got, ok = set.Version("a", cur.Version)
	require.True(t, ok)
	require.Same(t, cur, got)
	got, _ = set.Get("a")
	require.Same(t, cur, got, "Add keeps the loaded version current")
	require.Len(t, set.All(), 1)

	// A workflow whose file is gone can still finish its journeys.
	gone, err := Parse("g.yaml", []byte("id: gone\ntopic: t\ntrigger: go\nsteps: [{id: s, end: true}]\n"), LoadOptions{})
	require.NoError(t, err)
	set.Add(gone)
	_, ok = set.Version("gone", gone.Version)
	require.True(t, ok)
	_, ok = set.Get("gone")
	require.False(t, ok)
	require.Empty(t, set.Triggered("nothing"))
}

func TestParseDuration(t *testing.T) {
	t.Parallel()

	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{in: "30s", want: 30 * time.Second},
		{in: "15m", want: 15 * time.Minute},
		{in: "48h", want: 48 * time.Hour},
		{in: "7d", want: 7 * 24 * time.Hour},
		{in: "2w", want: 14 * 24 * time.Hour},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "1w2d", want: 9 * 24 * time.Hour},
		{in: "", err: true},
		{in: "48", err: true},
		{in: "h", err: true},
		{in: "1.5h", err: true},
		{in: "-1h", err: true},
		{in: "1y", err: true},
		{in: "10ms", err: true},
		{in: "99999999999999999999h", err: true},
		{in: "600w", err: true},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if tt.err {
			require.Error(t, err, tt.in)
			continue
		}
		require.NoError(t, err, tt.in)
		require.Equal(t, tt.want, got, tt.in)
	}
}

func TestProblemString(t *testing.T) {
	t.Parallel()

	require.Equal(t, "a.yaml:3: boom", Problem{File: "a.yaml", Line: 3, Message: "boom"}.String())
	require.Equal(t, "a.yaml: boom", Problem{File: "a.yaml", Message: "boom"}.String())
	require.Equal(t, "a.yaml:3: boom\nb.yaml: bang", Problems{{File: "a.yaml", Line: 3, Message: "boom"}, {File: "b.yaml", Message: "bang"}}.Error())
}
