//! The two task queues of an import and what travels on them.
//!
//! - `<prefix>.listing`: list one page of one folder ([`ListingTask`]).
//! - `<prefix>.file`: copy one file into storage ([`FileTask`]).
//!
//! The prefix is `IMPORT_QUEUE_PREFIX` (default `import`), so that several deployments
//! (or test runs) can share one broker without taking each other's tasks.
//!
//! A task carries only an id: the row in SQL is the truth, and the task is a
//! reminder to act on it. Dedup keys are `<kind>:<id>:<round>`, so a task made due twice
//! (a listing page redelivered after its commit) is enqueued once on the SQL queue,
//! and "retry failed" (which bumps `round`) gets a fresh task.

use serde::{Deserialize, Serialize};
use task_queue::{NewTask, QueueName, SharedQueue};

use crate::db::DueTasks;

/// The default `IMPORT_QUEUE_PREFIX`.
pub const DEFAULT_QUEUE_PREFIX: &str = "import";

/// The two queues of one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueNames {
    pub listing: QueueName,
    pub file: QueueName,
}

impl QueueNames {
    /// `<prefix>.listing` and `<prefix>.file`; an error names what is wrong with `prefix`.
    pub fn new(prefix: &str) -> task_queue::Result<QueueNames> {
        Ok(QueueNames {
            listing: QueueName::new(format!("{prefix}.listing"))?,
            file: QueueName::new(format!("{prefix}.file"))?,
        })
    }

    pub fn both(&self) -> Vec<QueueName> {
        vec![self.listing.clone(), self.file.clone()]
    }

    /// Declares both queues (idempotent; every process that enqueues or consumes does it).
    pub async fn declare(&self, queue: &SharedQueue) -> task_queue::Result<()> {
        queue.declare(&self.listing).await?;
        queue.declare(&self.file).await
    }

    /// The tasks for `due`, listing pages first.
    pub fn new_tasks(&self, due: &DueTasks) -> task_queue::Result<Vec<NewTask>> {
        let mut tasks = Vec::with_capacity(due.listings.len() + due.items.len());
        for (id, round) in &due.listings {
            tasks.push(
                NewTask::new(
                    &self.listing,
                    &ListingTask {
                        listing_id: id.clone(),
                    },
                )?
                .dedup_key(format!("listing:{id}:{round}"))?,
            );
        }
        for (id, round) in &due.items {
            tasks.push(
                NewTask::new(
                    &self.file,
                    &FileTask {
                        item_id: id.clone(),
                    },
                )?
                .dedup_key(format!("item:{id}:{round}"))?,
            );
        }
        Ok(tasks)
    }

    /// Enqueues the tasks for `due`.
    pub async fn enqueue_due(&self, queue: &SharedQueue, due: &DueTasks) -> task_queue::Result<()> {
        let mut tasks = self.new_tasks(due)?.into_iter().peekable();
        while tasks.peek().is_some() {
            let batch: Vec<NewTask> = tasks.by_ref().take(ENQUEUE_BATCH).collect();
            queue.enqueue_batch(batch).await?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListingTask {
    pub listing_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileTask {
    pub item_id: String,
}

/// Largest batch handed to the queue at once (a 1,000-file page is a few batches).
const ENQUEUE_BATCH: usize = 500;
