package centre

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"
	"golang.org/x/text/language"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/internal/service"
	"github.com/heraldhq/herald/preferences"
)

var testKey = []byte("centre-test-key-0123456789abcdef")

// testTopics: product-updates is labelled in every page language, newsletter
// only in zh (so other languages show its name), billing in the default
// locale and Japanese.
var testTopics = map[string]herald.Topic{
	"product-updates": {Name: "product-updates", OptIn: true, Class: "marketing",
		Labels: map[string]string{
			"en": "Product news", "th": "ข่าวสารผลิตภัณฑ์", "ja": "製品のお知らせ",
			"ko": "제품 소식", "zh-Hant": "產品消息", "pl": "Nowości w produkcie",
		},
		Descriptions: map[string]string{
			"en": "New features, once a month", "th": "ฟีเจอร์ใหม่ เดือนละครั้ง", "ja": "新機能のご紹介（月1回）",
			"ko": "새로운 기능 소개(한 달에 한 번)", "zh-Hant": "新功能介紹，每月一次",
		},
	},
	"newsletter": {Name: "newsletter", OptIn: false, Class: "marketing", Labels: map[string]string{"zh": "電子報"}},
	"billing":    {Name: "billing", Required: true, Labels: map[string]string{"en": "Billing", "ja": "お支払い"}},
}

// productUpdates is product-updates' label and description per page language.
var productUpdates = map[string][2]string{
	"en":      {"Product news", "New features, once a month"},
	"th":      {"ข่าวสารผลิตภัณฑ์", "ฟีเจอร์ใหม่ เดือนละครั้ง"},
	"ja":      {"製品のお知らせ", "新機能のご紹介（月1回）"},
	"ko":      {"제품 소식", "새로운 기능 소개(한 달에 한 번)"},
	"zh-Hant": {"產品消息", "新功能介紹，每月一次"},
	"pl":      {"Nowości w produkcie", "New features, once a month"}, // no Polish description: the default locale's
}

type bundle struct {
	srv   *httptest.Server
	store *redisstore.Prefs
	now   time.Time

	mu      sync.Mutex
	optOuts []string
}

// ExitTopic records the journeys the write path ends (service.Journeys).
func (b *bundle) ExitTopic(_ context.Context, id, topic string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.optOuts = append(b.optOuts, id+":"+topic)
	return nil
}

func (b *bundle) Erase(context.Context, herald.Customer, preferences.Actor) error { return nil }

type catalog struct{}

func (catalog) Routing(context.Context) (redisstore.Routing, bool, error) {
	return redisstore.Routing{Queues: map[string]string{}, MaxRetry: 3, Topics: testTopics}, true, nil
}

func (b *bundle) OptOuts() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.optOuts...)
}

var customers = map[string]herald.Customer{
	"cus_en": {ID: "cus_en", Email: "ann@example.com", Locale: "en-GB", Timezone: "Europe/London"},
	"cus_ja": {ID: "cus_ja", Email: "haru@example.jp", Locale: "ja-JP", Timezone: "Asia/Tokyo"},
	"cus_th": {ID: "cus_th", Email: "som@example.co.th", Locale: "th-TH", Timezone: "Asia/Bangkok"},
	"cus_ko": {ID: "cus_ko", Locale: "ko-KR", Timezone: "Asia/Seoul"},
	"cus_tw": {ID: "cus_tw", Locale: "zh-TW", Timezone: "Asia/Taipei"},
	"cus_pl": {ID: "cus_pl", Locale: "pl-PL", Timezone: "Europe/Warsaw"},
	"cus_fr": {ID: "cus_fr", Locale: "fr-FR", Timezone: "Europe/Paris"},
}

