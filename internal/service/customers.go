package service

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/jsonerr"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/preferences"
)

var (
	emailRe  = regexp.MustCompile(`^[^\s@<>()",;:\\]+@[^\s@<>()",;:\\]+\.[^\s@<>()",;:\\]+$`)
	slackRe  = regexp.MustCompile(`^[UW][A-Z0-9]{2,20}$`)
	localeRe = regexp.MustCompile(`^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$`)
	attrRe   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)
)

// ValidEmail accepts a bare address (no display name, no comments), with no
// control or space characters: what the SMTP sender will accept later,
// checked now.
func ValidEmail(v string) bool {
	if len(v) > 254 || !emailRe.MatchString(v) {
		return false
	}
	for _, r := range v {
		if unicode.IsControl(r) || unicode.IsSpace(r) || r == utf8.RuneError || unicode.In(r, unicode.Cf) {
			return false
		}
	}
	a, err := mail.ParseAddress(v)
	return err == nil && a.Name == "" && a.Address == v
}

// ValidateCustomer checks a profile and names every problem at once.
func ValidateCustomer(c herald.Customer) error {
	var probs []string
	if err := redisstore.ValidID(c.ID); err != nil {
		probs = append(probs, herald.ErrorMessage(err))
	}
	if c.Email != "" && !ValidEmail(c.Email) {
		probs = append(probs, "email: not an email address (want a bare address such as ada@example.com)")
	}
	if c.SlackUserID != "" && !slackRe.MatchString(c.SlackUserID) {
		probs = append(probs, "slack_user_id: want a Slack user ID such as U024BE7LH")
	}
	if c.Locale != "" && !localeRe.MatchString(c.Locale) {
		probs = append(probs, "locale: want a BCP 47 tag such as ja-JP")
	}
	if c.Timezone != "" {
		if _, err := time.LoadLocation(c.Timezone); err != nil || strings.Contains(c.Timezone, "..") {
			probs = append(probs, "timezone: want an IANA zone such as Asia/Bangkok")
		}
	}
	for _, k := range slices.Sorted(mapsKeys(c.Attributes)) {
		if !attrRe.MatchString(k) {
			probs = append(probs, "attributes."+k+": attribute names use letters, digits and _")
		}
	}
	if len(probs) > 0 {
		return herald.Errorf(herald.EInvalid, "%s", strings.Join(probs, "; "))
	}
	return nil
}

func mapsKeys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Customer reads a profile (ENotFound when there is none).
func (s *Service) Customer(ctx context.Context, id string) (herald.Customer, error) {
	return s.o.Store.Customer(ctx, id)
}

// PutCustomer replaces the customer's profile: fields left out are removed
// (PatchCustomer merges). It reports whether the customer is new. The
// timeline says who created the customer, which fields changed (names, not
// values), and when a change leaves a channel without an address.
func (s *Service) PutCustomer(ctx context.Context, c herald.Customer, actor preferences.Actor) (herald.Customer, bool, error) {
	if err := ValidateCustomer(c); err != nil {
		return c, false, err
	}
	return s.o.Store.WriteCustomer(ctx, c.ID, func(old herald.Customer, exists bool) (herald.Customer, []herald.TimelineEntry, error) {
		return c, profileLines(old, c, exists, actor), nil
	})
}

// PatchCustomer merges patch, a JSON merge patch (RFC 7396), into the
// customer's profile: fields present replace, null removes, attributes merge
// key by key. id, created_at and updated_at cannot be patched. The customer
// must exist.
func (s *Service) PatchCustomer(ctx context.Context, id string, patch []byte, actor preferences.Actor) (herald.Customer, error) {
	if err := redisstore.ValidID(id); err != nil {
		return herald.Customer{}, err
	}
	var p map[string]any
	dec := json.NewDecoder(bytes.NewReader(patch))
	dec.UseNumber()
	if err := dec.Decode(&p); err != nil || p == nil {
		return herald.Customer{}, herald.Errorf(herald.EInvalid, "merge patch: want a JSON object (RFC 7396)")
	}
	for k := range p {
		switch k {
		case "email", "slack_user_id", "locale", "timezone", "attributes":
		case "id", "created_at", "updated_at":
			return herald.Customer{}, herald.Errorf(herald.EInvalid, "%s: cannot be changed by a patch", k)
		default:
			return herald.Customer{}, herald.Errorf(herald.EInvalid, "%s: unknown field (known: email, slack_user_id, locale, timezone, attributes)", k)
		}
	}
	if a, ok := p["attributes"]; ok && a != nil {
		if _, ok := a.(map[string]any); !ok {
			return herald.Customer{}, herald.Errorf(herald.EInvalid, "attributes: want an object or null")
		}
	}
	c, _, err := s.o.Store.WriteCustomer(ctx, id, func(old herald.Customer, exists bool) (herald.Customer, []herald.TimelineEntry, error) {
		if !exists {
			return old, nil, herald.Errorf(herald.ENotFound, "customer %q not found", id)
		}
		next, err := mergeCustomer(old, p)
		if err != nil {
			return old, nil, err
		}
		if err := ValidateCustomer(next); err != nil {
			return old, nil, err
		}
		return next, profileLines(old, next, true, actor), nil
	})
	return c, err
}

