package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/heraldhq/herald/internal/jsonerr"
)

// maxDepth bounds JSON nesting: deep documents are refused before decoding.
const maxDepth = 32

// readJSON reads a JSON body strictly: JSON content type, size limit,
// valid UTF-8, bounded nesting, no unknown fields, one document.
func readJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return nil, errStatus(http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json")
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errStatus(http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body is larger than %d bytes", limit))
		}
		return nil, errStatus(http.StatusBadRequest, "malformed", "could not read the request body")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, errStatus(http.StatusBadRequest, "malformed", "request body is empty: send a JSON object")
	}
	if !utf8.Valid(body) {
		return nil, errStatus(http.StatusBadRequest, "malformed", "request body is not valid UTF-8")
	}
	if d := depth(body); d > maxDepth {
		return nil, errStatus(http.StatusBadRequest, "malformed", fmt.Sprintf("JSON nested deeper than %d levels", maxDepth))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return nil, errStatus(http.StatusBadRequest, "malformed", jsonerr.Explain(err, body))
	}
	if dec.More() {
		return nil, errStatus(http.StatusBadRequest, "malformed", "request body holds more than one JSON document")
	}
	return body, nil
}

// depth returns the deepest nesting of objects and arrays in a JSON text,
// without decoding it.
func depth(b []byte) int {
	d, deepest, inString, escaped := 0, 0, false, false
	for _, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			d++
			deepest = max(deepest, d)
		case c == '}' || c == ']':
			d--
		}
	}
	return deepest
}
