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
    stores: Arc<Stores>,
}

struct Stores {
    dir: PathBuf,
    idle: Mutex<Vec<Store>>,
}

impl Stores {
    fn take(&self) -> Result<Store, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(s) => Ok(s),
            None => Store::open(&self.dir),
        }
    }

    fn give(&self, store: Store) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_MAX {
            idle.push(store);
        }
    }
}

impl AppState {
    /// Opens the store in `dir` once (creating and migrating it) and keeps
    /// that connection as the first of the pool.
    pub fn open(dir: &Path) -> Result<AppState, StoreError> {
        let first = Store::open(dir)?;
        Ok(AppState {
            stores: Arc::new(Stores {
                dir: dir.to_path_buf(),
                idle: Mutex::new(vec![first]),
            }),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.stores.dir
    }

    /// Runs `f` with a store connection on the blocking pool.
    pub async fn with_store<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let stores = Arc::clone(&self.stores);
        tokio::task::spawn_blocking(move || {
            let store = stores.take()?;
            let result = f(&store);
            stores.give(store);
            result
        })
        .await
        .map_err(|e| ApiError::internal(format!("a store task did not finish: {e}")))?
    }
}
