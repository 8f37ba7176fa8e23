// Package centre serves the customer-facing preference centre: the page a
// signed link in every message opens (GET/POST /preferences?token=…), where
// a customer switches topics and channels, pauses everything or sets quiet
// hours, and RFC 8058 one-click unsubscribe (POST /unsubscribe?token=…) with
// its confirmation page for people who click the link.
//
// The pages are plain HTML forms without JavaScript, localised into the
// customer's language, topics included (their configured labels and
// descriptions), with each language's fonts and line breaking. Every change goes through redisstore.Prefs.Apply, so
// it lands in the consent log with the customer as the actor.
package centre
