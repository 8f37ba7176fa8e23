package engine

import (
	"context"
	"errors"
	"regexp"
	"strings"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/templates"
)

// checkBroadcastData renders a template broadcast's message the way each
// customer's delivery will render it, in every locale of the template and
// every channel the broadcast may use, with the broadcast's data: the data
// is the same for everyone, so a template it cannot fill would fail for
// every customer. The customer is the template's sample customer, else the
// first of the audience (first, "" for none). A failure that comes from the
// customer (an attribute this one lacks) is not the data's: it is left to
// each customer's own delivery, as before.
func (e *Engine) checkBroadcastData(ctx context.Context, b Broadcast, first string) error {
	tset := e.Templates()
	if b.Template == "" || tset == nil || !tset.Has(b.Template) {
		return nil
	}
	// The data as a delivery sees it: through a task payload and back.
	var data map[string]any
	if err := wire.Decode(wire.Encode(b.Data), &data); err != nil {
		return herald.Errorf(herald.EInvalid, "data: %s", herald.ErrorMessage(err))
	}
	var audience *herald.Customer
	if first != "" {
		profiles, _, err := e.st.Profiles(ctx, []string{first})
		if err != nil {
			return err
		}
		if len(profiles) > 0 {
			audience = &profiles[0].Customer
		}
	}
	chans := e.available(b.Channels)
	var probs []string
	seen := map[string]bool{}
	for _, locale := range tset.Locales(b.Template) {
		cust := sampleCustomer(tset, b.Template, locale, audience)
		for _, ch := range chans {
			err := e.renderBroadcast(b, cust, data, ch)
			if msg := herald.ErrorMessage(err); err != nil && !seen[msg] {
				seen[msg] = true
				probs = append(probs, "data: "+msg)
			}
		}
	}
	if len(probs) > 0 {
		return herald.Errorf(herald.EInvalid, "%s", strings.Join(probs, "; "))
	}
	return nil
}

// renderBroadcast renders one channel as the delivery does (see deliver),
// and returns its error unless the customer caused it. A customer attribute
// the sample lacks is filled in and the render tried again, so that a
// data problem behind it still shows.
func (e *Engine) renderBroadcast(b Broadcast, cust herald.Customer, data map[string]any, ch herald.Channel) error {
	id := BroadcastMessageID(b.ID, cust.ID)
	for range 20 {
		links := e.links(cust, b.Topic)
		_, err := e.Templates().RenderChannel(b.Template, cust.Locale, templates.Data{
			Customer: cust, Data: data, MessageID: id, Now: e.now(),
			Track: e.tracker(cust, wire.Deliver{MessageID: id, CustomerID: cust.ID, Topic: b.Topic, Channel: ch}),
			Links: templates.Links{Preferences: links.preferences, Unsubscribe: links.unsubscribe},
		}, ch)
		var p templates.Problem
		if !errors.As(err, &p) {
			return nil // no error, or none of the data's (a template gone meanwhile)
		}
		at := failedAt.FindStringSubmatch(p.Message)
		if at == nil || !strings.Contains(at[1], ".customer") || strings.Contains(at[1], ".data") {
			return err
		}
		m := missingCustomerKey.FindStringSubmatch(p.Message)
		if m == nil {
			return nil // the customer's value, not the data, fails here
		}
		attrs := make(map[string]any, len(cust.Attributes)+1)
		for k, v := range cust.Attributes {
			attrs[k] = v
		}
		attrs[m[1]] = ""
		cust.Attributes = attrs
	}
	return nil
}

var (
	// failedAt is the expression a template failed at.
	failedAt = regexp.MustCompile(`at <([^>]*)>`)
	// missingCustomerKey is a customer attribute the template reads and
	// the customer does not have.
	missingCustomerKey = regexp.MustCompile(`^missing key "([^"]+)" at <\.customer\.[^>.]+>$`)
)

// sampleCustomer is the customer a broadcast's template is checked with in
// locale: the template's sample customer if the file declares one, else the
// audience's first customer, else a customer with nothing but an ID.
func sampleCustomer(tset *templates.Set, name, locale string, audience *herald.Customer) herald.Customer {
	d, _ := tset.Sample(name, locale)
	c := d.Customer
	declared := c.ID != "sample" || c.Email != "" || c.SlackUserID != "" || c.Timezone != "" || len(c.Attributes) > 0
	if !declared && audience != nil {
		c = *audience
	}
	c.Locale = locale
	return c
}
