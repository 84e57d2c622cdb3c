// SPDX-License-Identifier: MIT OR Apache-2.0
//! The ledger's side of the broker: the stream and bucket it owns, its durable consumer, the
//! batches it fetches and the confirmations it puts.
//!
//! nats-server 2.9 (Debian bookworm's) is supported: async-nats 0.51's `create_key_value`
//! first reads the account's JetStream info and cannot parse 2.9's (no `reserved_memory`), so
//! the bucket's stream is created here with the layout async-nats itself gives a bucket, and
//! opened with `get_key_value`, which 2.9 answers.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, PullConsumer};
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, ErrorCode, Message, kv};
use facegate_fleet::gallery::{GALLERY_STREAM, GALLERY_SUBJECT, LEASE_BUCKET, SNAPSHOT_BUCKET};
use facegate_fleet::health::STATUS_BUCKET;
use facegate_fleet::{
    CONFIRMED_BUCKET, GateId, PASSAGES_STREAM, PASSAGES_SUBJECTS, encode_confirmation,
};
use futures_util::StreamExt;
use tracing::{debug, info, warn};

use crate::LedgerError;

/// The ledger's durable pull consumer on [`PASSAGES_STREAM`].
pub const LEDGER_CONSUMER: &str = "ledger";

/// A gate republishing within this window is dropped by the broker (by `Nats-Msg-Id`); after
/// it, the ledger's primary key drops it.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long the broker keeps passages: long enough for the ledger to be away for a while, the
/// ledger (PostgreSQL) being the record.
const MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// A delivered message not acknowledged for this long is delivered again: longer than a batch
/// takes to commit, short enough that a ledger that died is replaced soon.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// A blocking fetch waits this long for a first message, so a shutdown is seen within it.
const FETCH_EXPIRY: Duration = Duration::from_secs(1);
/// A fetch whose end the client never sees (the broker went away under it) is given up this
/// long past its expiry: async-nats's own guard is 5 s, and none for a no-wait fetch, which
/// would hold the ledger up after every broker restart.
const FETCH_GUARD: Duration = Duration::from_secs(2);
/// All confirmations of one round must be put within this, so a broker that is down does not
/// hold up the batches (the puts are retried next round).
const PUT_GUARD: Duration = Duration::from_secs(2);

/// The passages stream as the ledger wants it.
fn passages_stream() -> stream::Config {
    stream::Config {
        name: PASSAGES_STREAM.into(),
        description: Some("FaceGate: every gate's passages, consumed by the ledger".into()),
        subjects: vec![PASSAGES_SUBJECTS.into()],
        storage: StorageType::File,
        retention: RetentionPolicy::Limits,
        max_age: MAX_AGE,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    }
}

fn confirmations_stream() -> stream::Config {
    bucket_stream(
        CONFIRMED_BUCKET,
        "FaceGate: the ledger's confirmation to each gate",
    )
}

/// The gallery's changes: kept until a snapshot covers them (the office purges them then, so a
/// removed person's embedding leaves the broker with the next snapshot). The same signed change
/// published twice within the window is dropped by its message id (the hash of its bytes).
fn gallery_stream() -> stream::Config {
    stream::Config {
        name: GALLERY_STREAM.into(),
        description: Some(
            "FaceGate: the office's signed gallery changes, in generation order".into(),
        ),
        subjects: vec![GALLERY_SUBJECT.into()],
        storage: StorageType::File,
        retention: RetentionPolicy::Limits,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    }
}

/// A key-value bucket's stream with history 1 on file storage, as async-nats's
/// `create_key_value` lays it out.
fn bucket_stream(bucket: &str, description: &str) -> stream::Config {
    stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(description.into()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        storage: StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: DiscardPolicy::New,
        ..Default::default()
    }
}

