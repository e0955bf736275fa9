//! The state every handler shares: the token store, whichever backend holds
//! it (the SQLite store in the data directory, or PostgreSQL shared by several
//! nodes), behind the store interface.

use crate::store::any::AnyStore;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    store: Arc<AnyStore>,
}

impl AppState {
    pub fn new(store: Arc<AnyStore>) -> AppState {
        AppState { store }
    }

    pub fn store(&self) -> &AnyStore {
        &self.store
    }

    pub fn shared(&self) -> Arc<AnyStore> {
        Arc::clone(&self.store)
    }
}
