package httpapi_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/heraldhq/herald/httpapi"
	"github.com/heraldhq/herald/httpapi/centre"
	"github.com/stretchr/testify/require"
)

const specPath = "../api/openapi.yaml"

var httpMethods = []string{"get", "put", "post", "patch", "delete", "head", "options"}

type openAPI struct {
	OpenAPI    string                    `yaml:"openapi"`
	Security   []map[string][]string     `yaml:"security"`
	Paths      map[string]map[string]any `yaml:"paths"`
	Components struct {
		SecuritySchemes map[string]struct {
			Type   string `yaml:"type"`
			Scheme string `yaml:"scheme"`
		} `yaml:"securitySchemes"`
		Schemas map[string]any `yaml:"schemas"`
	} `yaml:"components"`
}

func loadSpec(t *testing.T) (openAPI, any) {
	t.Helper()
	b, err := os.ReadFile(specPath)
	require.NoError(t, err)
	var doc openAPI
	require.NoError(t, yaml.Unmarshal(b, &doc), "api/openapi.yaml parses")
	var raw any
	require.NoError(t, yaml.Unmarshal(b, &raw))
	return doc, raw
}

// operations returns the documented "METHOD /path" pairs.
func (d openAPI) operations() []string {
	var out []string
	for path, item := range d.Paths {
		for m := range item {
			if slices.Contains(httpMethods, m) {
				out = append(out, strings.ToUpper(m)+" "+path)
			}
		}
	}
	slices.Sort(out)
	return out
}

// registeredRoutes reads the patterns server.go registers: every string
// literal handed to api(…), mux.Handle(…) or mux.HandleFunc(…).
func registeredRoutes(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "server.go", nil, 0)
	require.NoError(t, err)
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		switch fn := call.Fun.(type) {
		case *ast.Ident:
			if fn.Name != "api" {
				return true
			}
		case *ast.SelectorExpr:
			if x, ok := fn.X.(*ast.Ident); !ok || x.Name != "mux" || (fn.Sel.Name != "Handle" && fn.Sel.Name != "HandleFunc") {
				return true
			}
		default:
			return true
		}
		if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
			p, err := strconv.Unquote(lit.Value)
			require.NoError(t, err)
			out = append(out, p)
		}
		return true
	})
	require.Greater(t, len(out), 10, "found the routes in server.go")
	return out
}

// notFoundFallback is the pattern that answers unknown /v1 paths.
const notFoundFallback = "/v1/"

func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	t.Parallel()
	doc, _ := loadSpec(t)
	ops := doc.operations()
	for _, pattern := range registeredRoutes(t) {
		if pattern == notFoundFallback {
			continue
		}
		if !strings.Contains(pattern, " ") { // any method: the path must be there
			_, ok := doc.Paths[pattern]
			require.True(t, ok, "route %q is registered in server.go but not documented in %s", pattern, specPath)
			continue
		}
		require.Contains(t, ops, pattern, "route %q is registered in server.go but not documented in %s", pattern, specPath)
	}
}

func TestOpenAPIShape(t *testing.T) {
	t.Parallel()
	doc, raw := loadSpec(t)
	require.True(t, strings.HasPrefix(doc.OpenAPI, "3."), "an OpenAPI 3 document")
	bearer := doc.Components.SecuritySchemes["bearer"]
	require.Equal(t, "http", bearer.Type)
	require.Equal(t, "bearer", bearer.Scheme)
	require.Equal(t, []map[string][]string{{"bearer": {}}}, doc.Security, "bearer tokens by default")
	require.Contains(t, doc.Components.Schemas, "Error")

	// Every /v1 operation can answer 401 with the error shape.
	for path, item := range doc.Paths {
		for m, v := range item {
			if !slices.Contains(httpMethods, m) || !strings.HasPrefix(path, "/v1/") {
				continue
			}
			op, _ := v.(map[string]any)
			responses, _ := op["responses"].(map[string]any)
			require.Contains(t, responses, "401", "%s %s", m, path)
			_, public := op["security"]
			require.False(t, public, "%s %s must not override the bearer requirement", m, path)
		}
	}

	// Every $ref points at something that exists.
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if k == "$ref" {
					ref, _ := x.(string)
					require.True(t, strings.HasPrefix(ref, "#/"), "local refs only: %q", ref)
					var node any = raw
					for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
						m, ok := node.(map[string]any)
						require.True(t, ok, "dangling $ref %q", ref)
						node, ok = m[part]
						require.True(t, ok, "dangling $ref %q", ref)
					}
					continue
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(raw)
}

// TestOpenAPIOperationsExist asks the real handler for every documented
// operation: none may fall through to the not-found fallback or a 405, and
// the status it answers must be one the document lists.
func TestOpenAPIOperationsExist(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *httpapi.Config) {
		c.Centre = centre.New(centre.Config{
			Prefs: c.Engine.Service(), Key: []byte("0123456789abcdef0123456789abcdef"),
			Customer: c.Engine.Service().Customer, Logger: discard(),
		})
	})
	b.putCustomer(t, "c1", `{"email":"ada@example.com"}`)
	doc, _ := loadSpec(t)
	ops := doc.operations()
	// Erase last: the other operations need the customer.
	slices.SortStableFunc(ops, func(a, b string) int {
		return boolInt(strings.HasPrefix(a, "DELETE ")) - boolInt(strings.HasPrefix(b, "DELETE "))
	})
	for _, op := range ops {
		method, path, _ := strings.Cut(op, " ")
		r := req{method: method, path: strings.ReplaceAll(path, "{id}", "c1")}
		if method == http.MethodPut || method == http.MethodPatch || (method == http.MethodPost && strings.HasPrefix(path, "/v1/")) {
			r.body = `{}`
		}
		res := b.do(t, r)
		t.Logf("%s → %d", op, res.status)
		require.NotEqual(t, http.StatusMethodNotAllowed, res.status, "%s: %s", op, res.body)
		require.NotContains(t, string(res.body), "no such endpoint", op)
		require.NotContains(t, string(res.body), "404 page not found", op)
		opDoc, _ := doc.Paths[path][strings.ToLower(method)].(map[string]any)
		responses, _ := opDoc["responses"].(map[string]any)
		require.Contains(t, responses, strconv.Itoa(res.status), "%s answered %d, which the document does not list: %s", op, res.status, res.body)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
