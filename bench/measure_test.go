package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// meter reads what a run costs: the Redis commands it made (INFO
// commandstats, those run inside Lua scripts included) and the CPU time of
// this process and of redis-server.
type meter struct {
	rdb      *redis.Client
	redisPID int
}

// reading is one meter reading.
type reading struct {
	cmds        map[string]int64
	reads       int64   // total_reads_processed: requests redis-server read, a pipeline's commands in as few as one
	self, redis float64 // CPU seconds
	at          time.Time
}

func (m meter) read(b *testing.B) reading {
	r := reading{cmds: redisCommands(b, m.rdb), reads: redisReads(b, m.rdb), self: selfCPU(), at: time.Now()}
	r.redis = cpuSeconds([]int{m.redisPID})[0]
	return r
}

// cost is the difference between two readings, for units messages or
// tasks.
type cost struct {
	units       int
	cmds        commandMix
	reads       int64
	self, redis float64 // CPU seconds
	wall        time.Duration
}

// since returns what was spent from r until now.
func (m meter) since(b *testing.B, r reading, units int) cost {
	now := m.read(b)
	return cost{
		units: units, cmds: commandDelta(r.cmds, now.cmds), reads: now.reads - r.reads,
		self: now.self - r.self, redis: now.redis - r.redis, wall: now.at.Sub(r.at),
	}
}

// readsPerUnit returns the reads redis-server processed per unit: about
// one per round trip.
func (c cost) readsPerUnit() float64 { return float64(c.reads) / float64(c.units) }

// perUnit returns Redis commands per unit.
func (c cost) perUnit() float64 { return float64(c.cmds.total) / float64(c.units) }

// cpuMs returns this process's and redis-server's CPU milliseconds per unit.
func (c cost) cpuMs() (self, redis float64) {
	return c.self / float64(c.units) * 1e3, c.redis / float64(c.units) * 1e3
}

// commands formats the command figure and the most frequent commands.
func (c cost) commands(top int) string {
	return fmt.Sprintf("%.1f Redis commands (%s)", c.perUnit(), c.cmds.top(c.units, top))
}

// selfCPU returns the user+system CPU seconds of this process, all threads.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// clockTick is USER_HZ, the unit of utime and stime in /proc/<pid>/stat;
// 100 on every Linux platform Go supports.
const clockTick = 100

// procStat returns the fields of /proc/<pid>/stat after the command name,
// so that field N of proc(5) is at index N-3.
func procStat(pid int) ([]string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return nil, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	return f, nil
}

// cpuSeconds returns utime+stime of each process in seconds (NaN-free: a
// process that is gone counts as 0).
func cpuSeconds(pids []int) []float64 {
	out := make([]float64, len(pids))
	for i, pid := range pids {
		f, err := procStat(pid)
		if err != nil {
			continue
		}
		u, _ := strconv.ParseFloat(f[14-3], 64)
		s, _ := strconv.ParseFloat(f[15-3], 64)
		out[i] = (u + s) / clockTick
	}
	return out
}

// childPID finds the child process of this one named name whose command line
// holds arg (or ":"+arg).
func childPID(b *testing.B, name, arg string) int {
	entries, err := os.ReadDir("/proc")
	require.NoError(b, err)
	self := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := procStat(pid)
		if err != nil || f[4-3] != self {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(comm)) != name {
			continue
		}
		// redis-server rewrites its command line to "redis-server host:port".
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(cmdline), "\x00"+arg+"\x00") || strings.Contains(string(cmdline), ":"+arg) {
			return pid
		}
	}
	b.Fatalf("no child process %s with argument %s", name, arg)
	return 0
}

// redisReads returns redis-server's total_reads_processed so far.
func redisReads(b *testing.B, rdb *redis.Client) int64 {
	info, err := rdb.Info(context.Background(), "stats").Result()
	require.NoError(b, err)
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_reads_processed:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			require.NoError(b, err)
			return n
		}
	}
	b.Fatal("redis INFO stats has no total_reads_processed")
	return 0
}

// redisCommands returns how many times redis-server has run each command so
// far (those called inside Lua scripts included).
func redisCommands(b *testing.B, rdb *redis.Client) map[string]int64 {
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	require.NoError(b, err)
	out := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		n, err := strconv.ParseInt(calls, 10, 64)
		require.NoError(b, err)
		out[strings.TrimPrefix(name, "cmdstat_")] = n
	}
	return out
}

// commandMix is the Redis commands run between two redisCommands
// snapshots, most frequent first.
type commandMix struct {
	total int64
	calls []commandCalls
}

type commandCalls struct {
	name  string
	calls int64
}

// commandDelta subtracts two redisCommands snapshots; INFO, the meter's
// own command, is left out.
func commandDelta(before, after map[string]int64) commandMix {
	var m commandMix
	for name, n := range after {
		if d := n - before[name]; d > 0 && name != "info" {
			m.calls = append(m.calls, commandCalls{name, d})
			m.total += d
		}
	}
	slices.SortFunc(m.calls, func(a, b commandCalls) int {
		if a.calls != b.calls {
			return int(b.calls - a.calls)
		}
		return strings.Compare(a.name, b.name)
	})
	return m
}

// top lists the n most frequent commands per unit.
func (m commandMix) top(units, n int) string {
	var out []string
	for _, c := range m.calls[:min(len(m.calls), n)] {
		out = append(out, fmt.Sprintf("%s %.1f", c.name, float64(c.calls)/float64(units)))
	}
	return strings.Join(out, ", ")
}

// commandsPerMessage is the Redis command mix per message between two
// redisCommands snapshots: the total and the most frequent commands.
func commandsPerMessage(before, after map[string]int64, count int) string {
	m := commandDelta(before, after)
	return fmt.Sprintf("%.1f Redis commands (inside Lua scripts included): %s", float64(m.total)/float64(count), m.top(count, 8))
}
