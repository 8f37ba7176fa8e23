package jsonerr

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestExplain(t *testing.T) {
	type inner struct {
		N int `json:"n"`
	}
	type doc struct {
		Data  map[string]any `json:"data"`
		Names []string       `json:"names"`
		Name  string         `json:"name"`
		On    bool           `json:"on"`
		Count uint           `json:"count"`
		In    inner          `json:"in"`
	}
	for _, c := range []struct{ doc, want string }{
		{`{"data": 5}`, `field "data": want an object, got a number`},
		{`{"names": "x"}`, `field "names": want an array, got a string`},
		{`{"name": {}}`, `field "name": want a string, got an object`},
		{`{"on": "yes"}`, `field "on": want true or false, got a string`},
		{`{"count": -1}`, `field "count": want a whole number, not negative, got the number -1`},
		{`{"in": {"n": 1.5}}`, `field "in.n": want a whole number, got the number 1.5`},
		{`{"in": {"n": [1]}}`, `field "in.n": want a whole number, got an array`},
		{`{"name": true}`, `field "name": want a string, got true or false`},
		{`[1]`, `want an object, got an array`},
		{`{"data": {}`, `malformed JSON: the document ends before it is complete (an object, array or string is not closed)`},
		{`{"name": "x`, `malformed JSON: the document ends before it is complete (an object, array or string is not closed)`},
		{`garbage`, `malformed JSON at byte 1: invalid character 'g' looking for beginning of value`},
		{"{\n  \"name\": \"x\",\n  \"on\": tru\n}", `malformed JSON at line 3, column 12: invalid character '\n' in literal true (expecting 'e')`},
		{"{\n  \"name\": 'x'\n}", `malformed JSON at line 2, column 11: invalid character '\'' looking for beginning of value`},
		{`{"nme": "x"}`, `unknown field "nme" (not a field of this document)`},
		{" \n", `the document is empty: send a JSON value`},
	} {
		for _, how := range []string{"Unmarshal", "Decoder"} {
			var v doc
			var err error
			if how == "Unmarshal" {
				err = json.Unmarshal([]byte(c.doc), &v)
			} else {
				dec := json.NewDecoder(strings.NewReader(c.doc))
				dec.DisallowUnknownFields()
				err = dec.Decode(&v)
			}
			if err == nil {
				if c.want[:7] == "unknown" && how == "Unmarshal" {
					continue // Unmarshal ignores unknown fields
				}
				t.Errorf("%s %s: no error", how, c.doc)
				continue
			}
			if got := Explain(err, []byte(c.doc)); got != c.want {
				t.Errorf("%s %s:\n got %s\nwant %s", how, c.doc, got, c.want)
			}
		}
	}
}
