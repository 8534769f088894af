//! Following consent's change stream (`WatchConsentChanges`, from the checker's
//! [`ConsentSource`](super::ConsentSource)) to keep the cache current and its
//! freshness confirmed.
//!
//! This is not the kit's durable [`Follower`](crate::follower::Follower): the
//! cursor lives in memory, the stream starts at the newest change, and
//! OUT_OF_RANGE resets the cache where a durable follower must stop; the two
//! share the reconnect core, [`Backoff`].
//!
//! The first stream opens at the newest change; every later one resumes after the
//! cursor, so nothing is missed or applied twice across reconnects. A stream that
//! ends, fails or stays silent longer than the freshness bound (the server sends
//! heartbeats far more often) is reopened after a backoff. OUT_OF_RANGE means the
//! cursor is beyond consent's newest change: its database was replaced, so what the
//! cache holds describes another history and is dropped.

use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};
use tracing::Instrument;

use super::checker::ConsentChecker;
use super::metrics::Counters;
use crate::follower::Backoff;

/// The first wait before reopening a broken stream; doubled after each failure.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// The longest wait before reopening; short, since checks fail closed meanwhile.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How one stream ended.
#[derive(Debug)]
enum Ended {
    /// The server closed it, or it broke.
    Broken { received: bool, code: Option<Code> },
    /// Nothing arrived for longer than the freshness bound.
    Silent { received: bool },
    /// The cursor is beyond consent's newest change.
    OutOfRange,
}

impl ConsentChecker {
    /// Follows consent's change stream until `cancel` fires: run it as a background
    /// task (`GrpcServer::spawn_background("consent-checker", |cancel|
    /// checker.clone().follow(cancel))`). Until its first response arrives, and
    /// whenever the stream has been silent longer than the freshness bound, every
    /// check answers "not granted".
    pub async fn follow(self, cancel: CancellationToken) {
        let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
        loop {
            let ended = tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                ended = self.follow_one_stream() => ended,
            };
            let inner = self.inner();
            let received = match ended {
                Ended::OutOfRange => {
                    tracing::warn!(
                        cursor = ?inner.cache.cursor(),
                        "consent change cursor out of range (consent's database was replaced?); \
                         dropping the cache and starting at the newest change"
                    );
                    inner.freshness.forget();
                    inner.cache.reset();
                    Counters::bump(&inner.counters.resets);
                    // The server answered: reopening at the newest change may
                    // succeed at once.
                    true
                }
                Ended::Broken {
                    received: received @ true,
                    code: Some(Code::Unavailable),
                }
                | Ended::Broken {
                    received,
                    code: None,
                } => {
                    // The server closed the stream (UNAVAILABLE after it had
                    // answered: feeds end so at shutdown): it is shutting down or
                    // restarting (a rolling update), which is no fault. A stream
                    // that could not even open is an outage, warned of below.
                    tracing::info!(cursor = ?inner.cache.cursor(), "consent change stream closed by the server; reopening");
                    received
                }
                Ended::Broken { received, code } => {
                    tracing::warn!(?code, cursor = ?inner.cache.cursor(), "consent change stream broke; reopening");
                    received
                }
                Ended::Silent { received } => {
                    tracing::warn!(cursor = ?inner.cache.cursor(), "consent change stream went silent; reopening");
                    received
                }
            };
            Counters::bump(&inner.counters.reconnects);
            if received {
                backoff.reset();
            }
            let wait = backoff.next_wait();
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Opens one stream after the cursor (or at the newest change) and applies
    /// what it delivers until it ends.
    async fn follow_one_stream(&self) -> Ended {
        let inner = self.inner();
        // A stream silent for longer than the bound is of no use: checks fail closed.
        let silence_limit = inner.freshness.bound();
        // A span of its own, so the stream's calls carry a trace context.
        let span = tracing::info_span!("consent_checker_follow");
        let opened = tokio::time::timeout(
            silence_limit,
            inner.source.watch(inner.cache.cursor()).instrument(span),
        );
        let mut stream = match opened.await {
            Ok(Ok(stream)) => stream,
            Ok(Err(status)) => return ended_by(&status, false),
            Err(_elapsed) => return Ended::Silent { received: false },
        };
        let mut received = false;
        loop {
            match tokio::time::timeout(silence_limit, stream.next()).await {
                Ok(Some(Ok(response))) => {
                    received = true;
                    let applied = inner.cache.apply(&response);
                    // Confirmed only once applied: a check that sees the cache
                    // fresh also sees every change the confirming response held.
                    inner.freshness.confirm();
                    Counters::add(&inner.counters.changes_applied, applied.changes);
                    Counters::add(&inner.counters.erasures, applied.erasures);
                    if applied.erasures > 0 {
                        tracing::info!(
                            erasures = applied.erasures,
                            position = applied.cursor,
                            "customer erased; consent cache emptied"
                        );
                    }
                }
                Ok(None) => {
                    return Ended::Broken {
                        received,
                        code: None,
                    };
                }
                Ok(Some(Err(status))) => return ended_by(&status, received),
                Err(_elapsed) => return Ended::Silent { received },
            }
        }
    }
}

fn ended_by(status: &Status, received: bool) -> Ended {
    match status.code() {
        Code::OutOfRange => Ended::OutOfRange,
        code => Ended::Broken {
            received,
            code: Some(code),
        },
    }
}
