//! The one error type of the crate. Every variant says what was wrong and, where it
//! helps, what to do; none of them means a task was half-written.

use service_kit::ConfigError;

/// What can go wrong with a queue operation.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A queue name that is not `[a-z0-9._-]{1,100}` (checked before anything is written).
    #[error("invalid queue name `{name}`: {reason}")]
    InvalidQueueName { name: String, reason: &'static str },
    /// A queue that was never declared with [`crate::TaskQueue::declare`].
    #[error("unknown queue `{0}`: declare it first (TaskQueue::declare); nothing was enqueued")]
    UnknownQueue(String),
    /// A task that cannot be enqueued as given (e.g. a dedup key that is too long).
    #[error("invalid task: {0}; nothing was enqueued")]
    InvalidTask(String),
    /// The payload could not be encoded as JSON.
    #[error("cannot encode the task payload as JSON: {0}")]
    Encode(#[source] serde_json::Error),
    /// A delivered payload is not the type the consumer expects.
    #[error("payload of task {task} does not deserialize as {expected}: {source}")]
    Decode {
        task: String,
        expected: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The lease on a delivery expired and the task went to another consumer; the
    /// settle (ack/retry/dead-letter) was refused so that only one consumer completes it.
    #[error("the lease on task {0} was lost (it expired and the task was handed out again); this settle was refused")]
    LeaseLost(String),
    /// The SQL backend's database failed.
    #[error("queue database error: {0}")]
    Sql(#[from] sqlx::Error),
    /// Creating the SQL backend's tables failed.
    #[error("queue migration failed: {0}")]
    Migrate(String),
    /// The broker failed or the connection was lost (and could not be re-made in time).
    #[error("message broker error: {0}")]
    Amqp(#[from] lapin::Error),
    /// The broker refused (nacked) or returned a published message.
    #[error("the broker did not accept the message: {0}")]
    NotConfirmed(String),
    /// A configuration value is missing or malformed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The queue was shut down.
    #[error("the task queue is closed")]
    Closed,
}

impl From<service_kit::db::DbError> for QueueError {
    fn from(e: service_kit::db::DbError) -> Self {
        match e {
            service_kit::db::DbError::Config(c) => QueueError::Config(c),
            other => QueueError::Migrate(other.to_string()),
        }
    }
}

pub type Result<T, E = QueueError> = std::result::Result<T, E>;
