// Package bench holds herald's end-to-end benchmarks (`make bench`): each
// runs next to bare asynq (a no-op handler on one queue) on the same fresh
// redis-server in the same run, so figures compare as ratios on noisy shared
// machines, and prints its figures next to the project's targets.
// `make bench PROFILE=1` also writes a CPU profile of herald's part of
// BenchmarkMessagePath to bench/cpu.pprof and prints its top.
package bench
