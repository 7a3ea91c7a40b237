package filter

import "strings"

// Flags is a set of Envoy response flags: why an exchange ended as it did.
// They travel on the Exchange into access logs (%RESPONSE_FLAGS%) and stats.
type Flags uint32

// Envoy's response flags. The string form of each is Envoy's short code.
const (
	FlagFailedLocalHealthCheck           Flags = 1 << iota // LH
	FlagNoHealthyUpstream                                  // UH
	FlagUpstreamRequestTimeout                             // UT
	FlagLocalReset                                         // LR
	FlagUpstreamRemoteReset                                // UR
	FlagUpstreamConnectionFailure                          // UF
	FlagUpstreamConnectionTermination                      // UC
	FlagUpstreamOverflow                                   // UO
	FlagNoRouteFound                                       // NR
	FlagDelayInjected                                      // DI
	FlagFaultInjected                                      // FI
	FlagRateLimited                                        // RL
	FlagUnauthorizedExternalService                        // UAEX
	FlagRateLimitServiceError                              // RLSE
	FlagDownstreamConnectionTermination                    // DC
	FlagUpstreamRetryLimitExceeded                         // URX
	FlagStreamIdleTimeout                                  // SI
	FlagInvalidEnvoyRequestHeaders                         // IH
	FlagDownstreamProtocolError                            // DPE
	FlagUpstreamMaxStreamDurationReached                   // UMSDR
	FlagNoClusterFound                                     // NC
	FlagOverloadManager                                    // OM
	FlagDownstreamRemoteReset                              // DR
	FlagUpstreamProtocolError                              // UPE
	FlagNoFilterConfigFound                                // NFCF
	FlagDurationTimeout                                    // DT
	flagEnd
)

var flagCodes = [...]string{
	"LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE",
	"DC", "URX", "SI", "IH", "DPE", "UMSDR", "NC", "OM", "DR", "UPE", "NFCF", "DT",
}

// String returns the flags as Envoy prints them: short codes joined by
// commas in Envoy's order, or "-" when no flag is set.
func (f Flags) String() string {
	if f == 0 {
		return "-"
	}
	var b strings.Builder
	for i := 0; Flags(1)<<i < flagEnd; i++ {
		if f&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(flagCodes[i])
		}
	}
	return b.String()
}

// Has reports whether every flag in g is set in f.
func (f Flags) Has(g Flags) bool { return f&g == g }
