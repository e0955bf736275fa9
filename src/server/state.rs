//! The state every handler shares: the token store, whichever backend holds
//! it (the SQLite store in the data directory, or PostgreSQL shared by several
//! nodes), behind the store interface.

use super::admission::Admitter;
use super::cache::Change;
use crate::store::any::AnyStore;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    store: Arc<AnyStore>,
    admission: Arc<Admitter>,
}

impl AppState {
    pub fn new(store: Arc<AnyStore>, admission: Arc<Admitter>) -> AppState {
        AppState { store, admission }
    }

    /// The admission cache forgets token `id` at once: a revoke or rotation
    /// made here holds for this node's very next request, whatever the
    /// backend (other nodes hear of it through the store).
    pub fn changed(&self, id: &str) {
        self.admission.forget(&Change::Token(id.to_string()));
    }

    pub fn admission(&self) -> Arc<Admitter> {
        Arc::clone(&self.admission)
    }

    pub fn store(&self) -> &AnyStore {
        &self.store
    }

    pub fn shared(&self) -> Arc<AnyStore> {
        Arc::clone(&self.store)
    }
}
