package centre

import (
	"slices"
	"strings"
	"unicode"

	"golang.org/x/text/language"
)

// text is every string the pages show, in one language.
type text struct {
	Title, Intro                  string
	TopicsLegend, TopicsHint      string
	RequiredNote                  string
	ChannelsLegend, ChannelsHint  string
	ChannelNames                  map[string]string
	PauseLegend, PauseLabel       string
	QuietLegend, QuietHint        string // QuietHint has one %s: the time zone
	QuietFrom, QuietTo            string
	Save, Saved, QuietInvalid     string
	ForbiddenTitle, ForbiddenBody string
	NotFound, ServerError         string
	UnsubTitle, UnsubQuestion     string // UnsubQuestion has one %s: the topic
	UnsubAllQuestion, UnsubButton string
	UnsubDone, UnsubAllDone       string // UnsubDone has one %s: the topic
	UnsubRequired                 string
}

// supported lists the page languages; the first is the fallback.
var supported = []language.Tag{
	language.English,
	language.Thai,
	language.Japanese,
	language.Korean,
	language.MustParse("zh-Hant"),
	language.Polish,
}

var matcher = language.NewMatcher(supported)

// texts is indexed like supported.
var texts = []text{
	{ // en
		Title:            "Your message preferences",
		Intro:            "Choose what we send you and where. Changes apply straight away.",
		TopicsLegend:     "Topics",
		TopicsHint:       "Untick anything you no longer want to hear about.",
		RequiredNote:     "Always on: these are messages about your account, such as receipts and security notices.",
		ChannelsLegend:   "Channels",
		ChannelsHint:     "Where we may reach you. Account messages use these channels too.",
		ChannelNames:     map[string]string{"email": "Email", "slack": "Slack"},
		PauseLegend:      "Pause",
		PauseLabel:       "Pause all messages except account messages",
		QuietLegend:      "Quiet hours",
		QuietHint:        "We hold messages during these hours and send them afterwards (time zone: %s). Leave both empty for no quiet hours.",
		QuietFrom:        "From",
		QuietTo:          "Until",
		Save:             "Save preferences",
		Saved:            "Your preferences are saved.",
		QuietInvalid:     "Enter both times for quiet hours, or leave both empty.",
		ForbiddenTitle:   "This link doesn't work",
		ForbiddenBody:    "It may have expired or been changed. Open the most recent message from us and use the link in it.",
		NotFound:         "We couldn't find your preferences.",
		ServerError:      "Something went wrong on our side. Please try again in a few minutes.",
		UnsubTitle:       "Unsubscribe",
		UnsubQuestion:    "Stop receiving “%s”?",
		UnsubAllQuestion: "Pause all messages except account messages?",
		UnsubButton:      "Unsubscribe",
		UnsubDone:        "You won't receive “%s” any more.",
		UnsubAllDone:     "All messages are paused, except account messages.",
		UnsubRequired:    "These are messages about your account, so you can't unsubscribe from them.",
	},
	{ // th
		Title:            "การตั้งค่าการรับข้อความ",
		Intro:            "เลือกได้ว่าต้องการรับเรื่องใด และให้ส่งทางช่องทางไหน การเปลี่ยนแปลงมีผลทันที",
		TopicsLegend:     "หัวข้อ",
		TopicsHint:       "ยกเลิกการเลือกหัวข้อที่คุณไม่ต้องการรับอีก",
		RequiredNote:     "เปิดอยู่เสมอ: ข้อความเกี่ยวกับบัญชีของคุณ เช่น ใบเสร็จและการแจ้งเตือนด้านความปลอดภัย",
		ChannelsLegend:   "ช่องทาง",
		ChannelsHint:     "ช่องทางที่เราใช้ติดต่อคุณ ข้อความเกี่ยวกับบัญชีก็ส่งทางช่องทางเหล่านี้เช่นกัน",
		ChannelNames:     map[string]string{"email": "อีเมล", "slack": "Slack"},
		PauseLegend:      "หยุดชั่วคราว",
		PauseLabel:       "หยุดส่งข้อความทั้งหมดชั่วคราว ยกเว้นข้อความเกี่ยวกับบัญชี",
		QuietLegend:      "ช่วงเวลางดรบกวน",
		QuietHint:        "ในช่วงเวลานี้เราจะพักข้อความไว้และส่งให้หลังจากนั้น (เขตเวลา: %s) เว้นว่างทั้งสองช่องหากไม่ต้องการใช้",
		QuietFrom:        "ตั้งแต่",
		QuietTo:          "ถึง",
		Save:             "บันทึกการตั้งค่า",
		Saved:            "บันทึกการตั้งค่าของคุณแล้ว",
		QuietInvalid:     "กรุณากรอกเวลาทั้งสองช่อง หรือเว้นว่างไว้ทั้งสองช่อง",
		ForbiddenTitle:   "ลิงก์นี้ใช้งานไม่ได้",
		ForbiddenBody:    "ลิงก์อาจหมดอายุหรือถูกแก้ไข กรุณาเปิดข้อความล่าสุดจากเราแล้วใช้ลิงก์ในข้อความนั้น",
		NotFound:         "ไม่พบการตั้งค่าของคุณ",
		ServerError:      "ระบบของเราขัดข้อง กรุณาลองใหม่อีกครั้งในอีกสักครู่",
		UnsubTitle:       "ยกเลิกการรับข้อความ",
		UnsubQuestion:    "ต้องการเลิกรับ “%s” ใช่ไหม",
		UnsubAllQuestion: "ต้องการหยุดรับข้อความทั้งหมด ยกเว้นข้อความเกี่ยวกับบัญชี ใช่ไหม",
		UnsubButton:      "เลิกรับ",
		UnsubDone:        "คุณจะไม่ได้รับ “%s” อีกต่อไป",
		UnsubAllDone:     "หยุดส่งข้อความทั้งหมดแล้ว ยกเว้นข้อความเกี่ยวกับบัญชี",
		UnsubRequired:    "ข้อความเหล่านี้เกี่ยวกับบัญชีของคุณ จึงยกเลิกการรับไม่ได้",
	},
	{ // ja
		Title:            "配信設定",
		Intro:            "受け取る内容と受け取り方法を選べます。変更はすぐに反映されます。",
		TopicsLegend:     "配信内容",
		TopicsHint:       "受け取りたくない内容のチェックを外してください。",
		RequiredNote:     "常に配信：領収書やセキュリティのお知らせなど、アカウントに関する大切なご連絡です。",
		ChannelsLegend:   "連絡方法",
		ChannelsHint:     "ご連絡に使う方法です。アカウントに関するご連絡にも使われます。",
		ChannelNames:     map[string]string{"email": "メール", "slack": "Slack"},
		PauseLegend:      "一時停止",
		PauseLabel:       "アカウントに関するご連絡以外の配信をすべて一時停止する",
		QuietLegend:      "配信しない時間帯",
		QuietHint:        "この時間帯のメッセージはお預かりし、終了後にお送りします（タイムゾーン：%s）。設定しない場合は両方とも空欄にしてください。",
		QuietFrom:        "開始",
		QuietTo:          "終了",
		Save:             "設定を保存",
		Saved:            "設定を保存しました。",
		QuietInvalid:     "開始と終了の両方を入力するか、両方とも空欄にしてください。",
		ForbiddenTitle:   "このリンクは無効です",
		ForbiddenBody:    "有効期限が切れているか、リンクが変更されています。最新のメッセージにあるリンクからもう一度お試しください。",
		NotFound:         "配信設定が見つかりませんでした。",
		ServerError:      "問題が発生しました。しばらくしてからもう一度お試しください。",
		UnsubTitle:       "配信停止",
		UnsubQuestion:    "「%s」の配信を停止しますか？",
		UnsubAllQuestion: "アカウントに関するご連絡以外の配信をすべて停止しますか？",
		UnsubButton:      "配信を停止する",
		UnsubDone:        "「%s」の配信を停止しました。",
		UnsubAllDone:     "アカウントに関するご連絡以外の配信をすべて停止しました。",
		UnsubRequired:    "アカウントに関する大切なご連絡のため、配信を停止できません。",
	},
	{ // ko
		Title:            "알림 설정",
		Intro:            "받고 싶은 소식과 받는 방법을 선택하세요. 변경 사항은 바로 적용됩니다.",
		TopicsLegend:     "받을 소식",
		TopicsHint:       "더 이상 받고 싶지 않은 소식은 선택을 해제하세요.",
		RequiredNote:     "항상 발송: 영수증, 보안 알림 등 계정에 관한 중요한 안내입니다.",
		ChannelsLegend:   "받는 방법",
		ChannelsHint:     "연락드릴 방법입니다. 계정 안내도 이 방법으로 보내 드립니다.",
		ChannelNames:     map[string]string{"email": "이메일", "slack": "Slack"},
		PauseLegend:      "일시 중지",
		PauseLabel:       "계정 안내를 제외한 모든 메시지 일시 중지",
		QuietLegend:      "방해 금지 시간",
		QuietHint:        "이 시간에는 메시지를 보내지 않고, 끝난 뒤에 보내 드립니다(시간대: %s). 사용하지 않으려면 두 칸을 모두 비워 두세요.",
		QuietFrom:        "시작",
		QuietTo:          "종료",
		Save:             "설정 저장",
		Saved:            "설정을 저장했습니다.",
		QuietInvalid:     "시작과 종료 시간을 모두 입력하거나 모두 비워 두세요.",
		ForbiddenTitle:   "이 링크는 사용할 수 없습니다",
		ForbiddenBody:    "링크가 만료되었거나 변경되었습니다. 가장 최근에 받은 메시지의 링크를 이용해 주세요.",
		NotFound:         "설정 정보를 찾을 수 없습니다.",
		ServerError:      "일시적인 문제가 발생했습니다. 잠시 후 다시 시도해 주세요.",
		UnsubTitle:       "수신 거부",
		UnsubQuestion:    "‘%s’ 수신을 거부하시겠어요?",
		UnsubAllQuestion: "계정 안내를 제외한 모든 메시지 수신을 중지하시겠어요?",
		UnsubButton:      "수신 거부",
		UnsubDone:        "‘%s’ 수신을 거부했습니다.",
		UnsubAllDone:     "계정 안내를 제외한 모든 메시지를 중지했습니다.",
		UnsubRequired:    "계정에 관한 중요한 안내라서 수신을 거부할 수 없습니다.",
	},
	{ // zh-Hant
		Title:            "通知偏好設定",
		Intro:            "選擇您想收到的內容和接收方式。變更會立即生效。",
		TopicsLegend:     "通知主題",
		TopicsHint:       "取消勾選不想再收到的主題。",
		RequiredNote:     "一律傳送：收據、安全性通知等與帳戶相關的重要訊息。",
		ChannelsLegend:   "接收管道",
		ChannelsHint:     "我們會透過這些管道聯絡您，帳戶相關訊息也會使用這些管道。",
		ChannelNames:     map[string]string{"email": "電子郵件", "slack": "Slack"},
		PauseLegend:      "暫停",
		PauseLabel:       "暫停所有訊息（帳戶相關訊息除外）",
		QuietLegend:      "勿擾時段",
		QuietHint:        "這段時間內的訊息會先保留，結束後再傳送（時區：%s）。如不需要，請將兩欄都留空。",
		QuietFrom:        "開始",
		QuietTo:          "結束",
		Save:             "儲存設定",
		Saved:            "已儲存您的設定。",
		QuietInvalid:     "請同時填寫開始和結束時間，或將兩欄都留空。",
		ForbiddenTitle:   "此連結無法使用",
		ForbiddenBody:    "連結可能已過期或遭到修改。請開啟我們最近寄給您的訊息，並使用其中的連結。",
		NotFound:         "找不到您的偏好設定。",
		ServerError:      "系統發生問題，請稍後再試。",
		UnsubTitle:       "取消訂閱",
		UnsubQuestion:    "確定不再收到「%s」嗎？",
		UnsubAllQuestion: "確定要暫停所有訊息（帳戶相關訊息除外）嗎？",
		UnsubButton:      "取消訂閱",
		UnsubDone:        "您將不會再收到「%s」。",
		UnsubAllDone:     "已暫停所有訊息（帳戶相關訊息除外）。",
		UnsubRequired:    "這些是與帳戶相關的重要訊息，無法取消訂閱。",
	},
	{ // pl
		Title:            "Ustawienia wiadomości",
		Intro:            "Wybierz, o czym i którędy mamy do Ciebie pisać. Zmiany obowiązują od razu.",
		TopicsLegend:     "Tematy",
		TopicsHint:       "Odznacz tematy, o których nie chcesz już dostawać wiadomości.",
		RequiredNote:     "Zawsze włączone: to ważne wiadomości o Twoim koncie, np. potwierdzenia płatności i alerty bezpieczeństwa.",
		ChannelsLegend:   "Kanały",
		ChannelsHint:     "Tędy możemy się z Tobą kontaktować. Wiadomości o koncie też trafiają tymi kanałami.",
		ChannelNames:     map[string]string{"email": "E-mail", "slack": "Slack"},
		PauseLegend:      "Wstrzymanie",
		PauseLabel:       "Wstrzymaj wszystkie wiadomości oprócz wiadomości o koncie",
		QuietLegend:      "Godziny ciszy",
		QuietHint:        "W tych godzinach wstrzymujemy wiadomości i wysyłamy je później (strefa czasowa: %s). Zostaw oba pola puste, jeśli nie chcesz godzin ciszy.",
		QuietFrom:        "Od",
		QuietTo:          "Do",
		Save:             "Zapisz ustawienia",
		Saved:            "Zapisaliśmy Twoje ustawienia.",
		QuietInvalid:     "Podaj obie godziny albo zostaw oba pola puste.",
		ForbiddenTitle:   "Ten link nie działa",
		ForbiddenBody:    "Mógł wygasnąć albo zostać zmieniony. Otwórz naszą najnowszą wiadomość i skorzystaj z linku, który w niej znajdziesz.",
		NotFound:         "Nie znaleźliśmy Twoich ustawień.",
		ServerError:      "Coś poszło nie tak po naszej stronie. Spróbuj ponownie za kilka minut.",
		UnsubTitle:       "Wypisz się",
		UnsubQuestion:    "Czy chcesz przestać otrzymywać „%s”?",
		UnsubAllQuestion: "Czy chcesz wstrzymać wszystkie wiadomości oprócz wiadomości o koncie?",
		UnsubButton:      "Wypisz mnie",
		UnsubDone:        "Nie będziesz już otrzymywać „%s”.",
		UnsubAllDone:     "Wstrzymaliśmy wszystkie wiadomości oprócz wiadomości o koncie.",
		UnsubRequired:    "To ważne wiadomości o Twoim koncie, dlatego nie można się z nich wypisać.",
	},
}

