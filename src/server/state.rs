//! The state every handler shares: a small pool of store connections.
//!
//! rusqlite is synchronous, so each request runs its store work on tokio's
//! blocking pool with a connection of its own; SQLite's WAL mode and the
//! store's busy timeout let those connections read and write side by side.

use super::error::ApiError;
use crate::store::{Store, StoreError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// How many idle connections the pool keeps; more are opened under load and
/// closed after.
const IDLE_MAX: usize = 8;

#[derive(Clone)]
pub struct AppState {
    pool: Arc<Pool>,
}

/// Store connections for request handlers: one is taken per task and given
/// back after, so no connection is ever shared between threads at once.
pub struct Pool {
    dir: PathBuf,
    idle: Mutex<Vec<Store>>,
}

impl Pool {
    /// Opens the store in `dir` once (creating and migrating it) and keeps
    /// that connection as the first of the pool.
    pub fn open(dir: &Path) -> Result<Pool, StoreError> {
        let first = Store::open(dir)?;
        Ok(Pool {
            dir: dir.to_path_buf(),
            idle: Mutex::new(vec![first]),
        })
    }

    /// Runs `f` with a connection, on the calling thread (a blocking one).
    pub fn with<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, E>,
    ) -> Result<T, E> {
        let taken = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let store = match taken {
            Some(s) => s,
            None => Store::open(&self.dir)?,
        };
        let result = f(&store);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_MAX {
            idle.push(store);
        }
        result
    }

    /// Runs `f` with a connection on tokio's blocking pool.
    pub async fn run<T, E, F>(self: &Arc<Self>, f: F) -> Result<T, E>
    where
        F: FnOnce(&Store) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let pool = Arc::clone(self);
        match tokio::task::spawn_blocking(move || pool.with(f)).await {
            Ok(r) => r,
            Err(e) => Err(StoreError::Task(e.to_string()).into()),
        }
    }
}

impl AppState {
    pub fn open(dir: &Path) -> Result<AppState, StoreError> {
        Ok(AppState {
            pool: Arc::new(Pool::open(dir)?),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.pool.dir
    }

    pub fn pool(&self) -> Arc<Pool> {
        Arc::clone(&self.pool)
    }

    /// Runs `f` with a store connection on the blocking pool.
    pub async fn with_store<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        self.pool.run(f).await
    }
}
