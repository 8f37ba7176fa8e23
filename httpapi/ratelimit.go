package httpapi

import (
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxClients bounds the limiter's memory: past it, a new client takes the
// place of an arbitrary one.
const maxClients = 100_000

// limiter is a token bucket per client address, in process memory: a
// client may make perMinute requests at once, then perMinute a minute.
// Each HTTP process limits on its own. The bucket is kept as the time it
// will be full again (GCRA), in whole nanoseconds, so it is exact.
type limiter struct {
	interval time.Duration // one token's worth of time
	burst    time.Duration // the whole bucket's worth
	now      func() time.Time

	mu    sync.Mutex
	full  map[netip.Prefix]time.Time // when each client's bucket is full again
	swept time.Time
}

func newLimiter(perMinute int, now func() time.Time) *limiter {
	interval := time.Minute / time.Duration(perMinute)
	return &limiter{interval: interval, burst: interval * time.Duration(perMinute), now: now, full: map[netip.Prefix]time.Time{}}
}

// allow takes a token for client, or says how long until one is there.
func (l *limiter) allow(client netip.Prefix) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		l.sweep(now)
	}
	full, ok := l.full[client]
	if !ok && len(l.full) >= maxClients {
		for k := range l.full {
			delete(l.full, k)
			break
		}
	}
	if full.Before(now) {
		full = now
	}
	next := full.Add(l.interval)
	if at := next.Add(-l.burst); now.Before(at) {
		return false, at.Sub(now)
	}
	l.full[client] = next
	return true, 0
}

// sweep forgets clients whose bucket is full again: they are
// indistinguishable from new ones.
func (l *limiter) sweep(now time.Time) {
	for k, full := range l.full {
		if !full.After(now) {
			delete(l.full, k)
		}
	}
	l.swept = now
}

// rateLimited answers 429 with Retry-After once a client has used up its
// share of the public, unauthenticated routes.
func (s *server) rateLimited(next http.Handler) http.Handler {
	if s.limiter == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok, wait := s.limiter.allow(clientKey(s.clientIP(r)))
		if !ok {
			secs := max(1, int(math.Ceil(wait.Seconds())))
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			w.Header().Set("Cache-Control", "no-store")
			writeError(w, errStatus(http.StatusTooManyRequests, "rate_limited", "too many requests from this address; retry in "+strconv.Itoa(secs)+"s"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// clientKey is what a client is counted by: its IPv4 address, or the /64
// of its IPv6 address (one subscriber's usual allocation).
func clientKey(a netip.Addr) netip.Prefix {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p
	}
	return netip.PrefixFrom(a, a.BitLen())
}

// clientIP is the peer's address or, when the peer is a trusted proxy, the
// address its X-Forwarded-For names: read from the right, the first hop
// that is not itself a trusted proxy. Without trusted proxies the header
// is ignored, since any client can send it.
func (s *server) clientIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.IPv4Unspecified()
	}
	ip := ap.Addr().Unmap().WithZone("")
	if !s.trustedProxy(ip) {
		return ip
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return ip
		}
		a = a.Unmap().WithZone("")
		if !s.trustedProxy(a) {
			return a
		}
		ip = a
	}
	return ip
}

func (s *server) trustedProxy(a netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
