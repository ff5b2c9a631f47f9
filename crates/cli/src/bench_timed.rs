//! Timing of concurrent requests for the bench sections that report requests/s and latency
//! percentiles (identity, discovery).

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};

use super::{err, BenchError};

/// A measured scenario with each request's latency.
pub(super) struct Timed {
    pub(super) name: String,
    pub(super) count: usize,
    pub(super) took: Duration,
    /// Sorted.
    pub(super) latencies: Vec<Duration>,
}

impl Timed {
    pub(super) fn per_sec(&self) -> f64 {
        self.count as f64 / self.took.as_secs_f64()
    }

    /// The `pct`th percentile latency (nearest rank), in milliseconds.
    pub(super) fn latency_ms(&self, pct: usize) -> f64 {
        let n = self.latencies.len();
        if n == 0 {
            return 0.0;
        }
        let rank = (n * pct).div_ceil(100).clamp(1, n);
        self.latencies[rank - 1].as_secs_f64() * 1000.0
    }
}

/// Runs `count` calls of `make(i)` with `concurrency` in flight, timing each; every call must
/// succeed.
pub(super) async fn timed<F, Fut>(
    name: impl Into<String>,
    count: usize,
    concurrency: usize,
    make: F,
) -> Result<Timed, BenchError>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let name = name.into();
    let started = Instant::now();
    let outcomes: Vec<Result<Duration, String>> = stream::iter(0..count)
        .map(|i| {
            let call = make(i);
            async move {
                let t = Instant::now();
                call.await.map(|()| t.elapsed())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let took = started.elapsed();
    let mut latencies = Vec::with_capacity(count);
    let (mut failed, mut first) = (0usize, None);
    for outcome in outcomes {
        match outcome {
            Ok(latency) => latencies.push(latency),
            Err(e) => {
                failed += 1;
                first.get_or_insert(e);
            }
        }
    }
    if let Some(first) = first {
        return Err(err(format!(
            "{name}: {failed} of {count} requests failed, first: {first}"
        )));
    }
    latencies.sort();
    Ok(Timed {
        name,
        count,
        took,
        latencies,
    })
}
