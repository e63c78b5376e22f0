//! A small pool of read-only connections. Callers wait for a free connection asynchronously
//! (a semaphore), then the query runs on tokio's blocking pool, so a read never blocks the
//! runtime. In WAL mode readers see the last commit and never wait for the writer.

use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::Connection;
use tokio::sync::Semaphore;

use crate::config::StoreConfig;
use crate::error::StoreError;
use crate::schema;

#[derive(Debug, Clone)]
pub(crate) struct Readers {
    free: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    pub(crate) fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        let n = config.read_connections.max(1);
        let conns = (0..n)
            .map(|_| schema::open_reader(config))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Readers {
            free: Arc::new(Mutex::new(conns)),
            permits: Arc::new(Semaphore::new(n)),
        })
    }

    /// Runs `query` on a free read connection.
    pub(crate) async fn read<T, F>(&self, query: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        // The semaphore is never closed; a permit guarantees a connection in `free`.
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::WorkerGone)?;
        let free = Arc::clone(&self.free);
        tokio::task::spawn_blocking(move || {
            let conn = free
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop()
                .ok_or(StoreError::WorkerGone)?;
            let result = query(&conn);
            free.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(conn);
            drop(permit);
            result
        })
        .await
        .map_err(|_| StoreError::WorkerGone)?
    }
}
