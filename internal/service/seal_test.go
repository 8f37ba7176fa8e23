package service

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A secret word seals a key that holds it as whole parts, however the key
// is cased and joined, and leaves keys that merely contain it readable.
func TestDefaultSecretKeysMatchWholeParts(t *testing.T) {
	t.Parallel()
	sealed := []string{
		"auth", "AUTH", "Auth", "x-auth", "X-Auth-Token", "auth_token", "authToken", "AuthToken", "AUTH_TOKEN", "AUTHToken", "OAuth", "oauth_token",
		"password", "Password", "user.password", "newPassword", "passwd", "passcode",
		"api_key", "apiKey", "API_KEY", "X-API-KEY", "APIKey", "apikey", "api-key", "stripeApiKey",
		"token", "reset_token", "resetToken", "access_token", "accesstoken", "token2", "otp", "otp_code", "2fa_otp",
		"secret", "clientSecret", "session", "session_id", "sessionId", "signature", "credentials",
		"reset_url", "magic_link", "verify_url", "verification_code", "login_url", "loginURL", "invite_url", "confirm_url", "confirmation_link",
		"cookie", "authorization",
	}
	readable := []string{
		"author", "Author", "AUTHOR", "authority", "coauthor", "authored_by", "author_name",
		"preset", "resetting", "tokenizer", "secretary", "passage", "compass", "passenger",
		"confirmed_at", "magician", "otpx", "hotpot", "keys", "api", "key",
		"plan", "seats", "excerpt", "first_name", "apiary",
	}
	for _, k := range sealed {
		require.True(t, DefaultSecretKeys.MatchString(k), "%q is sealed", k)
	}
	for _, k := range readable {
		require.False(t, DefaultSecretKeys.MatchString(k), "%q stays readable", k)
	}
}

// Configured words follow the same rule, written in any of the key forms.
func TestSecretKeyPatternWords(t *testing.T) {
	t.Parallel()
	re := SecretKeyPattern([]string{" ", "ssn", "bankAccount", "pin-code"})
	for k, want := range map[string]bool{
		"ssn": true, "customer_ssn": true, "SSN": true, "ssnLast4": true, "lessn": false, "ssns": false,
		"bank_account": true, "bankAccount": true, "BANK-ACCOUNT": true, "bankaccount": true, "bank_accounts": false, "bank": false,
		"pin_code": true, "pinCode": true, "spin_code": false,
	} {
		require.Equal(t, want, re.MatchString(k), "%q", k)
	}
	require.Nil(t, SecretKeyPattern([]string{" ", "-"}), "no words: no pattern")
}

func TestKeyParts(t *testing.T) {
	t.Parallel()
	for in, want := range map[string][]string{
		"api_key":        {"api", "key"},
		"apiKey":         {"api", "key"},
		"APIKey":         {"api", "key"},
		"X-Auth-Token":   {"x", "auth", "token"},
		"OAuth":          {"o", "auth"},
		"user.password2": {"user", "password", "2"},
		"loginURL":       {"login", "url"},
		"__":             nil,
	} {
		require.Equal(t, want, keyParts(in), in)
	}
}
