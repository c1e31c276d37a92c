//! One shutdown trigger, seen by every task that holds a signal.

use tokio::sync::watch;

/// Fires shutdown. Dropping it fires it too, so a server whose owner is
/// gone does not run on unseen.
#[derive(Debug)]
pub struct Shutdown(watch::Sender<bool>);

/// Tells a task that shutdown was asked for.
#[derive(Clone, Debug)]
pub struct ShutdownSignal(watch::Receiver<bool>);

impl Shutdown {
    /// A trigger and the first of its signals.
    pub fn new() -> (Self, ShutdownSignal) {
        let (tx, rx) = watch::channel(false);
        (Self(tx), ShutdownSignal(rx))
    }

    /// Asks every holder of a signal to stop.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    /// Another signal of this trigger.
    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal(self.0.subscribe())
    }
}

impl ShutdownSignal {
    /// Resolves once shutdown is asked for (at once if it was already).
    /// Cancel safe.
    pub async fn wait(&mut self) {
        // An error means the trigger is gone, which is a shutdown too.
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Whether shutdown was asked for.
    pub fn is_set(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }
}
