// SPDX-License-Identifier: MIT OR Apache-2.0
//! The ledger's loop: fetch a batch, write it in one transaction, acknowledge it, confirm.
//!
//! The order is what makes it exactly once: a message is acknowledged only after its batch is
//! committed (so the broker redelivers anything not written), and a confirmation is put only
//! after the commit (so a gate never deletes a journal row the ledger does not hold).

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, Message};
use facegate_fleet::{GateId, PASSAGES_STREAM, PassageEvent};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::broker::{self, Confirmations};
use crate::store::{self, Passage, Rejection, Store, Written};
use crate::{LedgerConfig, LedgerError};

/// The first retry's delay; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The longest passage id taken (a UUID is 36 characters).
const MAX_ID_CHARS: usize = 128;

/// Runs the ledger until `shutdown` is cancelled, then returns `Ok(())` once the batch in hand
/// is written and acknowledged (or, with the database down, handed back to the broker).
///
/// Shutdown is a [`CancellationToken`] so one signal handler (or test) can stop several tasks
/// and each sees it between batches, within about a second.
///
/// Outages are waited out, never a reason to return: an unreachable broker or database is
/// retried with back-off (up to 5 s, one log line per outage). It returns an error only for
/// what retrying cannot mend: a bad configuration, a refused NATS user, a stream it cannot
/// use, a database schema newer than this build.
pub async fn run(config: LedgerConfig, shutdown: CancellationToken) -> Result<(), LedgerError> {
    if config.batch == 0 {
        return Err(LedgerError::Config("batch must be at least 1".into()));
    }
    let postgres = store::parse_connection(&config.postgres)?;
    let Some(client) = broker::connect(&config, &shutdown).await? else {
        return Ok(());
    };
    let js = jetstream::new(client.clone());
    let mut backoff = Backoff::new("JetStream");
    let (consumer, bucket) = loop {
        let ready = async {
            broker::prepare_broker(&client).await?;
            let consumer = broker::ledger_consumer(&js, config.batch).await?;
            let bucket = broker::confirmations_bucket(&js).await?;
            Ok::<_, LedgerError>((consumer, bucket))
        };
        match ready.await {
            Ok(ready) => break ready,
            Err(e @ LedgerError::Broker(_)) => backoff.failed(&e.to_string()),
            Err(e) => return Err(e),
        }
        if !backoff.wait(&shutdown).await {
            return Ok(());
        }
    };
    backoff.recovered();
    let mut confirmations = Confirmations::new(bucket);
    let mut ledger = Ledger {
        postgres,
        store: None,
        backoff: Backoff::new("PostgreSQL"),
    };
    if !ledger.open(&shutdown, &mut confirmations).await? {
        return Ok(());
    }
    info!(
        "ledger: consuming {PASSAGES_STREAM} (consumer {}) into PostgreSQL",
        broker::LEDGER_CONSUMER
    );
    let mut fetching = Backoff::new("fetching");
    while !shutdown.is_cancelled() {
        confirmations.flush().await;
        let messages = match broker::next_batch(&consumer, config.batch).await {
            Ok(messages) => {
                fetching.recovered();
                messages
            }
            Err(e) => {
                fetching.failed(&format!("fetching from {PASSAGES_STREAM}: {e}"));
                if !fetching.wait(&shutdown).await {
                    break;
                }
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let batch = parse_batch(&messages);
        let Some(written) = ledger.write(&batch, &shutdown, &mut confirmations).await? else {
            // Shut down with the database away: the broker gives these to the next ledger now
            // rather than after the ack wait.
            for message in &messages {
                let _ = message.ack_with(AckKind::Nak(None)).await;
            }
            break;
        };
        acknowledge(&messages, &batch.rejected).await;
        debug!(
            "batch of {}: {} new, {} duplicates, {} rejected",
            messages.len(),
            written.inserted,
            written.duplicates,
            batch.rejections.len()
        );
        for (gate, contiguous) in written.contiguous {
            confirmations.owe(gate, contiguous);
        }
    }
    confirmations.flush().await;
    info!("ledger: stopped");
    Ok(())
}

/// The database side of the loop: the store, reopened after any failure.
struct Ledger {
    postgres: tokio_postgres::Config,
    store: Option<Store>,
    backoff: Backoff,
}

impl Ledger {
    /// Opens the store, retrying until it opens; every gate's confirmation is owed again, so
    /// a gate that missed a put (during the outage, or before a restart) gets it. False if
    /// shut down first.
    async fn open(
        &mut self,
        shutdown: &CancellationToken,
        confirmations: &mut Confirmations,
    ) -> Result<bool, LedgerError> {
        loop {
            let opened = async {
                let store = Store::open(&self.postgres).await?;
                let gates = store.gates().await?;
                Ok::<_, LedgerError>((store, gates))
            };
            match opened.await {
                Ok((store, gates)) => {
                    for (gate, contiguous) in gates {
                        confirmations.owe_again(gate, contiguous);
                    }
                    self.store = Some(store);
                    self.backoff.recovered();
                    return Ok(true);
                }
                Err(e @ LedgerError::Postgres(_)) => self.backoff.failed(&e.to_string()),
                Err(e) => return Err(e),
            }
            if !self.backoff.wait(shutdown).await {
                return Ok(false);
            }
        }
    }

    /// Writes the batch, however long the database is away; None if shut down first.
    async fn write(
        &mut self,
        batch: &Batch,
        shutdown: &CancellationToken,
        confirmations: &mut Confirmations,
    ) -> Result<Option<Written>, LedgerError> {
        loop {
            let store = match self.store.as_mut() {
                Some(store) if !store.is_closed() => store,
                _ => {
                    self.store = None;
                    if !self.open(shutdown, confirmations).await? {
                        return Ok(None);
                    }
                    continue;
                }
            };
            match store.write(&batch.passages, &batch.rejections).await {
                Ok(written) => {
                    self.backoff.recovered();
                    return Ok(Some(written));
                }
                Err(e @ LedgerError::Postgres(_)) => {
                    self.backoff
                        .failed(&format!("writing a batch (not acknowledged): {e}"));
                    // Reopened whatever went wrong: a fresh connection costs little.
                    self.store = None;
                }
                Err(e) => return Err(e),
            }
            if !self.backoff.wait(shutdown).await {
                return Ok(None);
            }
        }
    }
}

/// One fetched batch, parsed: `rejected[i]` says whether message i was rejected.
struct Batch {
    passages: Vec<Passage>,
    rejections: Vec<Rejection>,
    rejected: Vec<bool>,
}

fn parse_batch(messages: &[Message]) -> Batch {
    let mut batch = Batch {
        passages: Vec::with_capacity(messages.len()),
        rejections: Vec::new(),
        rejected: Vec::with_capacity(messages.len()),
    };
    for message in messages {
        let subject = message.subject.as_str();
        let stream_sequence = message
            .info()
            .ok()
            .and_then(|info| i64::try_from(info.stream_sequence).ok());
        match parse(subject, &message.payload) {
            Ok(passage) => {
                batch.passages.push(passage);
                batch.rejected.push(false);
            }
            Err(error) => {
                let at =
                    stream_sequence.map_or_else(String::new, |n| format!(" (stream sequence {n})"));
                warn!("rejected {subject}{at}: {error}");
                batch.rejections.push(Rejection {
                    subject: without_nul(subject),
                    stream_sequence,
                    error: without_nul(&error),
                    payload: message.payload.to_vec(),
                });
                batch.rejected.push(true);
            }
        }
    }
    batch
}

/// Checks one message: a passage event of the gate its subject names, that fits the ledger's
/// columns. The error says what is wrong.
fn parse(subject: &str, payload: &[u8]) -> Result<Passage, String> {
    let gate = GateId::from_passages_subject(subject)
        .ok_or("the subject is not facegate.passages.<gate id>")?;
    let event = PassageEvent::from_json(payload).map_err(|e| e.to_string())?;
    let data = event.data;
    if data.gate != gate {
        return Err(format!(
            "the payload is a passage of gate {}, the subject names gate {gate}",
            data.gate
        ));
    }
    let id = event.id;
    if id.is_empty() || id.chars().count() > MAX_ID_CHARS || id.chars().any(char::is_control) {
        return Err(format!(
            "passage id {id:?}: must be 1 to {MAX_ID_CHARS} characters, none a control character"
        ));
    }
    let sequence = i64::try_from(data.sequence)
        .map_err(|_| format!("sequence {} is beyond the ledger's 2^63-1", data.sequence))?;
    let generation = i64::try_from(data.gallery_generation).map_err(|_| {
        format!(
            "gallery generation {} is beyond the ledger's 2^63-1",
            data.gallery_generation
        )
    })?;
    // PostgreSQL's text cannot hold NUL; JSON can ("\u0000").
    if data.identity.as_deref().is_some_and(|i| i.contains('\0')) {
        return Err("identity contains a NUL character".into());
    }
    Ok(Passage {
        id,
        gate,
        sequence,
        decision: data.decision,
        reason: data.reason,
        identity: data.identity,
        similarity: data.similarity,
        generation,
        time: event.time,
    })
}

fn without_nul(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

/// Acknowledges a committed batch: passages with an ack, rejected messages with a term (never
/// to be delivered again). A lost ack costs only a redelivery, which the primary key absorbs.
async fn acknowledge(messages: &[Message], rejected: &[bool]) {
    let mut failed = None;
    for (message, rejected) in messages.iter().zip(rejected) {
        let kind = match rejected {
            true => AckKind::Term,
            false => AckKind::Ack,
        };
        if let Err(e) = message.ack_with(kind).await {
            failed.get_or_insert(e.to_string());
        }
    }
    if let Some(e) = failed {
        warn!(
            "acknowledging a written batch: {e}; the broker will redeliver it (no harm: duplicates are dropped)"
        );
    }
}

/// Retry pacing for one kind of outage, with its logging: one line when it starts (and when
/// its error changes), one when it is over.
pub(crate) struct Backoff {
    what: &'static str,
    delay: Duration,
    failing: Option<String>,
}

impl Backoff {
    pub(crate) fn new(what: &'static str) -> Backoff {
        Backoff {
            what,
            delay: BACKOFF_START,
            failing: None,
        }
    }

    pub(crate) fn failed(&mut self, error: &str) {
        if self.failing.as_deref() != Some(error) {
            warn!(
                "{error}; retrying (every {}s at most)",
                BACKOFF_MAX.as_secs()
            );
            self.failing = Some(error.to_owned());
        }
    }

    pub(crate) fn recovered(&mut self) {
        if self.failing.take().is_some() {
            info!("{}: working again", self.what);
        }
        self.delay = BACKOFF_START;
    }

    /// Sleeps the current delay and doubles it; false if `shutdown` came first.
    pub(crate) async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.delay;
        self.delay = (self.delay * 2).min(BACKOFF_MAX);
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use facegate_fleet::{Decision, PASSAGE_SCHEMA_VERSION, PassageData};

    fn event(gate: &str, sequence: u64) -> PassageEvent {
        PassageEvent::new(
            "0193b3c4-0000-7000-8000-000000000001".into(),
            "2026-12-02T08:15:02Z".parse().unwrap(),
            PassageData {
                schema_version: PASSAGE_SCHEMA_VERSION,
                gate: gate.parse().unwrap(),
                sequence,
                decision: Decision::Grant,
                reason: None,
                identity: Some("p-1".into()),
                similarity: Some(0.9),
                gallery_generation: 3,
            },
        )
    }

    #[test]
    fn a_passage_of_the_subjects_gate_is_taken() {
        let passage = parse("facegate.passages.north-3", &event("north-3", 7).to_json()).unwrap();
        assert_eq!((passage.gate.as_str(), passage.sequence), ("north-3", 7));
    }

    #[test]
    fn each_refusal_says_what_is_wrong() {
        let cases: [(&str, Vec<u8>, &str); 5] = [
            ("facegate.passages.north-3", b"{".to_vec(), "passage event"),
            ("facegate.passages.a.b", event("a", 1).to_json(), "subject"),
            (
                "facegate.passages.north-3",
                event("south-1", 1).to_json(),
                "subject names gate north-3",
            ),
            (
                "facegate.passages.north-3",
                event("north-3", u64::MAX).to_json(),
                "beyond",
            ),
            (
                "facegate.passages.north-3",
                {
                    let mut e = event("north-3", 1);
                    e.data.identity = Some("a\0b".into());
                    e.to_json()
                },
                "NUL",
            ),
        ];
        for (subject, payload, expected) in cases {
            let Err(error) = parse(subject, &payload) else {
                panic!("{subject} {expected}: accepted");
            };
            assert!(error.contains(expected), "{error}");
            assert!(!error.contains('\n'), "{error}");
        }
    }
}
