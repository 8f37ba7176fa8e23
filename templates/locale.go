package templates

import (
	"fmt"
	"time"

	"golang.org/x/text/language"
)

// Labels are the few words the layout adds around a message, in the
// message's language.
type Labels struct {
	Preferences string // link to the preference centre
	Unsubscribe string // one-click unsubscribe link
}

var labels = map[string]Labels{
	"en": {"Manage preferences", "Unsubscribe"},
	"th": {"จัดการการรับข่าวสาร", "ยกเลิกการรับข่าวสาร"},
	"ja": {"配信設定", "配信停止"},
	"ko": {"수신 설정 관리", "수신 거부"},
	"zh": {"管理通知偏好", "取消訂閱"},
	"pl": {"Zarządzaj preferencjami", "Wypisz się"},
}

func labelsFor(tag language.Tag) Labels {
	base, _ := tag.Base()
	if l, ok := labels[base.String()]; ok {
		return l
	}
	return labels["en"]
}

// direction is the HTML dir attribute for a locale's script.
func direction(tag language.Tag) string {
	script, _ := tag.Script()
	switch script.String() {
	case "Arab", "Hebr", "Thaa", "Syrc", "Nkoo", "Adlm", "Rohg", "Mand", "Samr":
		return "rtl"
	}
	return "ltr"
}

// dateStyle writes a date (and optionally a time) the way the language's
// medium style does. Go's time package only knows English month names, so
// the six languages herald ships with get a small table; others use English.
type dateStyle struct {
	date func(t time.Time) string
	time func(t time.Time) string
	join string
}

var (
	plMonths = [12]string{"sty", "lut", "mar", "kwi", "maj", "cze", "lip", "sie", "wrz", "paź", "lis", "gru"}
	thMonths = [12]string{"ม.ค.", "ก.พ.", "มี.ค.", "เม.ย.", "พ.ค.", "มิ.ย.", "ก.ค.", "ส.ค.", "ก.ย.", "ต.ค.", "พ.ย.", "ธ.ค."}
)

func hhmm(t time.Time) string { return t.Format("15:04") }

func ampm(am, pm string) func(t time.Time) string {
	return func(t time.Time) string {
		p := am
		if t.Hour() >= 12 {
			p = pm
		}
		return p + t.Format("3:04")
	}
}

var dateStyles = map[string]dateStyle{
	"en": {
		date: func(t time.Time) string { return t.Format("Jan 2, 2006") },
		time: func(t time.Time) string { return t.Format("3:04 PM") },
		join: ", ",
	},
	"pl": {
		date: func(t time.Time) string { return fmt.Sprintf("%d %s %d", t.Day(), plMonths[t.Month()-1], t.Year()) },
		time: hhmm,
		join: ", ",
	},
	// Thai dates use the Buddhist era (CLDR's preferred calendar for TH).
	"th": {
		date: func(t time.Time) string { return fmt.Sprintf("%d %s %d", t.Day(), thMonths[t.Month()-1], t.Year()+543) },
		time: func(t time.Time) string { return hhmm(t) + " น." },
		join: " เวลา ",
	},
	"ja": {
		date: func(t time.Time) string { return fmt.Sprintf("%d年%d月%d日", t.Year(), t.Month(), t.Day()) },
		time: hhmm,
		join: " ",
	},
	"ko": {
		date: func(t time.Time) string { return fmt.Sprintf("%d년 %d월 %d일", t.Year(), t.Month(), t.Day()) },
		time: ampm("오전 ", "오후 "),
		join: " ",
	},
	"zh": {
		date: func(t time.Time) string { return fmt.Sprintf("%d年%d月%d日", t.Year(), t.Month(), t.Day()) },
		time: ampm("上午", "下午"),
		join: " ",
	},
}

func formatDate(tag language.Tag, t time.Time, withTime bool) string {
	base, _ := tag.Base()
	st, ok := dateStyles[base.String()]
	if !ok {
		st = dateStyles["en"]
	}
	if !withTime {
		return st.date(t)
	}
	return st.date(t) + st.join + st.time(t)
}
