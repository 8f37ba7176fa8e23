// Package slack delivers herald messages as Slack direct messages through
// slack-go. It owns finding the customer's Slack user (by ID, or by email
// through a shared cache), posting and updating Block Kit messages, and
// translating Slack's answers into herald's temporary and permanent errors.
package slack