// pick chooses the page language: the customer's locale first, then what
// the browser asks for, then English.
func pick(customerLocale, acceptLanguage string) (lang string, t text) {
	var prefs []language.Tag
	if tag, err := language.Parse(customerLocale); err == nil {
		prefs = append(prefs, tag)
	}
	if tags, _, err := language.ParseAcceptLanguage(acceptLanguage); err == nil {
		prefs = append(prefs, tags...)
	}
	_, i, conf := matcher.Match(prefs...)
	if conf == language.No {
		i = 0
	}
	return supported[i].String(), texts[i]
}

// humanize turns a topic name like "product-updates" into "Product updates"
// when no label is configured.
func humanize(name string) string {
	s := strings.NewReplacer("-", " ", "_", " ", ".", " ").Replace(name)
	r := []rune(s)
	if len(r) > 0 {
		r[0] = unicode.ToUpper(r[0])
	}
	return string(r)
}

// localized is one text in several locales, looked up the way templates
// pick their locale file: zh-Hant-TW → zh-Hant → zh → the default locale.
type localized struct {
	matcher language.Matcher
	texts   []string // indexed like the matcher's tags: [0] is the default locale's, "" when it has none
}

// newLocalized indexes texts by locale. It returns the keys that are not
// BCP 47 tags or repeat a locale, which it leaves out.
func newLocalized(texts map[string]string, def language.Tag) (localized, []string) {
	if len(texts) == 0 {
		return localized{}, nil
	}
	keys := make([]string, 0, len(texts))
	for k := range texts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	l := localized{texts: []string{""}}
	tags := []language.Tag{def}
	seen := map[string]bool{}
	var bad []string
	for _, k := range keys {
		tag, err := language.Parse(k)
		if err != nil || seen[tag.String()] {
			bad = append(bad, k)
			continue
		}
		seen[tag.String()] = true
		if tag.String() == def.String() {
			l.texts[0] = texts[k]
			continue
		}
		tags = append(tags, tag)
		l.texts = append(l.texts, texts[k])
	}
	l.matcher = language.NewMatcher(tags)
	return l, bad
}

// get returns the text for a locale, "" when neither it nor the default
// locale has one. Any confidence above No is taken, as templates do, so
// zh-Hant-TW reaches a plain zh text while de falls back to the default.
func (l localized) get(tag language.Tag) string {
	if l.matcher == nil {
		return ""
	}
	_, i, conf := l.matcher.Match(tag)
	if conf == language.No || i < 0 || i >= len(l.texts) {
		i = 0
	}
	return l.texts[i]
}

// textLocale is the locale topic labels are looked up in: the customer's
// own when the page speaks its language, so zh-Hant-TW or en-GB keep their
// region, else the page's, so a page never mixes two languages.
func textLocale(customerLocale string, page language.Tag) language.Tag {
	tag, err := language.Parse(customerLocale)
	if err != nil {
		return page
	}
	cb, _ := tag.Base()
	pb, _ := page.Base()
	if cb != pb {
		return page
	}
	return tag
}