func setup(t *testing.T) *bundle {
	t.Helper()
	b := &bundle{now: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}
	rdb := redistest.Start(t).Client()
	clock := func() time.Time { return b.now }
	b.store = redisstore.NewPrefs(rdb, clock)
	st := redisstore.New(rdb, clock)
	for _, c := range customers {
		_, _, err := st.UpsertCustomer(context.Background(), c)
		require.NoError(t, err)
	}
	tasks := asynq.NewClientFromRedisClient(rdb)
	svc := service.New(service.Options{Store: st, Prefs: b.store, Tasks: tasks, Catalog: catalog{}, Journeys: b})
	b.srv = httptest.NewServer(New(Config{
		Prefs:  svc,
		Key:    testKey,
		Topics: testTopics,
		Customer: func(_ context.Context, id string) (herald.Customer, error) {
			c, ok := customers[id]
			if !ok {
				return herald.Customer{}, herald.Errorf(herald.ENotFound, "no customer %s", id)
			}
			return c, nil
		},
		Now:    func() time.Time { return b.now },
		Logger: slog.New(slog.DiscardHandler),
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *bundle) prefsURL(id string) string {
	return b.srv.URL + "/preferences?token=" + preferences.Sign(testKey, preferences.Claims{
		CustomerID: id, Purpose: preferences.PurposePreferences, Expires: b.now.Add(preferences.DefaultTokenTTL)})
}

func (b *bundle) unsubURL(id, topic string) string {
	return b.srv.URL + "/unsubscribe?token=" + preferences.Sign(testKey, preferences.Claims{
		CustomerID: id, Purpose: preferences.PurposeUnsubscribe, Topic: topic, Channel: herald.ChannelEmail, Expires: b.now.Add(preferences.DefaultTokenTTL)})
}

type response struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, method, u string, body io.Reader, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	require.NoError(t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return response{res.StatusCode, res.Header, string(b)}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// form reads the page's CSRF value and returns a form with the boxes the
// page shows as checked, as a browser would submit it.
func (b *bundle) form(t *testing.T, page string) url.Values {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	require.Len(t, m, 2, "page has a csrf field")
	v := url.Values{"csrf": {m[1]}}
	for _, m := range regexp.MustCompile(`<input type="checkbox" id="[^"]+" name="([^"]+)" value="on" checked(?: aria-describedby="[^"]*")?>`).FindAllStringSubmatch(page, -1) {
		v.Set(m[1], "on")
	}
	for _, m := range regexp.MustCompile(`name="(quiet_start|quiet_end)" value="([^"]*)"`).FindAllStringSubmatch(page, -1) {
		v.Set(m[1], m[2])
	}
	return v
}

func TestGetPreferences(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res := do(t, http.MethodGet, b.prefsURL("cus_en"), nil, nil)
	require.Equal(t, http.StatusOK, res.status, res.body)
	require.Contains(t, res.header.Get("Content-Type"), "text/html")
	require.Equal(t, "no-store", res.header.Get("Cache-Control"))
	require.Contains(t, res.header.Get("Content-Security-Policy"), "default-src 'none'")
	require.Contains(t, res.header.Get("Content-Security-Policy"), "form-action 'self'")
	require.NotContains(t, res.body, "<script")
	require.Contains(t, res.body, `<html lang="en">`)
	require.Contains(t, res.body, `<legend>Topics</legend>`)
	require.Contains(t, res.body, `name="topic.product-updates" value="on" checked aria-describedby="topic-1-desc">`, "opt-out topic defaults on")
	require.Contains(t, res.body, `<label for="topic-1">Product news</label>`+"\n"+`<p class="desc" id="topic-1-desc">New features, once a month</p>`)
	require.Contains(t, res.body, `name="topic.newsletter" value="on">`, "opt-in topic defaults off")
	require.Contains(t, res.body, `name="topic.billing" value="on" checked disabled aria-describedby="required-note"`)
	require.Contains(t, res.body, "Always on")
	require.Contains(t, res.body, `name="channel.email" value="on" checked>`)
	require.Contains(t, res.body, `name="channel.slack" value="on" checked>`)
	require.Contains(t, res.body, `name="paused"`)
	require.Contains(t, res.body, "time zone: Europe/London")
	require.Contains(t, res.body, `<label for="topic-0">Newsletter</label>`, "no English label: the name, humanised")
	require.Contains(t, res.body, `<label for="topic-2">Billing</label>`)
	require.Regexp(t, `action="\?token=h1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"`, res.body)

	// The CSP hash must match the inline stylesheet, or the page is unstyled.
	require.Equal(t, csp, res.header.Get("Content-Security-Policy"))

	head := do(t, http.MethodHead, b.prefsURL("cus_en"), nil, nil)
	require.Equal(t, http.StatusOK, head.status)
}

func TestLocales(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cases := []struct {
		customer, accept, lang, title, zone string
	}{
		{"cus_en", "", "en", "Your message preferences", "Europe/London"},
		{"cus_ja", "en", "ja", "配信設定", "Asia/Tokyo"},
		{"cus_th", "", "th", "การตั้งค่าการรับข้อความ", "Asia/Bangkok"},
		{"cus_ko", "", "ko", "알림 설정", "Asia/Seoul"},
		{"cus_tw", "", "zh-Hant", "通知偏好設定", "Asia/Taipei"},
		{"cus_pl", "", "pl", "Ustawienia wiadomości", "Europe/Warsaw"},
		{"cus_fr", "", "en", "Your message preferences", "Europe/Paris"},
		{"cus_fr", "pl,en;q=0.5", "pl", "Ustawienia wiadomości", "Europe/Paris"},
	}
	for _, tc := range cases {
		t.Run(tc.customer+"/"+tc.accept, func(t *testing.T) {
			t.Parallel()
			res := do(t, http.MethodGet, b.prefsURL(tc.customer), nil, map[string]string{"Accept-Language": tc.accept})
			require.Equal(t, http.StatusOK, res.status)
			require.Contains(t, res.body, `<html lang="`+tc.lang+`">`)
			require.Contains(t, res.body, "<title>"+tc.title+"</title>")
			require.Contains(t, res.body, tc.zone)
			// Topics in the page's language too, never their config names.
			pu := productUpdates[tc.lang]
			require.Contains(t, res.body, `<label for="topic-1">`+pu[0]+`</label>`)
			require.Contains(t, res.body, `<p class="desc" id="topic-1-desc">`+pu[1]+`</p>`)
			require.NotContains(t, res.body, "Product updates")

			unsub := do(t, http.MethodGet, b.unsubURL(tc.customer, "product-updates"), nil, map[string]string{"Accept-Language": tc.accept})
			require.Equal(t, http.StatusOK, unsub.status)
			require.Contains(t, unsub.body, fmt.Sprintf(texts[slices.IndexFunc(supported, func(l language.Tag) bool { return l.String() == tc.lang })].UnsubQuestion, pu[0]))
		})
	}
}

func TestPick(t *testing.T) {
	t.Parallel()
	cases := []struct{ locale, accept, want string }{
		{"zh-Hant-TW", "", "zh-Hant"},
		{"zh-HK", "", "zh-Hant"},
		{"ja", "", "ja"},
		{"", "th-TH,en;q=0.8", "th"},
		{"", "", "en"},
		{"xx-invalid-", "ko", "ko"},
		{"de-DE", "", "en"},
	}
	for _, tc := range cases {
		got, _ := pick(tc.locale, tc.accept)
		require.Equal(t, tc.want, got, "%q %q", tc.locale, tc.accept)
	}
	for i, tx := range texts {
		require.NotEmpty(t, tx.Title, supported[i])
		require.NotEmpty(t, tx.UnsubRequired, supported[i])
		require.Contains(t, tx.QuietHint, "%s", supported[i])
		require.Contains(t, tx.UnsubQuestion, "%s", supported[i])
		require.Contains(t, tx.UnsubDone, "%s", supported[i])
		require.Len(t, tx.ChannelNames, len(herald.Channels), supported[i])
	}
}

func TestPostPreferences(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	u := b.prefsURL("cus_en")
	page := do(t, http.MethodGet, u, nil, nil)

	// Saving the untouched page changes nothing and logs nothing.
	form := b.form(t, page.body)
	res := do(t, http.MethodPost, u, strings.NewReader(form.Encode()), nil)
	require.Equal(t, http.StatusOK, res.status, res.body)
	log, err := b.store.Consent(ctx, "cus_en")
	require.NoError(t, err)
	require.Empty(t, log)

	form.Del("topic.product-updates")
	form.Set("topic.newsletter", "on")
	form.Del("channel.slack")
	form.Set("quiet_start", "21:30")
	form.Set("quiet_end", "07:00:00")
	form.Set("topic.billing", "") // a disabled box is never sent; a forged one is ignored
	res = do(t, http.MethodPost, u, strings.NewReader(form.Encode()), map[string]string{"Origin": b.srv.URL, "Sec-Fetch-Site": "same-origin"})
	require.Equal(t, http.StatusOK, res.status, res.body)
	require.Contains(t, res.body, `role="status">Your preferences are saved.`)
	require.Contains(t, res.body, `name="topic.product-updates" value="on" aria-describedby="topic-1-desc">`)
	require.Contains(t, res.body, `value="21:30"`)

	p, err := b.store.Get(ctx, "cus_en")
	require.NoError(t, err)
	require.Equal(t, map[string]bool{"product-updates": false, "newsletter": true}, p.Topics)
	require.False(t, p.ChannelOn(herald.ChannelSlack))
	require.True(t, p.ChannelOn(herald.ChannelEmail))
	require.Equal(t, &herald.QuietHours{Start: "21:30", End: "07:00"}, p.QuietHours)

	log, err = b.store.Consent(ctx, "cus_en")
	require.NoError(t, err)
	fields := map[string]any{}
	for _, e := range log {
		require.Equal(t, preferences.Actor{Kind: preferences.ActorCustomer}, e.Actor)
		require.Equal(t, preferences.SourcePreferencePage, e.Source)
		fields[e.Field] = e.To
	}
	require.Equal(t, map[string]any{
		"channels.slack":         false,
		"topics.newsletter":      true,
		"topics.product-updates": false,
		"quiet_hours":            map[string]any{"start": "21:30", "end": "07:00"},
	}, fields)
	require.Equal(t, []string{"cus_en:product-updates"}, b.OptOuts())

	// Clearing both times removes quiet hours; pausing is recorded.
	form.Set("quiet_start", "")
	form.Set("quiet_end", "")
	form.Set("paused", "on")
	res = do(t, http.MethodPost, u, strings.NewReader(form.Encode()), nil)
	require.Equal(t, http.StatusOK, res.status)
	p, err = b.store.Get(ctx, "cus_en")
	require.NoError(t, err)
	require.Nil(t, p.QuietHours)
	require.True(t, p.Paused)
}

func TestPostPreferencesRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := b.prefsURL("cus_en")
	page := do(t, http.MethodGet, u, nil, nil)
	good := b.form(t, page.body)
	good.Del("topic.product-updates")
	otherCSRF := b.form(t, do(t, http.MethodGet, b.prefsURL("cus_ja"), nil, nil).body).Get("csrf")

	with := func(mod func(url.Values)) string {
		v := url.Values{}
		for k, vs := range good {
			v[k] = vs
		}
		mod(v)
		return v.Encode()
	}
	cases := []struct {
		name   string
		url    string
		body   string
		header map[string]string
		status int
	}{
		{"no csrf", u, with(func(v url.Values) { v.Del("csrf") }), nil, http.StatusForbidden},
		{"wrong csrf", u, with(func(v url.Values) { v.Set("csrf", "AAAA") }), nil, http.StatusForbidden},
		{"another customer's csrf", u, with(func(v url.Values) { v.Set("csrf", otherCSRF) }), nil, http.StatusForbidden},
		{"cross-site fetch", u, with(func(url.Values) {}), map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"foreign origin", u, with(func(url.Values) {}), map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{"foreign referer", u, with(func(url.Values) {}), map[string]string{"Referer": "https://evil.example/page"}, http.StatusForbidden},
		{"tampered token", strings.Replace(u, "token=h1.", "token=h1.e", 1), with(func(url.Values) {}), nil, http.StatusForbidden},
		{"unsubscribe token", strings.Replace(b.unsubURL("cus_en", "product-updates"), "/unsubscribe", "/preferences", 1), with(func(url.Values) {}), nil, http.StatusForbidden},
		{"half quiet hours", u, with(func(v url.Values) { v.Set("quiet_start", "22:00") }), nil, http.StatusUnprocessableEntity},
		{"bad quiet hours", u, with(func(v url.Values) { v.Set("quiet_start", "25:00"); v.Set("quiet_end", "07:00") }), nil, http.StatusUnprocessableEntity},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := do(t, http.MethodPost, tc.url, strings.NewReader(tc.body), tc.header)
			require.Equal(t, tc.status, res.status, res.body)
			if tc.status == http.StatusForbidden {
				require.Contains(t, res.body, "This link doesn")
			} else {
				require.Contains(t, res.body, "Enter both times")
			}
		})
	}
	p, err := b.store.Get(context.Background(), "cus_en")
	require.NoError(t, err)
	require.Equal(t, herald.Preferences{}, p, "nothing changed")
	require.Empty(t, b.OptOuts())
}

func TestBadTokens(t *testing.T) {
	t.Parallel()
	b := setup(t)
	expired := preferences.Sign(testKey, preferences.Claims{CustomerID: "cus_ja", Purpose: preferences.PurposePreferences, Expires: b.now.Add(-time.Second)})
	otherKey := preferences.Sign([]byte("not the server's key"), preferences.Claims{CustomerID: "cus_ja", Purpose: preferences.PurposePreferences, Expires: b.now.Add(time.Hour)})
	cases := []struct{ name, path string }{
		{"missing", "/preferences"},
		{"garbage", "/preferences?token=hello"},
		{"expired", "/preferences?token=" + expired},
		{"other key", "/preferences?token=" + otherKey},
		{"unsubscribe token", strings.TrimPrefix(b.unsubURL("cus_ja", "newsletter"), b.srv.URL)[len("/unsubscribe"):]},
		{"preferences token on unsubscribe page", "/unsubscribe?" + strings.SplitN(b.prefsURL("cus_ja"), "?", 2)[1]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := tc.path
			if strings.HasPrefix(path, "?") {
				path = "/preferences" + path
			}
			res := do(t, http.MethodGet, b.srv.URL+path, nil, map[string]string{"Accept-Language": "ja"})
			require.Equal(t, http.StatusForbidden, res.status)
			require.Contains(t, res.body, "このリンクは無効です", "localised by the browser's language")
			require.NotContains(t, res.body, "cus_ja")
		})
	}
	missing := preferences.Sign(testKey, preferences.Claims{CustomerID: "cus_gone", Purpose: preferences.PurposePreferences, Expires: b.now.Add(time.Hour)})
	res := do(t, http.MethodGet, b.srv.URL+"/preferences?token="+missing, nil, nil)
	require.Equal(t, http.StatusNotFound, res.status)
	require.Contains(t, res.body, "find your preferences.")

	res = do(t, http.MethodPut, b.prefsURL("cus_en"), nil, nil)
	require.Equal(t, http.StatusMethodNotAllowed, res.status)
}

func TestOneClickUnsubscribe(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	u := b.unsubURL("cus_ja", "product-updates")
	const oneClick = "List-Unsubscribe=One-Click"

	res := do(t, http.MethodPost, u, strings.NewReader(oneClick), nil)
	require.Equal(t, http.StatusOK, res.status, res.body)
	require.Contains(t, res.header.Get("Content-Type"), "text/plain")
	require.Equal(t, "「製品のお知らせ」の配信を停止しました。\n", res.body)
	p, err := b.store.Get(ctx, "cus_ja")
	require.NoError(t, err)
	require.Equal(t, map[string]bool{"product-updates": false}, p.Topics)
	e, ok, err := b.store.LastConsent(ctx, "cus_ja", preferences.TopicField("product-updates"))
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, preferences.SourceOneClickUnsubscribe, e.Source)
	require.Equal(t, preferences.ActorCustomer, e.Actor.Kind)
	require.Equal(t, false, e.To)
	require.Equal(t, []string{"cus_ja:product-updates"}, b.OptOuts())

	// Again: still 200, no second consent entry.
	res = do(t, http.MethodPost, u, strings.NewReader(oneClick), nil)
	require.Equal(t, http.StatusOK, res.status)
	log, err := b.store.Consent(ctx, "cus_ja")
	require.NoError(t, err)
	require.Len(t, log, 1)

	// multipart/form-data is allowed by RFC 8058 too.
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	require.NoError(t, mw.WriteField("List-Unsubscribe", "One-Click"))
	require.NoError(t, mw.Close())
	res = do(t, http.MethodPost, b.unsubURL("cus_en", "newsletter"), &mp, map[string]string{"Content-Type": mw.FormDataContentType()})
	require.Equal(t, http.StatusOK, res.status, res.body)
	p, err = b.store.Get(ctx, "cus_en")
	require.NoError(t, err)
	require.Equal(t, map[string]bool{"newsletter": false}, p.Topics)
}

func TestOneClickUnsubscribeRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const oneClick = "List-Unsubscribe=One-Click"
	expired := b.srv.URL + "/unsubscribe?token=" + preferences.Sign(testKey, preferences.Claims{CustomerID: "cus_en", Purpose: preferences.PurposeUnsubscribe, Topic: "newsletter", Expires: b.now.Add(-time.Minute)})
	cases := []struct {
		name   string
		url    string
		body   string
		status int
		text   string
	}{
		{"tampered", strings.Replace(b.unsubURL("cus_en", "newsletter"), "token=h1.", "token=h1.x", 1), oneClick, http.StatusForbidden, "This link doesn't work"},
		{"expired", expired, oneClick, http.StatusForbidden, "This link doesn't work"},
		{"preferences token", strings.Replace(b.prefsURL("cus_en"), "/preferences", "/unsubscribe", 1), oneClick, http.StatusForbidden, "This link doesn't work"},
		{"no body", b.unsubURL("cus_en", "newsletter"), "", http.StatusBadRequest, "List-Unsubscribe=One-Click"},
		{"wrong body", b.unsubURL("cus_en", "newsletter"), "List-Unsubscribe=Yes", http.StatusBadRequest, "List-Unsubscribe=One-Click"},
		{"required topic", b.unsubURL("cus_en", "billing"), oneClick, http.StatusBadRequest, "account"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := do(t, http.MethodPost, tc.url, strings.NewReader(tc.body), nil)
			require.Equal(t, tc.status, res.status, res.body)
			require.Contains(t, res.header.Get("Content-Type"), "text/plain")
			require.Contains(t, res.body, tc.text)
		})
	}
	p, err := b.store.Get(context.Background(), "cus_en")
	require.NoError(t, err)
	require.Equal(t, herald.Preferences{}, p, "nothing changed")
	require.Empty(t, b.OptOuts())
}

