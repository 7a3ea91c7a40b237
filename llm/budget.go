package llm

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// Budget caps the tokens or the cost of the requests in its Scope per
// fixed Window, separately from rate limits: where a Limit smooths a rate,
// a Budget is an allowance that resets all at once ("$50 per key per
// day").
//
// Windows are aligned to the Unix epoch (a 24h window resets at 00:00
// UTC). A request is admitted while the window's usage is below the
// budget; its tokens or cost are charged when it ends, so the last
// requests admitted may take a window over its budget by their own usage
// (the same in-flight slack as Limit), and an admitted stream is never
// cut. Over budget the gateway answers 429 in the client's schema with a
// Retry-After until the window resets. Cost comes from the pricing table
// (Config.Pricing); requests for models without a price cost nothing.
// With Config.Redis budgets are shared by the replicas.
type Budget struct {
	// Name identifies the budget; required and unique among limits and
	// budgets.
	Name string `json:"name"`
	Scope
	// Window is the budget's period (24*time.Hour; in JSON "24h");
	// required, at least a second.
	Window time.Duration `json:"window"`
	// Tokens is the budget in tokens (input plus output). Set exactly one
	// of Tokens and Cost.
	Tokens int64 `json:"tokens,omitempty"`
	// Cost is the budget in US dollars.
	Cost float64 `json:"cost,omitempty"`
}

// UnmarshalJSON reads Window as a Go duration string ("24h").
func (b *Budget) UnmarshalJSON(data []byte) error {
	type plain Budget
	aux := struct {
		*plain
		Window jsonDuration `json:"window"`
	}{plain: (*plain)(b)}
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	b.Window = time.Duration(aux.Window)
	return nil
}

func (b *Budget) validate() error {
	switch {
	case b.Window < time.Second:
		return fmt.Errorf("window: %v: at least 1s", b.Window)
	case b.Tokens < 0 || b.Cost < 0 || math.IsNaN(b.Cost) || math.IsInf(b.Cost, 0):
		return errors.New("tokens and cost must be positive numbers")
	case (b.Tokens > 0) == (b.Cost > 0):
		return errors.New("set exactly one of tokens and cost")
	case b.Cost > 9e9:
		return fmt.Errorf("cost: %v is too large", b.Cost)
	}
	return b.Scope.validate()
}

type compiledBudget struct {
	name     string
	scope    scope
	window   time.Duration
	measure  uint8
	capacity int64 // tokens, or nano-dollars
}

func compileBudget(b Budget) compiledBudget {
	cb := compiledBudget{name: b.Name, scope: compileScope(b.Scope), window: b.Window, measure: measureTokens, capacity: b.Tokens}
	if b.Cost > 0 {
		cb.measure, cb.capacity = measureCost, int64(math.Round(b.Cost*1e9))
	}
	return cb
}
