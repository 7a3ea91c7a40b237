// Package accesslog owns Portico's access logs: Envoy's file and stream
// access loggers as a filter.DoneFilter.
//
// New compiles an Envoy format string (Config.Format, DefaultFormat when
// empty) or a JSON format (Config.JSON) once into a list of operators, and
// starts one writer goroutine owned by the Logger. Per exchange, OnDone
// applies Envoy's access log filters (status, duration, response flags,
// sampling), formats the entry into a pooled buffer and queues it; it never
// blocks the request path: when the bounded queue is full the entry is
// dropped and counted (Logger.Dropped). Close writes what is queued and joins
// the goroutine.
//
// Supported operators: %START_TIME% and %START_TIME(strftime)%,
// %REQ(X?Y):Z%, %RESP(X?Y):Z%, %TRAILER(X?Y):Z%, %PROTOCOL%,
// %RESPONSE_CODE%, %RESPONSE_CODE_DETAILS%, %RESPONSE_FLAGS%,
// %BYTES_RECEIVED%, %BYTES_SENT%, %DURATION%, %REQUEST_DURATION%,
// %RESPONSE_DURATION%, %UPSTREAM_HOST%, %UPSTREAM_CLUSTER%,
// %UPSTREAM_TRANSPORT_FAILURE_REASON%, %DOWNSTREAM_REMOTE_ADDRESS%,
// %DOWNSTREAM_LOCAL_ADDRESS%, %REQUESTED_SERVER_NAME%, %ROUTE_NAME%,
// %UPSTREAM_REQUEST_ATTEMPT_COUNT% and %% for a literal percent sign. Any
// operator takes a :N suffix that truncates its value to N bytes. Missing
// values print "-", as in Envoy. REQ understands the pseudo-headers :method,
// :path, :authority and :scheme; a header with several values prints its
// first. START_TIME is in UTC, as Envoy prints it.
//
// Timings are in whole milliseconds from Exchange.Start: DURATION to the end
// of the exchange, REQUEST_DURATION to the last byte of the request body
// (Exchange.RequestEnd; "-" when the body was not read to its end),
// RESPONSE_DURATION to the response headers written downstream.
// RESPONSE_CODE_DETAILS is Exchange.Details, or "via_upstream" for an
// upstream's response passed on unchanged. UPSTREAM_TRANSPORT_FAILURE_REASON
// is set for UF and UC exchanges: the underlying error, or the reason in the
// local reply's details when the reply does not carry it, with spaces as
// underscores.
//
// A minimal use:
//
//	logger, err := accesslog.New(accesslog.Config{Output: os.Stdout})
//	if err != nil {
//		return err
//	}
//	defer logger.Close()
//	chain, err := filter.NewChain(logger, other)
package accesslog
