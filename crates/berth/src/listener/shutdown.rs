//! The shutdown trigger every listener of the process shares.

use tokio::sync::watch;

/// Resolves [`Shutdown::requested`] on the first SIGTERM/SIGINT (or [`Trigger::fire`]) and
/// [`Shutdown::forced`] on the second: an operator who presses Ctrl-C twice means "now".
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<u32>,
}

/// Fires a [`Shutdown`] by hand (tests, or a process that decides to stop by itself).
pub struct Trigger {
    tx: watch::Sender<u32>,
}

impl Trigger {
    /// Counts as one signal.
    pub fn fire(&self) {
        self.tx.send_modify(|n| *n += 1);
    }
}

impl Shutdown {
    /// A shutdown fired only through the returned [`Trigger`].
    pub fn manual() -> (Trigger, Shutdown) {
        let (tx, rx) = watch::channel(0);
        (Trigger { tx }, Shutdown { rx })
    }

    /// A shutdown fired by SIGTERM and SIGINT. Call inside the runtime.
    pub fn on_signals() -> Shutdown {
        let (trigger, shutdown) = Shutdown::manual();
        tokio::spawn(async move {
            let mut term = Terminate::new();
            loop {
                tokio::select! {
                    r = tokio::signal::ctrl_c() => match r {
                        Ok(()) => tracing::info!("SIGINT received"),
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot listen for SIGINT");
                            std::future::pending::<()>().await;
                        }
                    },
                    () = term.recv() => tracing::info!("SIGTERM received"),
                }
                trigger.fire();
            }
        });
        shutdown
    }

    /// Resolves once shutdown is requested.
    pub async fn requested(self) {
        self.reached(1).await;
    }

    /// Resolves once a second signal asks to stop without waiting for in-flight requests.
    pub async fn forced(self) {
        self.reached(2).await;
    }

    async fn reached(mut self, count: u32) {
        if self.rx.wait_for(|n| *n >= count).await.is_err() {
            // The trigger is gone without firing: nothing can ever request shutdown.
            std::future::pending::<()>().await;
        }
    }
}

/// SIGTERM, registered once so that no signal between two waits is lost.
struct Terminate {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Terminate {
    #[cfg(unix)]
    fn new() -> Terminate {
        use tokio::signal::unix::{signal, SignalKind};
        let signal = signal(SignalKind::terminate())
            .map_err(|e| tracing::warn!(error = %e, "cannot listen for SIGTERM"))
            .ok();
        Terminate { signal }
    }

    #[cfg(not(unix))]
    fn new() -> Terminate {
        Terminate {}
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(s) = self.signal.as_mut() {
            if s.recv().await.is_some() {
                return;
            }
        }
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn first_fire_requests_second_forces() {
        let (trigger, shutdown) = Shutdown::manual();
        let forced = tokio::spawn(shutdown.clone().forced());
        trigger.fire();
        shutdown.clone().requested().await;
        assert!(!forced.is_finished());
        trigger.fire();
        tokio::time::timeout(Duration::from_secs(30), forced)
            .await
            .unwrap()
            .unwrap();
    }
}