/// The snapshots' object store, as async-nats's `create_object_store` lays it out.
fn snapshot_stream() -> stream::Config {
    stream::Config {
        name: format!("OBJ_{SNAPSHOT_BUCKET}"),
        description: Some("FaceGate: the office's latest signed gallery snapshot".into()),
        subjects: vec![
            format!("$O.{SNAPSHOT_BUCKET}.C.>"),
            format!("$O.{SNAPSHOT_BUCKET}.M.>"),
        ],
        storage: StorageType::File,
        discard: DiscardPolicy::New,
        allow_rollup: true,
        allow_direct: true,
        ..Default::default()
    }
}

/// Creates the stream [`PASSAGES_STREAM`] (subjects [`PASSAGES_SUBJECTS`], file storage, limits
/// retention for 30 days, a 2-minute duplicate window) and the key-value bucket
/// [`CONFIRMED_BUCKET`] (history 1, file storage); the office's: the gallery's changes
/// stream, the lease bucket and the snapshots' object store; and the gates' status bucket.
/// Or checks the ones there.
/// Idempotent.
///
/// An existing stream that would lose passages (other subjects, memory storage) is an error;
/// other differences (an operator's longer max age…) are logged and kept.
pub async fn prepare_broker(client: &async_nats::Client) -> Result<(), LedgerError> {
    let js = jetstream::new(client.clone());
    ensure_stream(&js, passages_stream()).await?;
    ensure_stream(&js, confirmations_stream()).await?;
    ensure_stream(&js, gallery_stream()).await?;
    ensure_stream(
        &js,
        bucket_stream(LEASE_BUCKET, "FaceGate: the office's signed lease"),
    )
    .await?;
    ensure_stream(&js, snapshot_stream()).await?;
    ensure_stream(
        &js,
        bucket_stream(STATUS_BUCKET, "FaceGate: each gate's latest heartbeat"),
    )
    .await?;
    Ok(())
}

async fn ensure_stream(js: &jetstream::Context, wanted: stream::Config) -> Result<(), LedgerError> {
    let name = wanted.name.clone();
    match js.get_stream(&name).await {
        Ok(existing) => check_stream(existing.cached_info().config.clone(), &wanted),
        Err(e) if not_found(&e) => match js.create_stream(wanted).await {
            Ok(_) => {
                info!("created JetStream stream {name}");
                Ok(())
            }
            Err(e) => Err(LedgerError::Broker(format!("creating stream {name}: {e}"))),
        },
        Err(e) => Err(LedgerError::Broker(format!("stream {name}: {e}"))),
    }
}

