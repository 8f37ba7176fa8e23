// Package bench holds herald's end-to-end benchmarks (`make bench`): bare
// asynq against herald's message path on the same fresh redis-server in the
// same run, so figures compare as ratios on noisy shared machines.
package bench
