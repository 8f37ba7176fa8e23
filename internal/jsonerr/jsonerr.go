// Package jsonerr says what is wrong with a JSON document that failed to
// decode, in the document's terms rather than Go's.
package jsonerr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// Explain says what is wrong with a JSON document that failed to decode
// into a Go value, in the document's terms rather than Go's: where the
// syntax breaks (line and column when the document has several lines), that
// it ends early, which field holds what kind of value instead of what, or
// which field is unknown. doc is the document, for positions; it may be nil.
func Explain(err error, doc []byte) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case doc != nil && len(bytes.TrimSpace(doc)) == 0:
		return "the document is empty: send a JSON value"
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.As(err, &se) && se.Error() == "unexpected end of JSON input":
		return "malformed JSON: the document ends before it is complete (an object, array or string is not closed)"
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON %s: %v", position(doc, se.Offset), se)
	case errors.As(err, &te):
		what := "a value"
		if te.Type != nil {
			what = kindOf(te.Type)
		}
		got := valueName(te.Value)
		if te.Field == "" {
			return fmt.Sprintf("want %s, got %s", what, got)
		}
		return fmt.Sprintf("field %q: want %s, got %s", te.Field, what, got)
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if strings.HasPrefix(msg, "unknown field") {
		return msg + " (not a field of this document)"
	}
	return msg
}

// position names the byte a syntax error's offset points at (offsets
// count from 1) as a line and column, or as a byte when doc is one line.
func position(doc []byte, off int64) string {
	if off < 1 || int(off) > len(doc) || !bytes.Contains(doc, []byte("\n")) {
		return fmt.Sprintf("at byte %d", off)
	}
	before := doc[:off-1]
	line := bytes.Count(before, []byte("\n")) + 1
	col := len(before) - bytes.LastIndexByte(before, '\n')
	return fmt.Sprintf("at line %d, column %d", line, col)
}

// kindOf names the JSON value a Go type takes.
func kindOf(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number, not negative"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a value"
}

// valueName names the JSON value encoding/json describes as v ("string",
// "number", "number 1.5", "bool", "array", "object").
func valueName(v string) string {
	kind, rest, _ := strings.Cut(v, " ")
	switch {
	case kind == "number" && rest != "":
		return "the number " + rest
	case kind == "bool":
		return "true or false"
	case kind == "object" || kind == "array":
		return "an " + kind
	case kind == "":
		return "another value"
	}
	return "a " + v
}
