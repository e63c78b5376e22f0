//! Republishing mailboxes that another process changed. `mwi-store mailbox purge` deletes in
//! its own process; the store queues each purged mailbox in the same transaction
//! (`Store::take_republish_requests`), and this task drains the queue every [`POLL`] and hands
//! the mailboxes to the MWI side, which PUBLISHes / NOTIFYs their new counts.
//!
//! Polling the store was chosen over a signal to the server: it needs no PID file or
//! permission to signal the server (the admin may run as another user beside a systemd
//! `DynamicUser`), a request made while the server is down is served at its next start, and
//! an empty poll is one read of an empty table, no commit.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::task::TaskTracker;

use crate::server::App;

/// How often the queue is polled: the admin sees the republish within about this long.
pub const POLL: Duration = Duration::from_secs(1);

/// Starts the drain; it ends on shutdown.
pub fn spawn(app: Arc<App>, tracker: &TaskTracker) {
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Log a failing store once, not every second.
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = app.shutdown.cancelled() => return,
            }
            match app.store.take_republish_requests().await {
                Ok(mailboxes) => {
                    failing = false;
                    for mailbox in mailboxes {
                        tracing::info!(mailbox, "mailbox changed by the admin CLI: republishing");
                        app.mailbox_changed(&mailbox);
                    }
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::error!(error = %e, "cannot read republish requests; mailboxes purged with the admin CLI are republished once the store is readable again. Check the database file");
                }
                Err(_) => {}
            }
        }
    });
}
