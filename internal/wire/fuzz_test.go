package wire_test

import (
	"bytes"
	"testing"

	"github.com/heraldhq/herald/internal/wire"
)

// FuzzDecode feeds hostile task payloads to every payload type: Decode
// must never panic, and what it accepts must survive a round trip
// unchanged, so a retried task carries exactly what the first run saw.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"id":"m_1","customer_id":"c1","template":"hello","topic":"billing","channels":["email","slack"],"data":{"n":1.5e300,"s":"<!channel>"}}`))
	f.Add([]byte(`{"message_id":"m_1","customer_id":"c1","channel":"email","template":"t","topic":"x","fallback":["slack"]}`))
	f.Add([]byte(`{"journey":"j_1","customer_id":"c1","workflow":"w","version":"v1","step":"s","seq":3}`))
	f.Add([]byte(`{"id":"e_1","customer_id":"c1","name":"trial.started","data":{"a":[1,{"b":null}]}}`))
	f.Add([]byte(`{"id":"m_1"} {"id":"m_2"}`))
	f.Add([]byte(`{"data":{"n":123456789012345678901234567890}}`))
	f.Add([]byte(`{"seq":1e400}`))
	f.Add([]byte("\xff\xfe{}"))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(name string, v any, validate func() error, fresh func() any) {
			if wire.Decode(b, v) != nil {
				return
			}
			if validate != nil {
				_ = validate()
			}
			enc := wire.Encode(v)
			again := fresh()
			if err := wire.Decode(enc, again); err != nil {
				t.Fatalf("%s: re-decoding %s: %v", name, enc, err)
			}
			if enc2 := wire.Encode(again); !bytes.Equal(enc, enc2) {
				t.Fatalf("%s: round trip changed the payload:\n%s\n%s", name, enc, enc2)
			}
		}
		var m wire.Message
		check("Message", &m, func() error { return m.Validate() }, func() any { return new(wire.Message) })
		var d wire.Deliver
		check("Deliver", &d, func() error { _ = d.DeliveryID(); return d.Validate() }, func() any { return new(wire.Deliver) })
		var e wire.Event
		check("Event", &e, nil, func() any { return new(wire.Event) })
		var w wire.Wake
		check("Wake", &w, nil, func() any { return new(wire.Wake) })
	})
}
