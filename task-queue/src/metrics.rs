//! Queue depth and dead letters as Prometheus gauges, for `/metrics` and autoscaling.
//!
//! `task_queue_ready`, `task_queue_scheduled`, `task_queue_in_flight` and
//! `task_queue_dead`, each labelled `queue` (a backend that cannot know a figure leaves
//! its gauge unset). Recorded through the `metrics` facade that `service_kit::metrics`
//! installs, so they appear on the service's `/metrics`.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::task::{QueueName, QueueStats, SharedQueue};

/// Sets the gauges of `queue` from `stats`.
pub fn record(queue: &QueueName, stats: &QueueStats) {
    let q = queue.as_str().to_owned();
    metrics::gauge!("task_queue_ready", "queue" => q.clone()).set(stats.ready as f64);
    metrics::gauge!("task_queue_dead", "queue" => q.clone()).set(stats.dead as f64);
    if let Some(n) = stats.scheduled {
        metrics::gauge!("task_queue_scheduled", "queue" => q.clone()).set(n as f64);
    }
    if let Some(n) = stats.in_flight {
        metrics::gauge!("task_queue_in_flight", "queue" => q).set(n as f64);
    }
}

/// Polls the stats of `queues` every `every` and records them, until `stop` is cancelled.
/// A failed poll is logged and retried at the next tick.
pub fn spawn_reporter(
    queue: SharedQueue,
    queues: Vec<QueueName>,
    every: Duration,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            for name in &queues {
                match queue.stats(name).await {
                    Ok(stats) => record(name, &stats),
                    Err(e) => {
                        tracing::warn!(queue = %name, error = %e, "task queue: cannot read queue stats")
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_carry_the_queue_label() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let name = QueueName::new("import.file").unwrap();
        let stats = QueueStats {
            ready: 7,
            scheduled: Some(2),
            in_flight: None,
            dead: 1,
        };
        metrics::with_local_recorder(&recorder, || record(&name, &stats));
        let text = handle.render();
        assert!(
            text.contains("task_queue_ready{queue=\"import.file\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("task_queue_dead{queue=\"import.file\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("task_queue_scheduled{queue=\"import.file\"} 2"),
            "{text}"
        );
        assert!(!text.contains("task_queue_in_flight"), "{text}");
    }
}
