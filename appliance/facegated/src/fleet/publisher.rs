// SPDX-License-Identifier: MIT OR Apache-2.0
//! The journal's passages to the back office, in the gate's sequence, a window at a time; the
//! ledger's confirmations back into the journal; and, on the same connection, the heartbeat.
//!
//! The journal is the outbox: nothing is deleted before the ledger confirms it, so the broker
//! may be away for days, or crash and lose what it had acknowledged, and every passage still
//! reaches the ledger. A passage may reach the broker twice (a window resent after an
//! acknowledgement was lost); its UUID is the message id the broker drops repeats by within its
//! duplicate window, and the ledger's key after it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, kv};
use facegate_fleet::{
    CONFIRMED_BUCKET, Decision, DenyReason, GateId, PASSAGE_SCHEMA_VERSION, PassageData,
    PassageEvent, decode_confirmation,
};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::time::{Instant, sleep};
use tracing::{error, info, warn};

use super::FleetConfig;
use crate::journal::JournalConfig;
use crate::journal::outbox::{Confirmed, Outbox, OutboxRow, OutboxState};
use crate::service::StatusCell;

/// How often the journal is looked at for new passages while everything is sent.
const POLL: Duration = Duration::from_millis(200);
/// Back-off between attempts while the broker does not acknowledge.
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// The longest wait before publishing again from the last confirmed passage.
const RESEND_MAX: Duration = Duration::from_secs(3600);

/// Publishes the journal to the fleet until `stopping` turns true and every passage is
/// acknowledged (the service stops deciding first), or until the task is dropped. A journal or
/// a configuration it cannot use is said in one line and ends it: the gate goes on deciding and
/// journalling, and its passages wait in the journal for a restart that can send them.
pub async fn publish_journal(
    config: FleetConfig,
    journal: JournalConfig,
    status: StatusCell,
    stopping: watch::Receiver<bool>,
) {
    let Some(gate) = config.gate_id.clone() else {
        return;
    };
    let outbox = match Outbox::open(&journal) {
        Ok(outbox) => SharedOutbox(Arc::new(Mutex::new(outbox))),
        Err(e) => {
            error!("fleet: {e}: passages stay in the journal");
            return;
        }
    };
    let client = match super::connect(&config, &gate).await {
        Ok(client) => client,
        Err(e) => {
            error!("fleet: {e}: passages stay in the journal");
            return;
        }
    };
    let stream = jetstream::new(client);
    let confirmations = tokio::spawn(follow_confirmations(
        stream.clone(),
        gate.clone(),
        outbox.clone(),
    ));
    let heartbeats = tokio::spawn(super::heartbeat::send_heartbeats(
        stream.clone(),
        gate.clone(),
        config.heartbeat_s,
        status,
        outbox.clone(),
    ));
    publish_in_order(&config, &gate, &stream, &outbox, stopping).await;
    confirmations.abort();
    heartbeats.abort();
}

/// The outbox, used from the runtime's blocking pool: SQLite calls block, for an fsync at most.
#[derive(Clone)]
pub(super) struct SharedOutbox(Arc<Mutex<Outbox>>);

