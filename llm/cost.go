package llm

import (
	"strconv"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/filter/accesslog"
)

// AccessLogOperators returns access log format operators for the llm
// filter's calls, for accesslog.Config.Operators:
//
//	%LLM_PROVIDER%        provider chosen (after fallbacks)
//	%LLM_MODEL%           model sent upstream
//	%LLM_REQUEST_MODEL%   model the client asked for
//	%LLM_RESPONSE_MODEL%  model the provider reported
//	%LLM_INPUT_TOKENS%    Usage.InputTokens (cached included)
//	%LLM_OUTPUT_TOKENS%   Usage.OutputTokens
//	%LLM_CACHE_READ_TOKENS%, %LLM_CACHE_WRITE_TOKENS%, %LLM_REASONING_TOKENS%
//	%LLM_COST%            Call.Cost in US dollars ("-" without a price)
//	%LLM_TTFT%            time to first token, ms (streams)
//	%LLM_FALLBACKS%       attempts after the first
//
// Each prints "-" for exchanges the llm filter did not handle. The access
// log must be declared before the llm filter, so that its done phase runs
// after the llm filter's, when usage and cost are final.
func AccessLogOperators() map[string]accesslog.Operator {
	str := func(f func(c *Call) string) accesslog.Operator {
		return accesslog.Operator{Append: func(b []byte, x *filter.Exchange) []byte {
			c := CallOf(x)
			if c == nil {
				return append(b, '-')
			}
			if s := f(c); s != "" {
				return append(b, s...)
			}
			return append(b, '-')
		}}
	}
	num := func(f func(c *Call) int64) accesslog.Operator {
		return accesslog.Operator{Numeric: true, Append: func(b []byte, x *filter.Exchange) []byte {
			c := CallOf(x)
			if c == nil {
				return append(b, '-')
			}
			return strconv.AppendInt(b, f(c), 10)
		}}
	}
	return map[string]accesslog.Operator{
		"LLM_PROVIDER":       str(func(c *Call) string { return c.Provider }),
		"LLM_MODEL":          str(func(c *Call) string { return c.Model }),
		"LLM_REQUEST_MODEL":  str(func(c *Call) string { return c.RequestModel }),
		"LLM_RESPONSE_MODEL": str(func(c *Call) string { return c.ResponseModel }),
		"LLM_INPUT_TOKENS":   num(func(c *Call) int64 { return c.Usage.InputTokens }),
		"LLM_OUTPUT_TOKENS":  num(func(c *Call) int64 { return c.Usage.OutputTokens }),
		"LLM_CACHE_READ_TOKENS": num(func(c *Call) int64 {
			return c.Usage.CacheReadTokens
		}),
		"LLM_CACHE_WRITE_TOKENS": num(func(c *Call) int64 { return c.Usage.CacheWriteTokens }),
		"LLM_REASONING_TOKENS":   num(func(c *Call) int64 { return c.Usage.ReasoningTokens }),
		"LLM_FALLBACKS":          num(func(c *Call) int64 { return int64(c.Fallbacks) }),
		"LLM_COST": {Numeric: true, Append: func(b []byte, x *filter.Exchange) []byte {
			c := CallOf(x)
			if c == nil || !c.Priced {
				return append(b, '-')
			}
			return strconv.AppendFloat(b, c.Cost, 'f', -1, 64)
		}},
		"LLM_TTFT": {Numeric: true, Append: func(b []byte, x *filter.Exchange) []byte {
			c := CallOf(x)
			if c == nil || c.FirstByte.IsZero() || !c.Stream {
				return append(b, '-')
			}
			return strconv.AppendInt(b, c.FirstByte.Sub(x.Start).Milliseconds(), 10)
		}},
	}
}