// mergeCustomer applies an RFC 7396 merge patch to c's JSON form.
func mergeCustomer(c herald.Customer, p map[string]any) (herald.Customer, error) {
	b, _ := json.Marshal(c)
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return c, err
	}
	doc = mergePatch(doc, p)
	b, _ = json.Marshal(doc)
	var out herald.Customer
	if err := json.Unmarshal(b, &out); err != nil {
		return c, herald.Errorf(herald.EInvalid, "merge patch: %s", jsonerr.Explain(err, nil))
	}
	out.ID, out.CreatedAt, out.UpdatedAt = c.ID, c.CreatedAt, c.UpdatedAt
	return out, nil
}

// mergePatch is RFC 7396's MergePatch(target, patch) for an object patch.
func mergePatch(target map[string]any, patch map[string]any) map[string]any {
	if target == nil {
		target = map[string]any{}
	}
	for k, v := range patch {
		if v == nil {
			delete(target, k)
			continue
		}
		if pv, ok := v.(map[string]any); ok {
			tv, _ := target[k].(map[string]any)
			target[k] = mergePatch(tv, pv)
			continue
		}
		target[k] = v
	}
	return target
}

// profileLines are the timeline lines of a profile write.
func profileLines(old, next herald.Customer, exists bool, actor preferences.Actor) []herald.TimelineEntry {
	who := actorText(actor)
	if !exists {
		return []herald.TimelineEntry{{Kind: herald.KindCustomer, Summary: "customer created by " + who}}
	}
	var fields []string
	for _, f := range []struct {
		name     string
		old, new string
	}{
		{"email", old.Email, next.Email},
		{"slack_user_id", old.SlackUserID, next.SlackUserID},
		{"locale", old.Locale, next.Locale},
		{"timezone", old.Timezone, next.Timezone},
	} {
		if f.old != f.new {
			fields = append(fields, f.name)
		}
	}
	keys := map[string]bool{}
	for k := range old.Attributes {
		keys[k] = true
	}
	for k := range next.Attributes {
		keys[k] = true
	}
	for _, k := range slices.Sorted(mapsKeysBool(keys)) {
		ob, _ := json.Marshal(old.Attributes[k])
		nb, _ := json.Marshal(next.Attributes[k])
		_, inOld := old.Attributes[k]
		_, inNew := next.Attributes[k]
		if inOld != inNew || !bytes.Equal(ob, nb) {
			fields = append(fields, "attributes."+k)
		}
	}
	if len(fields) == 0 {
		return nil
	}
	out := []herald.TimelineEntry{{Kind: herald.KindCustomer, Summary: fmt.Sprintf("profile changed by %s: %s", who, strings.Join(fields, ", "))}}
	for _, lost := range []struct {
		ch       herald.Channel
		old, new string
	}{{herald.ChannelEmail, old.Email, next.Email}, {herald.ChannelSlack, old.SlackUserID, next.SlackUserID}} {
		if lost.old != "" && lost.new == "" {
			out = append(out, herald.TimelineEntry{Kind: herald.KindCustomer,
				Summary: fmt.Sprintf("no %s address any more (removed by %s): %s messages cannot reach the customer", lost.ch, who, lost.ch)})
		}
	}
	return out
}

func mapsKeysBool(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Erase forgets the customer: each address is suppressed first (so a failure
// halfway never lets a message through, and a retry finishes the job), then
// the customer's journeys, follow-ups, queued tasks and keys go under the
// journey lock. Erasing a customer that is already gone is ENotFound.
func (s *Service) Erase(ctx context.Context, id string, actor preferences.Actor) error {
	c, err := s.o.Store.Customer(ctx, id)
	if err != nil {
		return err
	}
	for ch, addr := range map[herald.Channel]string{herald.ChannelEmail: c.Email, herald.ChannelSlack: c.SlackUserID} {
		if strings.TrimSpace(addr) == "" {
			continue
		}
		if err := s.o.Prefs.Suppress(ctx, ch, addr, preferences.SourceErasure); err != nil {
			return err
		}
	}
	if s.o.Journeys != nil {
		return s.o.Journeys.Erase(ctx, c, actor)
	}
	return s.enqueueErase(ctx, c, actor)
}
