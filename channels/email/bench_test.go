package email_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/channels/email"
	"github.com/heraldhq/herald/internal/smtpserver"
)

// BenchmarkSend measures throughput and the latency from Send to the server
// accepting the message, with one pooled connection and with four, callers
// sending in parallel.
func BenchmarkSend(b *testing.B) {
	for _, pool := range []int{1, 4} {
		b.Run(fmt.Sprintf("pool=%d", pool), func(b *testing.B) {
			bn := setup(b, smtpserver.Options{}, func(c *email.Config) { c.Pool = pool })

			var mu sync.Mutex
			started := map[string]time.Time{}
			latencies := make([]time.Duration, 0, b.N)
			bn.srv.OnReceive(func(r smtpserver.Received) {
				mu.Lock()
				defer mu.Unlock()
				if t0, ok := started[r.MessageID]; ok {
					latencies = append(latencies, time.Since(t0))
				}
			})

			b.ReportAllocs()
			b.SetParallelism(4) // 4 x GOMAXPROCS callers contend for the pool
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					m := message()
					mu.Lock()
					started[email.MessageID(m.ID, fromDomain)] = time.Now()
					mu.Unlock()
					if _, err := bn.sender.Send(context.Background(), m); err != nil {
						b.Error(err)
						return
					}
				}
			})
			elapsed := time.Since(start)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			if n := len(latencies); n > 0 {
				sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
				b.ReportMetric(float64(latencies[n/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(latencies[n*99/100].Microseconds()), "p99-µs")
			}
			if c := bn.srv.Connections(); c > pool {
				b.Fatalf("%d connections for a pool of %d", c, pool)
			}
		})
	}
}
