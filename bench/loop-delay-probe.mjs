// Preloaded into the server process by bench/healthz-under-load.ts (`node --import <this file> tutti.js up ...`):
// measures the server's own event-loop delay, which no HTTP client can see from outside. On SIGUSR2 it writes what
// it saw since the previous SIGUSR2 (or since start) to $TUTTI_BENCH_LOOP_DELAY_FILE and starts afresh.
import { renameSync, writeFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const file = process.env.TUTTI_BENCH_LOOP_DELAY_FILE;
if (file) {
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  process.on('SIGUSR2', () => {
    const ms = (ns) => ns / 1e6;
    const stats = { p50_ms: ms(histogram.percentile(50)), p99_ms: ms(histogram.percentile(99)), max_ms: ms(histogram.max), mean_ms: ms(histogram.mean), count: histogram.count };
    // Written whole under another name first: the reader never sees half a file.
    writeFileSync(`${file}.part`, JSON.stringify(stats));
    renameSync(`${file}.part`, file);
    histogram.reset();
  });
}
