package herald

import "regexp"

// MaxEventNameLen is the longest event name herald takes.
const MaxEventNameLen = 128

var eventNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,127}$`)

// ValidEventName reports whether name can name an event: lower-case
// letters, digits, '.', '_' and '-', starting with a letter or digit, at
// most MaxEventNameLen bytes. The API, the client and the workflow language
// all apply this one rule, so a workflow can only wait for events that can
// be sent.
func ValidEventName(name string) error {
	if !eventNameRe.MatchString(name) {
		shown := name
		if len(shown) > 40 {
			shown = shown[:40] + "…"
		}
		return Errorf(EInvalid, "event name %q: use lower-case letters, digits, '.', '_' or '-' (at most %d, starting with a letter or digit)", shown, MaxEventNameLen)
	}
	return nil
}