fn not_found(e: &async_nats::jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), GetStreamErrorKind::JetStream(js) if js.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// Refuses a stream the ledger cannot rely on; logs lesser differences.
fn check_stream(found: stream::Config, wanted: &stream::Config) -> Result<(), LedgerError> {
    let name = &wanted.name;
    if found.subjects != wanted.subjects {
        return Err(LedgerError::Incompatible(format!(
            "stream {name} exists with subjects {:?}, the ledger needs {:?}",
            found.subjects, wanted.subjects
        )));
    }
    if found.storage != wanted.storage {
        return Err(LedgerError::Incompatible(format!(
            "stream {name} exists with {:?} storage, the ledger needs file storage (a broker restart would lose memory storage)",
            found.storage
        )));
    }
    // Only what the ledger sets is compared (the server fills in its own defaults for the rest).
    let differences: Vec<String> = [
        (found.retention != wanted.retention).then(|| format!("retention {:?}", found.retention)),
        (!wanted.max_age.is_zero() && found.max_age != wanted.max_age)
            .then(|| format!("max_age {:?}", found.max_age)),
        (!wanted.duplicate_window.is_zero() && found.duplicate_window != wanted.duplicate_window)
            .then(|| format!("duplicate_window {:?}", found.duplicate_window)),
        (wanted.max_messages_per_subject > 0
            && found.max_messages_per_subject != wanted.max_messages_per_subject)
            .then(|| {
                format!(
                    "max_messages_per_subject {}",
                    found.max_messages_per_subject
                )
            }),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !differences.is_empty() {
        warn!(
            "stream {name} exists with {} (not the ledger's defaults); kept",
            differences.join(", ")
        );
    }
    Ok(())
}

/// Connects to the broker, retrying a broker that is not there yet (with back-off, until
/// `shutdown`); a refused user or password is an error at once. Once connected, async-nats
/// reconnects by itself.
pub(crate) async fn connect(
    config: &crate::LedgerConfig,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<Option<async_nats::Client>, LedgerError> {
    let url = config.nats_url.clone();
    let nats_error = |detail: String| LedgerError::Nats {
        url: url.clone(),
        detail,
    };
    let mut backoff = crate::ledger::Backoff::new("NATS");
    loop {
        let mut options = async_nats::ConnectOptions::new()
            .name("facegate-backoffice ledger")
            .max_reconnects(None)
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Disconnected => warn!("NATS: disconnected; reconnecting"),
                    async_nats::Event::Connected => info!("NATS: connected"),
                    // Each failed reconnection attempt is a client error: not a line each.
                    other => debug!("NATS: {other}"),
                }
            });
        if let Some(user) = &config.nats_user {
            options = options.user_and_password(
                user.clone(),
                config.nats_password.clone().unwrap_or_default(),
            );
        }
        if let Some(ca) = &config.nats_tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        match options.connect(config.nats_url.as_str()).await {
            Ok(client) => {
                backoff.recovered();
                return Ok(Some(client));
            }
            Err(e) => match e.kind() {
                async_nats::ConnectErrorKind::ServerParse
                | async_nats::ConnectErrorKind::Authentication
                | async_nats::ConnectErrorKind::AuthorizationViolation
                | async_nats::ConnectErrorKind::Tls => return Err(nats_error(e.to_string())),
                _ => backoff.failed(&format!("NATS at {}: {e}", config.nats_url)),
            },
        }
        if !backoff.wait(shutdown).await {
            return Ok(None);
        }
    }
}

/// Creates the ledger's durable pull consumer, or updates it to this configuration (the
/// broker keeps its position either way): explicit acks, everything from the stream's start,
/// a few batches in flight at most.
pub(crate) async fn ledger_consumer(
    js: &jetstream::Context,
    batch: usize,
) -> Result<PullConsumer, LedgerError> {
    let stream = js
        .get_stream(PASSAGES_STREAM)
        .await
        .map_err(|e| LedgerError::Broker(format!("stream {PASSAGES_STREAM}: {e}")))?;
    let max_ack_pending = i64::try_from(batch.saturating_mul(4)).unwrap_or(i64::MAX);
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(LEDGER_CONSUMER.into()),
            description: Some("FaceGate back office: passages into the ledger".into()),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            max_ack_pending,
            ..Default::default()
        })
        .await
        .map_err(|e| {
            LedgerError::Broker(format!(
                "consumer {LEDGER_CONSUMER} on {PASSAGES_STREAM}: {e}"
            ))
        })
}

/// Opens the confirmations bucket (created by [`prepare_broker`]).
pub(crate) async fn confirmations_bucket(
    js: &jetstream::Context,
) -> Result<kv::Store, LedgerError> {
    js.get_key_value(CONFIRMED_BUCKET)
        .await
        .map_err(|e| LedgerError::Broker(format!("bucket {CONFIRMED_BUCKET}: {e}")))
}

