// Package templates loads and renders herald's message templates: one
// Markdown file with YAML front matter per template and locale
// (<template>/<locale>.md), rendered into every channel from one source so
// that email (HTML and plain text) and Slack (mrkdwn and Block Kit) say the
// same thing.
//
// It owns locale fallback, escaping of customer and event data for each
// target (Markdown, HTML, Slack control sequences, mail headers), the
// default email layout and its `_layout.html` override, the template helpers
// (date, datetime, number, money, default, upper, title, track, markdown),
// Slack's Block Kit limits (long text split into sections, 50 blocks at
// most) and the checks behind `herald validate`: every sample rendered,
// Markdown left as text, missing locales. Everything is parsed once by Load;
// Render only executes.
//
// Front matter `actions:` become Slack buttons. A button with an `event`
// reports it back when pressed (action_id = event, value = the message ID);
// `opt_out: true` on such a button also takes the customer out of the
// message's topic (ignored for required topics). `{{ track URL EVENT }}`
// yields URL unless the caller tracks clicks (Data.Track, else
// Options.Track).
package templates
