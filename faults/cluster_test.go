//go:build cluster

package faults_test

import (
	"context"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/redistest"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// startCluster starts three redis-server masters on loopback ports and
// joins them into one Redis Cluster with redis-cli.
func startCluster(t *testing.T) []string {
	t.Helper()
	var addrs []string
	for i := 0; i < 3; i++ {
		rs := redistest.Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000", "--appendonly", "yes", "--appendfsync", "everysec")
		addrs = append(addrs, rs.Addr)
	}
	cli, err := exec.LookPath("redis-cli")
	require.NoError(t, err, "redis-cli not found: install redis-tools (Debian: apt-get install -y redis-tools)")
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	require.NoError(t, err, "redis-cli --cluster create: %s", out)

	// Every node must agree the cluster is up before anyone writes.
	deadline := time.Now().Add(30 * time.Second)
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		for {
			info, err := c.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			require.True(t, time.Now().Before(deadline), "cluster did not come up: %v %s", err, info)
			time.Sleep(100 * time.Millisecond)
		}
		_ = c.Close()
	}
	return addrs
}

// TestCluster runs messages and journeys through three workers on a Redis
// Cluster, once undisturbed and once with a worker killed (-9) mid-load.
func TestCluster(t *testing.T) {
	t.Parallel()
	for _, sc := range []scenario{
		{name: "cluster", customers: customerSpec{n: 200, slack: slackHalf}, load: mixed, within: 2 * time.Minute},
		{
			name: "clusterkill9", customers: customerSpec{n: 200, slack: slackHalf}, load: dupLoad,
			inject: func(t *testing.T, r *rig, _ *redistest.Server, n int) {
				r.waitDelivered(n/4, time.Minute)
				r.kill(0, syscall.SIGKILL)
				time.Sleep(time.Second)
				r.restart(0)
			},
			within: 3 * time.Minute, dupRate: 0.001,
		},
		{
			name: "clusterwatchdog", customers: customerSpec{n: 200, slack: slackHalf},
			load: scenarioByName("watchdog").load, inject: scenarioByName("watchdog").inject, within: 2 * time.Minute,
		},
	} {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			addrs := startCluster(t)
			r := newRig(t, sc.name, []string{"HERALD_REDIS_CLUSTER_ADDRS=" + strings.Join(addrs, ",")},
				asynq.RedisClusterClientOpt{Addrs: addrs})
			run(t, r, nil, sc)
		})
	}
}

func scenarioByName(name string) scenario {
	for _, sc := range scenarios {
		if sc.name == name {
			return sc
		}
	}
	panic("no scenario " + name)
}