/// The next batch: what is waiting, at once; or, when nothing is, the first message to arrive
/// within [`FETCH_EXPIRY`] and what is waiting behind it. A low rate of passages is written
/// one by one without delay, a backlog in full batches.
pub(crate) async fn next_batch(
    consumer: &PullConsumer,
    max: usize,
) -> Result<Vec<Message>, String> {
    let mut messages = drain(
        consumer.fetch().max_messages(max).messages(),
        Duration::ZERO,
    )
    .await?;
    if messages.is_empty() {
        messages = drain(
            consumer
                .batch()
                .max_messages(1)
                .expires(FETCH_EXPIRY)
                .messages(),
            FETCH_EXPIRY,
        )
        .await?;
        if !messages.is_empty() && max > 1 {
            // A failure here loses nothing: the first message is written, the rest wait.
            match drain(
                consumer.fetch().max_messages(max - 1).messages(),
                Duration::ZERO,
            )
            .await
            {
                Ok(more) => messages.extend(more),
                Err(e) => warn!("fetching from {PASSAGES_STREAM}: {e}"),
            }
        }
    }
    Ok(messages)
}

/// Every message of one pull request. Those received before an error are kept (they are
/// written and acknowledged like any other); the error is returned only when none was.
async fn drain<F, E>(request: F, expiry: Duration) -> Result<Vec<Message>, String>
where
    F: std::future::Future<Output = Result<consumer::pull::Batch, E>>,
    E: std::fmt::Display,
{
    let collect = async {
        let mut batch = request.await.map_err(|e| e.to_string())?;
        let mut messages = Vec::new();
        while let Some(message) = batch.next().await {
            match message {
                Ok(message) => messages.push(message),
                Err(e) if messages.is_empty() => return Err(e.to_string()),
                Err(e) => {
                    warn!("fetching from {PASSAGES_STREAM}: {e}");
                    break;
                }
            }
        }
        Ok(messages)
    };
    tokio::time::timeout(expiry + FETCH_GUARD, collect)
        .await
        .map_err(|_| format!("no answer within {:?}", expiry + FETCH_GUARD))?
}

/// The confirmations the ledger owes the gates: what was put, and what is still to put (after
/// a commit that moved a gate, after a failed put, and every gate at start).
pub(crate) struct Confirmations {
    bucket: kv::Store,
    put: BTreeMap<GateId, u64>,
    pending: BTreeMap<GateId, u64>,
    failing: bool,
}

impl Confirmations {
    pub(crate) fn new(bucket: kv::Store) -> Confirmations {
        Confirmations {
            bucket,
            put: BTreeMap::new(),
            pending: BTreeMap::new(),
            failing: false,
        }
    }

    /// Owes `gate` the confirmation `contiguous`, unless it was the last one put.
    pub(crate) fn owe(&mut self, gate: GateId, contiguous: u64) {
        if self.put.get(&gate) != Some(&contiguous) {
            self.pending.insert(gate, contiguous);
        }
    }

    /// Owes every gate its confirmation again, even one put before.
    pub(crate) fn owe_again(&mut self, gate: GateId, contiguous: u64) {
        self.put.remove(&gate);
        self.owe(gate, contiguous);
    }

    /// Puts what is owed; what fails stays owed (logged once until a put succeeds again).
    pub(crate) async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let bucket = &self.bucket;
        let pending = &mut self.pending;
        let put = &mut self.put;
        let outcome = tokio::time::timeout(PUT_GUARD, async {
            // Removed from `pending` only once put: a put cut short by the guard stays owed.
            while let Some((gate, contiguous)) = pending
                .first_key_value()
                .map(|(gate, c)| (gate.clone(), *c))
            {
                let value = encode_confirmation(contiguous).into();
                if let Err(e) = bucket.put(gate.confirmation_key(), value).await {
                    return Err(format!(
                        "putting {CONFIRMED_BUCKET}.{gate} = {contiguous}: {e}"
                    ));
                }
                pending.remove(&gate);
                put.insert(gate, contiguous);
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "putting confirmations: no answer within {PUT_GUARD:?}"
            ))
        });
        match outcome {
            Ok(()) if self.failing => {
                info!("confirmations: put again");
                self.failing = false;
            }
            Ok(()) => {}
            Err(e) if !self.failing => {
                warn!("{e}; retrying");
                self.failing = true;
            }
            Err(_) => {}
        }
    }
}
