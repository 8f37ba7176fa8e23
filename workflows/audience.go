package workflows

import (
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
	"github.com/heraldhq/herald"
)

// Audience is a compiled audience filter: an expression over customer.*
// in the language of branch conditions, true for the customers it selects.
type Audience struct {
	Source  string
	program *vm.Program
}

var audienceEnv = map[string]any{"customer": map[string]any{}}

// CompileAudience compiles a filter such as
// `customer.plan == "pro" && customer.locale startsWith "ja"`. An empty
// filter selects everyone. A compile error names the column.
func CompileAudience(src string) (*Audience, error) {
	a := &Audience{Source: strings.TrimSpace(src)}
	if a.Source == "" {
		return a, nil
	}
	prog, err := expr.Compile(a.Source, expr.Env(audienceEnv), expr.AsBool(), expr.DisableBuiltin("now"))
	if err != nil {
		return nil, herald.Errorf(herald.EInvalid, "filter: %s", exprMessage(err))
	}
	a.program = prog
	return a, nil
}

// Match reports whether the customer described by env (see CustomerEnv)
// is in the audience. A filter that fails on one customer's data (a
// missing attribute compared with a number, say) does not select them;
// the error says why, so a listing can show it.
func (a *Audience) Match(env map[string]any) (bool, error) {
	if a == nil || a.program == nil {
		return true, nil
	}
	out, err := expr.Run(a.program, map[string]any{"customer": env})
	if err != nil {
		return false, fmt.Errorf("filter on customer %v: %s", env["id"], firstLine(err.Error()))
	}
	b, _ := out.(bool)
	return b, nil
}

// CustomerEnv is what a filter sees as customer: every attribute, then id,
// email, slack_user_id, locale, timezone, created_at (RFC 3339), paused,
// topics (topic → whether the customer receives it now) and channels
// (channel → switched on). The named fields win over attributes of the same
// name; attributes are also under customer.attributes.
func CustomerEnv(c herald.Customer, paused bool, topics map[string]bool, channels map[herald.Channel]bool) map[string]any {
	env := make(map[string]any, len(c.Attributes)+11)
	maps.Copy(env, c.Attributes)
	attrs := c.Attributes
	if attrs == nil {
		attrs = map[string]any{}
	}
	ch := make(map[string]any, len(channels))
	for k, v := range channels {
		ch[string(k)] = v
	}
	tp := make(map[string]any, len(topics))
	for k, v := range topics {
		tp[k] = v
	}
	env["id"], env["email"], env["slack_user_id"] = c.ID, c.Email, c.SlackUserID
	env["locale"], env["timezone"] = c.Locale, c.Timezone
	env["created_at"] = c.CreatedAt.UTC().Format(time.RFC3339)
	env["paused"], env["topics"], env["channels"], env["attributes"] = paused, tp, ch, attrs
	return env
}
