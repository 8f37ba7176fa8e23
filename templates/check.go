package templates

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/heraldhq/herald"
)

// Check renders every template in every locale with its `sample:` data and
// reports, at file:line, what would fail or be refused at send time: a
// missing key, a helper given the wrong kind of value, an empty subject, a
// button URL that is not absolute, text over Slack's limits.
func (s *Set) Check() Problems {
	var probs Problems
	for _, name := range s.Names() {
		for _, f := range s.templates[name].files {
			probs = append(probs, s.checkFile(f)...)
		}
	}
	probs.sort()
	return probs
}

func (s *Set) checkFile(f *file) Problems {
	var probs Problems
	c, err := s.render(f, f.sampleData(), partAll)
	if err != nil {
		var p Problem
		if errors.As(err, &p) {
			if f.sample == nil && strings.HasPrefix(p.Message, "missing key") {
				p.Message += " (add it under sample: so the template can be checked)"
			}
			return Problems{p}
		}
		return Problems{{File: f.path, Message: err.Error()}}
	}
	if c.Subject == "" {
		probs.add(f.path, f.lines[tSubject], "the subject renders empty")
	}
	var blocks []struct {
		Type string `json:"type"`
		Text *struct {
			Text string `json:"text"`
		} `json:"text"`
		Elements []struct {
			Text json.RawMessage `json:"text"`
			URL  string          `json:"url"`
		} `json:"elements"`
	}
	if err := json.Unmarshal(c.SlackBlocks, &blocks); err != nil {
		probs.add(f.path, 0, "slack blocks: %v", err)
		return probs
	}
	slackLine := f.lines[tBody]
	if l, ok := f.lines[tSlack]; ok {
		slackLine = l
	}
	if len(blocks) > slackBlocksMax {
		probs.add(f.path, slackLine, "slack: %d blocks, Slack accepts at most %d", len(blocks), slackBlocksMax)
	}
	for _, b := range blocks {
		switch b.Type {
		case "section":
			if n := utf8.RuneCountInString(b.Text.Text); n > slackSectionMax {
				probs.add(f.path, slackLine, "slack: a paragraph of %d characters, Slack accepts at most %d per section", n, slackSectionMax)
			}
		case "header":
			if n := utf8.RuneCountInString(b.Text.Text); n >= slackHeaderMax {
				probs.add(f.path, slackLine, "slack: a heading longer than %d characters is cut", slackHeaderMax)
			}
		case "actions":
			for i, e := range b.Elements {
				line := f.actions[i].line
				var label struct {
					Text string `json:"text"`
				}
				_ = json.Unmarshal(e.Text, &label)
				if utf8.RuneCountInString(label.Text) >= slackButtonMax {
					probs.add(f.path, line, "action label longer than %d characters is cut", slackButtonMax)
				}
				if e.URL != "" {
					if u, err := url.Parse(e.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
						probs.add(f.path, line, "action url %q is not an absolute http(s) URL", e.URL)
					}
				}
			}
		}
	}
	return probs
}

// sampleData turns the file's `sample:` into render data. Links get stand-in
// URLs so that templates using .links render.
func (f *file) sampleData() Data {
	d := Data{
		Customer:  herald.Customer{ID: "sample", Locale: f.locale},
		Links:     Links{Preferences: "https://example.com/preferences?token=sample", Unsubscribe: "https://example.com/unsubscribe?token=sample"},
		MessageID: "sample-message",
	}
	if f.sample == nil {
		return d
	}
	d.Customer = customerFromMap(f.sample.Customer)
	d.Customer.Locale = f.locale
	d.Data = f.sample.Data
	if v, ok := f.sample.Links["preferences"]; ok {
		d.Links.Preferences = v
	}
	if v, ok := f.sample.Links["unsubscribe"]; ok {
		d.Links.Unsubscribe = v
	}
	return d
}

// customerFromMap reads a customer as written in YAML or JSON: the known
// fields by their JSON names, everything else as attributes.
func customerFromMap(m map[string]any) herald.Customer {
	c := herald.Customer{ID: "sample"}
	for k, v := range m {
		s, _ := v.(string)
		switch k {
		case "id":
			c.ID = s
		case "email":
			c.Email = s
		case "slack_user_id":
			c.SlackUserID = s
		case "locale":
			c.Locale = s
		case "timezone":
			c.Timezone = s
		default:
			if c.Attributes == nil {
				c.Attributes = map[string]any{}
			}
			c.Attributes[k] = v
		}
	}
	return c
}

// Sample returns the data a template's `sample:` declares for the file that
// locale falls back to, for `herald preview`. ok is false for an unknown
// template.
func (s *Set) Sample(name, locale string) (d Data, ok bool) {
	t := s.templates[name]
	if t == nil {
		return Data{}, false
	}
	f := t.match(locale)
	return f.sampleData(), true
}

// WritePreview writes rendered content for a person to read: subject,
// preheader, text and HTML for "email"; mrkdwn and indented Block Kit JSON
// for "slack".
func WritePreview(w io.Writer, c herald.Content, channel string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Locale:    %s\n", c.Locale)
	switch herald.Channel(channel) {
	case herald.ChannelEmail:
		fmt.Fprintf(&b, "Subject:   %s\n", c.Subject)
		fmt.Fprintf(&b, "Preheader: %s\n", c.Preheader)
		b.WriteString("\n----- text/plain -----\n")
		b.WriteString(c.Text)
		b.WriteString("\n----- text/html -----\n")
		b.WriteString(c.HTML)
	case herald.ChannelSlack:
		b.WriteString("\n----- mrkdwn -----\n")
		b.WriteString(c.SlackText)
		b.WriteString("\n\n----- blocks -----\n")
		if len(c.SlackBlocks) > 0 {
			var out bytes.Buffer
			if err := json.Indent(&out, c.SlackBlocks, "", "  "); err != nil {
				return fmt.Errorf("preview: slack blocks: %w", err)
			}
			b.Write(out.Bytes())
			b.WriteByte('\n')
		}
	default:
		return fmt.Errorf("preview: unknown channel %q (want email or slack)", channel)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