impl SharedOutbox {
    pub(super) async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Outbox) -> Result<T, crate::journal::JournalError> + Send + 'static,
    ) -> Result<T, String> {
        let outbox = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            let mut outbox = outbox.lock().map_err(|_| "the outbox lock is poisoned")?;
            work(&mut outbox).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// Where the publisher stands: what the broker has acknowledged, and when the ledger last
/// confirmed something new.
struct Progress {
    /// Every passage up to here is acknowledged by the broker (or confirmed by the ledger).
    acknowledged: u64,
    confirmed: u64,
    confirmed_moved: Instant,
    resend_after: Duration,
    base_resend_after: Duration,
}

impl Progress {
    fn new(state: OutboxState, resend_after: Duration, now: Instant) -> Progress {
        Progress {
            acknowledged: state.confirmed,
            confirmed: state.confirmed,
            confirmed_moved: now,
            resend_after,
            base_resend_after: resend_after,
        }
    }

    /// Takes the journal's state in; true when the passages the broker acknowledged but the
    /// ledger never confirmed should be published again.
    fn observe(&mut self, state: OutboxState, now: Instant) -> bool {
        if state.confirmed > self.confirmed || self.acknowledged <= state.confirmed {
            // Either the ledger moved, or nothing waits on it: the clock starts again.
            self.confirmed = state.confirmed;
            self.confirmed_moved = now;
            self.resend_after = self.base_resend_after;
        }
        self.acknowledged = self.acknowledged.max(state.confirmed);
        if now.duration_since(self.confirmed_moved) < self.resend_after {
            return false;
        }
        self.acknowledged = self.confirmed;
        self.confirmed_moved = now;
        self.resend_after = (self.resend_after * 2).min(RESEND_MAX);
        true
    }
}

async fn publish_in_order(
    config: &FleetConfig,
    gate: &GateId,
    stream: &jetstream::Context,
    outbox: &SharedOutbox,
    stopping: watch::Receiver<bool>,
) {
    let window = config.window as usize;
    let state = loop {
        match outbox.with(|outbox| outbox.state()).await {
            Ok(state) => break state,
            Err(e) => {
                warn!("fleet: {e}");
                sleep(RETRY_MAX).await;
            }
        }
    };
    info!(
        gate = %gate,
        waiting = state.depth(),
        "fleet: publishing the journal from sequence {}",
        state.confirmed + 1
    );
    let mut progress = Progress::new(
        state,
        Duration::from_secs(config.resend_after_s.into()),
        Instant::now(),
    );
    let mut retry = RETRY_MIN;
    let mut failing: Option<String> = None;
    loop {
        let state = match outbox.with(|outbox| outbox.state()).await {
            Ok(state) => state,
            Err(e) => {
                warn!("fleet: {e}");
                sleep(RETRY_MAX).await;
                continue;
            }
        };
        if progress.observe(state, Instant::now()) {
            info!(
                "fleet: the ledger has confirmed nothing past sequence {} for a while: publishing again from there",
                state.confirmed
            );
        }
        let after = progress.acknowledged;
        let rows = match outbox.with(move |outbox| outbox.after(after, window)).await {
            Ok(rows) => rows,
            Err(e) => {
                warn!("fleet: {e}");
                sleep(RETRY_MAX).await;
                continue;
            }
        };
        if rows.is_empty() {
            if *stopping.borrow() {
                info!("fleet: every passage up to sequence {after} is with the broker");
                return;
            }
            sleep(POLL).await;
            continue;
        }
        let (acknowledged, failure) = publish_window(stream, gate, &rows).await;
        if let Some(sequence) = acknowledged {
            progress.acknowledged = sequence;
        }
        match failure {
            None => {
                if failing.take().is_some() {
                    info!("fleet: the broker acknowledges again");
                }
                retry = RETRY_MIN;
            }
            Some(e) => {
                if failing.is_none() {
                    warn!(
                        "fleet: the broker did not acknowledge sequence {}: {e}; passages wait in the journal",
                        progress.acknowledged + 1
                    );
                }
                failing = Some(e);
                sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Publishes `rows` and waits for their acknowledgements in order: the last sequence
/// acknowledged with every one before it, and what stopped the window, if anything did.
async fn publish_window(
    stream: &jetstream::Context,
    gate: &GateId,
    rows: &[OutboxRow],
) -> (Option<u64>, Option<String>) {
    let subject = gate.passages_subject();
    let mut pending = Vec::with_capacity(rows.len());
    let mut failure = None;
    for row in rows {
        let event = passage_event(gate, row);
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", event.id.as_str());
        match stream
            .publish_with_headers(subject.clone(), headers, event.to_json().into())
            .await
        {
            Ok(ack) => pending.push((row.sequence, ack)),
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        }
    }
    let mut acknowledged = None;
    for (sequence, ack) in pending {
        match ack.await {
            Ok(_) => acknowledged = Some(sequence),
            Err(e) => return (acknowledged, Some(e.to_string())),
        }
    }
    (acknowledged, failure)
}

fn passage_event(gate: &GateId, row: &OutboxRow) -> PassageEvent {
    let passage = &row.passage;
    let reason = passage.reason.as_deref().and_then(|reason| {
        reason
            .parse::<DenyReason>()
            .inspect_err(|_| {
                warn!(
                    "fleet: passage {}: deny reason {reason:?} has no wire name; sent without it",
                    passage.id
                )
            })
            .ok()
    });
    PassageEvent::new(
        passage.id.clone(),
        passage.time,
        PassageData {
            schema_version: PASSAGE_SCHEMA_VERSION,
            gate: gate.clone(),
            sequence: row.sequence,
            decision: match passage.granted {
                true => Decision::Grant,
                false => Decision::Deny,
            },
            reason,
            identity: passage.identity.clone(),
            similarity: passage.similarity,
            gallery_generation: passage.generation,
        },
    )
}

/// Follows this gate's key in the confirmation bucket (its history first: the latest value is
/// applied at once after a restart or a reconnection) and records each value in the journal.
async fn follow_confirmations(stream: jetstream::Context, gate: GateId, outbox: SharedOutbox) {
    let mut said = false;
    loop {
        match watch_confirmations(&stream, &gate, &outbox).await {
            Ok(()) => {}
            Err(e) if !said => {
                warn!("fleet: confirmations: {e}; retrying");
                said = true;
            }
            Err(_) => {}
        }
        sleep(RETRY_MAX).await;
    }
}

async fn watch_confirmations(
    stream: &jetstream::Context,
    gate: &GateId,
    outbox: &SharedOutbox,
) -> Result<(), String> {
    let bucket = stream
        .get_key_value(CONFIRMED_BUCKET)
        .await
        .map_err(|e| format!("bucket {CONFIRMED_BUCKET}: {e}"))?;
    let mut watch = bucket
        .watch_with_history(gate.confirmation_key())
        .await
        .map_err(|e| format!("watching {CONFIRMED_BUCKET}.{gate}: {e}"))?;
    while let Some(entry) = watch.next().await {
        let entry = entry.map_err(|e| format!("watching {CONFIRMED_BUCKET}.{gate}: {e}"))?;
        if entry.operation != kv::Operation::Put {
            continue;
        }
        let sequence = match decode_confirmation(&entry.value) {
            Ok(sequence) => sequence,
            Err(e) => {
                warn!("fleet: {CONFIRMED_BUCKET}.{gate}: {e}; ignored");
                continue;
            }
        };
        match outbox.with(move |outbox| outbox.confirm(sequence)).await? {
            Confirmed::BeyondLast => warn!(
                "fleet: the ledger confirms sequence {sequence}, past this journal's last: is another gate using id {gate}?"
            ),
            Confirmed::Advanced | Confirmed::Unchanged => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(last_sequence: u64, confirmed: u64) -> OutboxState {
        OutboxState {
            last_sequence,
            confirmed,
        }
    }

    #[test]
    fn passages_are_resent_only_while_the_ledger_confirms_nothing_new() {
        let start = Instant::now();
        let after = |s: u64| start + Duration::from_secs(s);
        let mut progress = Progress::new(state(10, 4), Duration::from_secs(60), start);
        progress.acknowledged = 10;
        assert!(!progress.observe(state(10, 4), after(59)));
        assert!(progress.observe(state(10, 4), after(60)));
        assert_eq!(progress.acknowledged, 4, "from the last confirmed one");
        progress.acknowledged = 10;
        assert!(!progress.observe(state(10, 4), after(60 + 119)), "doubled");
        assert!(progress.observe(state(10, 4), after(60 + 120)));
        progress.acknowledged = 10;
        // The ledger moves: the clock and the interval start again.
        assert!(!progress.observe(state(10, 6), after(200)));
        assert_eq!(progress.acknowledged, 10);
        assert!(!progress.observe(state(10, 6), after(259)));
        assert!(progress.observe(state(10, 6), after(260)));
    }

    #[test]
    fn nothing_is_resent_while_nothing_waits_on_the_ledger() {
        let start = Instant::now();
        let mut progress = Progress::new(state(5, 5), Duration::from_secs(60), start);
        assert!(!progress.observe(state(5, 5), start + Duration::from_secs(3600)));
        // A new passage published an hour later gets the whole interval.
        progress.acknowledged = 6;
        assert!(!progress.observe(state(6, 5), start + Duration::from_secs(3659)));
        assert!(progress.observe(state(6, 5), start + Duration::from_secs(3660)));
    }
}
