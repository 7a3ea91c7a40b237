package llm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
)

// Pricing is a pricing table: the price of each model per million tokens,
// in US dollars, as an operator's JSON file holds it:
//
//	{
//	  "models": {
//	    "gpt-4o":            {"input": 2.5, "output": 10, "cache_read": 1.25},
//	    "claude-sonnet-4-5": {"input": 3, "output": 15, "cache_read": 0.3, "cache_write": 3.75},
//	    "llama*":            {"input": 0, "output": 0}
//	  }
//	}
//
// A request is priced by the model sent upstream (Call.Model), else the
// model the provider reported, else the model the client asked for; each
// may also be listed as "provider/model" to price the same model
// differently per provider, which wins over the bare name. Names ending
// in "*" are prefixes (the longest wins). Cost follows Usage's convention:
//
//	cost = ((input − cache_read − cache_write) × input_price
//	        + cache_read × cache_read_price + cache_write × cache_write_price
//	        + output × output_price) / 1e6
//
// where a missing cache price is the input price. A Pricing is immutable
// once given to a Gateway.
type Pricing struct {
	// Models maps a model name, "provider/model" or "prefix*" to its
	// prices.
	Models map[string]Price `json:"models"`

	prefixes []string // compiled: the "prefix*" keys, longest first
}

// Price is a model's price in US dollars per million tokens.
type Price struct {
	Input  float64 `json:"input"`
	Output float64 `json:"output"`
	// CacheRead and CacheWrite price prompt tokens read from and written
	// to the provider's cache; nil means the input price.
	CacheRead  *float64 `json:"cache_read,omitempty"`
	CacheWrite *float64 `json:"cache_write,omitempty"`
}

// LoadPricing reads a pricing table from a JSON file. Unknown fields are
// errors, so that a typo does not silently price a model at zero.
func LoadPricing(path string) (*Pricing, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("llm: pricing: %w", err)
	}
	p, err := ParsePricing(b)
	if err != nil {
		return nil, fmt.Errorf("llm: pricing %s: %w", path, err)
	}
	return p, nil
}

// ParsePricing parses a pricing table in the JSON form of LoadPricing.
func ParsePricing(b []byte) (*Pricing, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p Pricing
	if err := dec.Decode(&p); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Validate reports whether every price is a finite, non-negative number.
func (p *Pricing) Validate() error {
	if len(p.Models) == 0 {
		return errors.New("models: no prices")
	}
	for name, pr := range p.Models {
		if name == "" || strings.Contains(strings.TrimSuffix(name, "*"), "*") {
			return fmt.Errorf("models: %q: a name or a pattern with one trailing *", name)
		}
		for _, v := range []*float64{&pr.Input, &pr.Output, pr.CacheRead, pr.CacheWrite} {
			if v != nil && (*v < 0 || math.IsNaN(*v) || math.IsInf(*v, 0)) {
				return fmt.Errorf("models: %q: prices must be finite and non-negative", name)
			}
		}
	}
	return nil
}

// compile returns a copy of p ready for lookups.
func (p *Pricing) compile() *Pricing {
	c := &Pricing{Models: make(map[string]Price, len(p.Models))}
	for k, v := range p.Models {
		c.Models[k] = v
		if prefix, ok := strings.CutSuffix(k, "*"); ok {
			c.prefixes = append(c.prefixes, prefix)
		}
	}
	slices.SortFunc(c.prefixes, func(a, b string) int { return len(b) - len(a) })
	return c
}

// lookup returns the price of model at provider.
func (p *Pricing) lookup(provider, model string) (Price, bool) {
	if model == "" {
		return Price{}, false
	}
	if pr, ok := p.Models[provider+"/"+model]; ok {
		return pr, true
	}
	if pr, ok := p.Models[model]; ok {
		return pr, true
	}
	for _, prefix := range p.prefixes {
		if strings.HasPrefix(provider+"/"+model, prefix) || strings.HasPrefix(model, prefix) {
			return p.Models[prefix+"*"], true
		}
	}
	return Price{}, false
}

// Cost prices a call's usage: its cost in US dollars and whether the
// model has a price.
func (p *Pricing) Cost(c *Call) (float64, bool) {
	if p == nil {
		return 0, false
	}
	pr, ok := p.lookup(c.Provider, c.Model)
	if !ok {
		if pr, ok = p.lookup(c.Provider, c.ResponseModel); !ok {
			if pr, ok = p.lookup(c.Provider, c.RequestModel); !ok {
				return 0, false
			}
		}
	}
	return pr.cost(c.Usage), true
}

func (pr Price) cost(u Usage) float64 {
	cr, cw := pr.Input, pr.Input
	if pr.CacheRead != nil {
		cr = *pr.CacheRead
	}
	if pr.CacheWrite != nil {
		cw = *pr.CacheWrite
	}
	plain := max(u.InputTokens-u.CacheReadTokens-u.CacheWriteTokens, 0)
	return (float64(plain)*pr.Input + float64(u.CacheReadTokens)*cr + float64(u.CacheWriteTokens)*cw +
		float64(u.OutputTokens)*pr.Output) / 1e6
}

// SetPricing replaces the pricing table, for operators who reload their
// file (on SIGHUP, say); nil removes it. Requests in flight finish with
// the table they started on or the new one. Safe for concurrent use.
func (g *Gateway) SetPricing(p *Pricing) error {
	if p == nil {
		g.pricing.Store(nil)
		return nil
	}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("llm: pricing: %w", err)
	}
	g.pricing.Store(p.compile())
	return nil
}
