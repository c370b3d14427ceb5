//! Durable, at-least-once task queue with two backends behind one trait.
//!
//! # Layout
//! - [`queue`]: the [`TaskQueue`] trait (declare, enqueue one or a batch, consume, stats).
//! - [`task`]: the values that cross it: [`QueueName`], [`NewTask`] (typed JSON payload,
//!   dedup key, not-before time), [`Delivery`] (ack / retry after a delay / dead-letter /
//!   release, with its attempt number), [`Consumer`], [`QueueStats`].
//! - [`worker`]: the typed consume loop: bounded concurrency, a handler returning an
//!   [`Outcome`] (`Done`, `Retry { after }`, `Failed { reason }`), graceful shutdown.
//! - [`sql`]: SQLite and PostgreSQL backend (the embedded default): a table with leases,
//!   heartbeats and a reaper; `FOR UPDATE SKIP LOCKED` on PostgreSQL; enqueue inside the
//!   caller's transaction ([`sql::SqlQueue::enqueue_in`]).
//! - [`amqp`]: RabbitMQ backend (lapin): durable queues, persistent messages, publisher
//!   confirms, manual acks, prefetch, a dead-letter exchange, TTL retry queues (no
//!   plugin), attempt counting, reconnection.
//! - [`metrics`]: depth and dead-letter gauges (`task_queue_ready{queue}` …) for `/metrics`.
//! - [`config`]: `QUEUE_URL` and friends, and [`config::open`] which picks the backend.
//! - [`error`]: the one error type, [`QueueError`].
//!
//! # Why `sqlx::Any`
//! The SQL backend works on a `sqlx::AnyPool`, the pool type every Vitrine service gets from
//! `service_kit::db`. So the import service can hand its own pool to [`sql::SqlQueue::new`]
//! and enqueue inside its own `Transaction<'_, Any>` ([`sql::SqlQueue::enqueue_in`]): the job row and
//! its first task commit together. What `Any` lacks is handled in SQL text: times are
//! stored as integer milliseconds (no timestamp type in `Any`), and the two dialects get
//! their own claim statement (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite serialises
//! writers, so its single `UPDATE … RETURNING` is already exclusive).
//!
//! The SQL tables (`tq_*`) are created by the crate's own small migration runner with its
//! own version table (`tq_schema_migrations`), not with `sqlx::migrate!`: the queue shares a
//! database with a service whose `sqlx` migrator would otherwise refuse the queue's
//! versions as "applied but missing".
//!
//! # Semantics in one paragraph
//! A task is delivered at least once; every delivery carries its attempt number (1, 2, …).
//! The consumer settles it: `ack` (after its work is committed), `retry(after)` (delivered
//! again no earlier than `after`, attempt + 1), or `dead_letter(reason)`. A consumer that
//! dies without settling loses nothing: SQL leases expire (heartbeats keep live ones) and
//! the reaper returns them; AMQP requeues on channel close. A task delivered more than
//! `max_attempts` times (a crash loop) is dead-lettered by the queue itself. See
//! `docs/task-queue.md` for guarantees, limits and configuration.

pub mod amqp;
pub mod config;
pub mod error;
pub mod metrics;
pub mod queue;
pub mod sql;
pub mod task;
pub mod worker;

pub use config::{open, QueueSettings, QueueUrl};
pub use error::{QueueError, Result};
pub use queue::{BackendKind, TaskQueue};
pub use task::{
    ConsumeOptions, Consumer, Delivery, EnqueueReport, NewTask, QueueName, QueueStats, SharedQueue,
};
pub use worker::{Outcome, TaskInfo, Worker, WorkerReport};
