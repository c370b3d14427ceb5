//! Vitrine Import Service: copies every image of a public Google Drive or Dropbox
//! folder into storage (Flow 2 of the design).
//!
//! # Layout
//! - [`providers`]: Google Drive and Dropbox: the folder-URL parser
//!   ([`providers::folder_url`], the only place a user-supplied URL is read: parsed, never
//!   fetched), the [`providers::ProviderClient`] trait, both clients, and the
//!   transient/permanent classification of every failure.
//!
//! Still to come (issue 5): the `import-api` and `import-worker` binaries, jobs and items
//! in SQL, the task pipeline on `task-queue`, `GET /images`.

pub mod providers;