func TestUnsubscribePage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	u := b.unsubURL("cus_pl", "product-updates")

	// A mail scanner following the link changes nothing.
	res := do(t, http.MethodGet, u, nil, nil)
	require.Equal(t, http.StatusOK, res.status)
	require.Contains(t, res.body, `<html lang="pl">`)
	require.Contains(t, res.body, "Czy chcesz przestać otrzymywać „Nowości w produkcie”?")
	require.Contains(t, res.body, `<form method="post"`)
	require.Contains(t, res.body, `name="List-Unsubscribe" value="One-Click"`)
	p, err := b.store.Get(ctx, "cus_pl")
	require.NoError(t, err)
	require.Equal(t, herald.Preferences{}, p)

	// The button posts and gets a page back.
	res = do(t, http.MethodPost, u, strings.NewReader("List-Unsubscribe=One-Click&from=page"), nil)
	require.Equal(t, http.StatusOK, res.status)
	require.Contains(t, res.header.Get("Content-Type"), "text/html")
	require.Contains(t, res.body, "Nie będziesz już otrzymywać „Nowości w produkcie”.")
	p, err = b.store.Get(ctx, "cus_pl")
	require.NoError(t, err)
	require.False(t, p.Topics["product-updates"])

	// A link without a topic pauses everything that can be paused.
	res = do(t, http.MethodGet, b.unsubURL("cus_ko", ""), nil, nil)
	require.Contains(t, res.body, "계정 안내를 제외한 모든 메시지 수신을 중지하시겠어요?")
	res = do(t, http.MethodPost, b.unsubURL("cus_ko", ""), strings.NewReader("List-Unsubscribe=One-Click"), nil)
	require.Equal(t, http.StatusOK, res.status)
	p, err = b.store.Get(ctx, "cus_ko")
	require.NoError(t, err)
	require.True(t, p.Paused)

	// A required topic explains instead of offering a button.
	res = do(t, http.MethodGet, b.unsubURL("cus_th", "billing"), nil, nil)
	require.Equal(t, http.StatusOK, res.status)
	require.Contains(t, res.body, "ยกเลิกการรับไม่ได้")
	require.NotContains(t, res.body, "<form")
}
