//! The one trait both backends implement.

use async_trait::async_trait;

use crate::error::Result;
use crate::task::{ConsumeOptions, Consumer, EnqueueReport, NewTask, QueueName, QueueStats};

/// Which backend serves a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Sqlite,
    Postgres,
    Amqp,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Sqlite => "sqlite",
            BackendKind::Postgres => "postgres",
            BackendKind::Amqp => "amqp",
        }
    }
}

/// A durable, at-least-once task queue.
///
/// Every method is safe to call from many tasks and processes at once. A task is
/// delivered at least once; ordering is not guaranteed.
#[async_trait]
pub trait TaskQueue: Send + Sync + 'static {
    fn kind(&self) -> BackendKind;

    /// Creates the queue (and its dead letters and retry plumbing) if missing, and lets
    /// this handle use it. Enqueueing to or consuming from an undeclared queue is an
    /// [`crate::QueueError::UnknownQueue`] error. Idempotent.
    async fn declare(&self, queue: &QueueName) -> Result<()>;

    /// Enqueues every task or none (SQL: one transaction; AMQP: every message is
    /// confirmed before this returns, and a failure is retried on a new connection, so
    /// an error means "maybe some", never "lost after Ok").
    async fn enqueue_batch(&self, tasks: Vec<NewTask>) -> Result<EnqueueReport>;

    /// Enqueues one task.
    async fn enqueue(&self, task: NewTask) -> Result<EnqueueReport> {
        self.enqueue_batch(vec![task]).await
    }

    /// Starts consuming `queue`.
    async fn consume(
        &self,
        queue: &QueueName,
        options: ConsumeOptions,
    ) -> Result<Box<dyn Consumer>>;

    /// Depth and dead-letter count.
    async fn stats(&self, queue: &QueueName) -> Result<QueueStats>;

    /// Closes connections; later calls fail with [`crate::QueueError::Closed`] or reconnect.
    async fn close(&self);
}
