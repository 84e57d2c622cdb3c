// SPDX-License-Identifier: MIT OR Apache-2.0
//! `facegatectl bench fleet`: the fleet's numbers with real servers on loopback (nats-server,
//! PostgreSQL) and the gate's and the office's own code in-process:
//!
//! - a gate's backlog (a journal of `--backlog` passages, as after days offline) published to
//!   the broker while the ledger is away, then absorbed by the ledger, then confirmed back into
//!   the journal; the rates of each, and the servers' CPU time and memory meanwhile;
//! - gallery changes from the office to `--gates` followers: the time from the office's
//!   acknowledged publish to the last gate's gallery switch, for enrolments and removals.
//!
//! Results go in docs/BENCHMARKS.md ("Fleet").

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use facegate_backoffice::office::Office;
use facegate_backoffice::{CancellationToken, LedgerConfig};
use facegate_fleet::GateId;
use facegate_fleet::gallery::{Embedding, Person, TrustedKeys};
use facegate_fleet_servers::{NatsServer, Postgres};
use facegate_vision::gallery::Gallery;
use facegated::fleet::gallery::held_generation;
use facegated::fleet::{FleetConfig, GalleryLease};
use facegated::journal::outbox::Outbox;
use facegated::journal::{Journal, JournalConfig, NewPassage, Retention};
use procfs::process::Process;
use serde_json::json;

use super::{Stats, ms};

#[derive(Args, Debug)]
pub struct FleetArgs {
    /// Passages in the gate's backlog (a busy gate's week offline is about 100,000)
    #[arg(long, default_value_t = 100_000)]
    pub backlog: u64,
    /// Gallery enrolments timed (each removed again, and that timed too)
    #[arg(long, default_value_t = 30)]
    pub changes: usize,
    /// Gates following the office's gallery
    #[arg(long, default_value_t = 3)]
    pub gates: usize,
    /// Machine-readable results (default: docs/bench/fleet.json in the repository)
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

const DIM: usize = 128;
const MODEL: &str = "bench-embedder";
const POLL: Duration = Duration::from_millis(2);

/// A process and its children's CPU time so far, and their resident memory now (KiB).
pub(super) fn usage(pid: u32) -> anyhow::Result<(Duration, u64)> {
    let ticks = procfs::ticks_per_second() as f64;
    let root = Process::new(pid as i32).context("the server's /proc entry")?;
    let mut processes = vec![root];
    for process in procfs::process::all_processes()?.flatten() {
        if process.stat().is_ok_and(|stat| stat.ppid == pid as i32) {
            processes.push(process);
        }
    }
    let (mut cpu, mut rss) = (0.0, 0);
    for process in processes {
        let Ok(stat) = process.stat() else { continue };
        cpu += (stat.utime + stat.stime) as f64 / ticks;
        if let Ok((resident, _)) = super::memory_kib(&process) {
            rss += resident;
        }
    }
    Ok((Duration::from_secs_f64(cpu), rss))
}

/// Polls `done` every [`POLL`] until it holds or `within` passes; returns how long it took.
fn until(
    within: Duration,
    mut done: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while !done()? {
        if start.elapsed() > within {
            bail!("not done within {within:?}");
        }
        std::thread::sleep(POLL);
    }
    Ok(start.elapsed())
}

fn backlog_journal(path: &Path, passages: u64) -> anyhow::Result<JournalConfig> {
    let config = JournalConfig {
        path: path.to_path_buf(),
        ..JournalConfig::default()
    };
    let mut journal = Journal::open_with(&config, Retention::AgeOnceConfirmed)?;
    for i in 0..passages {
        let granted = i % 4 != 0;
        journal.record(&NewPassage {
            track: Some(i),
            identity: Some(format!("p-{}", i % 5000)),
            label: None,
            similarity: Some(0.62),
            granted,
            reason: (!granted).then(|| "low-confidence".to_owned()),
            generation: 1,
            video_time_ns: None,
            token: None,
        })?;
    }
    Ok(config)
}

struct Backlog {
    publish: Duration,
    absorb: Duration,
    /// From the ledger holding the last passage to the journal knowing it.
    confirm: Duration,
    nats_cpu: Duration,
    nats_rss_kib: u64,
    postgres_cpu: Duration,
    postgres_rss_kib: u64,
}

fn measure_backlog(
    runtime: &tokio::runtime::Runtime,
    scratch: &Path,
    passages: u64,
    out: &mut impl Write,
) -> anyhow::Result<Backlog> {
    writeln!(out, "journalling {passages} passages (the backlog)")?;
    let journal = backlog_journal(&scratch.join("journal.sqlite"), passages)?;
    let nats = NatsServer::start("")?;
    let postgres = Postgres::start()?;
    let nats_pid = nats.pid().context("nats-server is not running")?;
    let postgres_pid = postgres.pid()?;
    runtime.block_on(async {
        let client = async_nats::connect(nats.url()).await?;
        facegate_backoffice::prepare_broker(&client).await?;
        anyhow::Ok(())
    })?;
    let gate: GateId = "bench-gate".parse()?;
    let fleet = FleetConfig {
        enabled: true,
        gate_id: Some(gate),
        servers: vec![nats.url()],
        ..FleetConfig::default()
    };
    let (nats_cpu_before, _) = usage(nats_pid)?;
    let (postgres_cpu_before, _) = usage(postgres_pid)?;

    // The gate comes back online while the ledger is away: its backlog goes to the broker.
    let (stop_publishing, stopping) = tokio::sync::watch::channel(false);
    let publisher = runtime.spawn(facegated::fleet::publish_journal(
        fleet,
        journal.clone(),
        // The bench gate's heartbeat says what a gate that decides nothing would.
        facegated::service::StatusCell::new(facegate_dbus::Stats::default()),
        stopping,
    ));
    let js = runtime.block_on(async {
        anyhow::Ok(async_nats::jetstream::new(
            async_nats::connect(nats.url()).await?,
        ))
    })?;
    let in_stream = || {
        runtime.block_on(async {
            let mut stream = js.get_stream(facegate_fleet::PASSAGES_STREAM).await?;
            anyhow::Ok(stream.info().await?.state.messages)
        })
    };
    let publish = until(Duration::from_secs(1800), || Ok(in_stream()? >= passages))?;
    writeln!(
        out,
        "  gate -> broker: {passages} passages in {:.1} s",
        publish.as_secs_f64()
    )?;

    // The ledger comes back.
    let stop_ledger = CancellationToken::new();
    let ledger = {
        let config = LedgerConfig {
            nats_url: nats.url(),
            postgres: postgres.connection_string(),
            ..LedgerConfig::default()
        };
        runtime.spawn(facegate_backoffice::run(config, stop_ledger.clone()))
    };
    let connection = postgres.connection_string();
    // Nothing yet until the ledger has made its tables.
    let contiguous = || {
        runtime.block_on(async {
            let gaps = facegate_backoffice::gaps(&connection).await;
            anyhow::Ok(gaps.map_or(0, |gaps| gaps.first().map_or(0, |gate| gate.contiguous)))
        })
    };
    let absorb = until(Duration::from_secs(1800), || Ok(contiguous()? >= passages))?;
    writeln!(
        out,
        "  broker -> ledger: {passages} passages in {:.1} s",
        absorb.as_secs_f64()
    )?;
    let outbox = Outbox::open(&journal)?;
    let confirm = until(Duration::from_secs(600), || {
        Ok(outbox.state()?.confirmed >= passages)
    })?;
    let (nats_cpu_after, nats_rss_kib) = usage(nats_pid)?;
    let (postgres_cpu_after, postgres_rss_kib) = usage(postgres_pid)?;
    let _ = stop_publishing.send(true);
    stop_ledger.cancel();
    runtime.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(5), publisher).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), ledger).await;
    });
    Ok(Backlog {
        publish,
        absorb,
        confirm,
        nats_cpu: nats_cpu_after.saturating_sub(nats_cpu_before),
        nats_rss_kib,
        postgres_cpu: postgres_cpu_after.saturating_sub(postgres_cpu_before),
        postgres_rss_kib,
    })
}

struct Propagation {
    enrol: Vec<Duration>,
    remove: Vec<Duration>,
}

fn person(seed: u64) -> Person {
    Person {
        id: format!("bench-{seed}"),
        label: format!("Bench {seed}"),
        model: MODEL.into(),
        embedding: Embedding(super::synthetic_embedding(seed, DIM)),
    }
}

fn measure_propagation(
    runtime: &tokio::runtime::Runtime,
    scratch: &Path,
    args: &FleetArgs,
    out: &mut impl Write,
) -> anyhow::Result<Propagation> {
    let nats = NatsServer::start("")?;
    let keys = scratch.join("office-keys");
    std::fs::create_dir_all(&keys)?;
    let (secret, _, _) = facegate_token::generate_key(&keys, "office")?;
    let key = facegate_token::load_signing_key(&secret)?;
    std::fs::remove_file(&secret)?;
    let trusted = TrustedKeys::load(&keys)?;
    let office = runtime.block_on(async {
        let client = async_nats::connect(nats.url()).await?;
        facegate_backoffice::prepare_broker(&client).await?;
        anyhow::Ok(Office::new(client, key))
    })?;
    let (stop_following, stopping) = tokio::sync::watch::channel(false);
    let mut galleries = Vec::with_capacity(args.gates);
    for gate in 0..args.gates {
        let dir = scratch.join(format!("gallery-{gate}"));
        Gallery::create(&dir, MODEL, DIM as u32)?;
        let config = FleetConfig {
            enabled: true,
            gate_id: Some(format!("bench-{gate}").parse()?),
            servers: vec![nats.url()],
            gallery_keys: Some(keys.clone()),
            ..FleetConfig::default()
        };
        runtime.spawn(facegated::fleet::follow_gallery(
            config,
            trusted.clone(),
            dir.clone(),
            GalleryLease::required(),
            None,
            stopping.clone(),
        ));
        galleries.push(dir);
    }
    // From the office's call to the last gate's switch: the office reads the stream's last
    // generation (and, for a removal, the gallery) before it publishes.
    let at_every_gate = |asked: Instant, generation: u64| {
        until(Duration::from_secs(30), || {
            Ok(galleries
                .iter()
                .all(|dir| held_generation(dir).is_ok_and(|held| held >= generation)))
        })?;
        anyhow::Ok(asked.elapsed())
    };
    let mut propagation = Propagation {
        enrol: Vec::new(),
        remove: Vec::new(),
    };
    for seed in 0..args.changes as u64 {
        let asked = Instant::now();
        let enrolled = runtime.block_on(office.enrol(person(seed)))?;
        propagation.enrol.push(at_every_gate(asked, enrolled)?);
        let asked = Instant::now();
        let removed = runtime.block_on(office.remove(&person(seed).id))?;
        propagation.remove.push(at_every_gate(asked, removed)?);
    }
    let _ = stop_following.send(true);
    writeln!(
        out,
        "  {} enrolments and {} removals, each timed to the last of {} gates",
        args.changes, args.changes, args.gates
    )?;
    Ok(propagation)
}

pub fn run(args: &FleetArgs, out: &mut impl Write) -> anyhow::Result<()> {
    if args.gates == 0 || args.changes == 0 || args.backlog == 0 {
        bail!("--backlog, --changes and --gates must be at least 1");
    }
    // The journal's fsyncs are the gate's; the bench measures what follows them, so the
    // backlog is written where fsync is cheap when it can be (the galleries are not).
    let shm = Path::new("/dev/shm");
    let scratch = match shm.is_dir() {
        true => tempfile::tempdir_in(shm)?,
        false => tempfile::tempdir()?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    writeln!(
        out,
        "== fleet: one gate's backlog through the broker into the ledger"
    )?;
    let backlog = measure_backlog(&runtime, scratch.path(), args.backlog, out)?;
    let rate = |d: Duration| args.backlog as f64 / d.as_secs_f64();
    writeln!(
        out,
        "  published {:.0} passages/s, absorbed {:.0} passages/s, confirmed back {:.1} s after",
        rate(backlog.publish),
        rate(backlog.absorb),
        backlog.confirm.as_secs_f64()
    )?;
    writeln!(
        out,
        "  nats-server: {:.1} s CPU, {} MiB resident; PostgreSQL: {:.1} s CPU, {} MiB resident",
        backlog.nats_cpu.as_secs_f64(),
        backlog.nats_rss_kib / 1024,
        backlog.postgres_cpu.as_secs_f64(),
        backlog.postgres_rss_kib / 1024
    )?;
    writeln!(
        out,
        "== fleet: gallery changes from the office to every gate"
    )?;
    // The gates' galleries where a gate keeps them: on disk, fsyncs and all.
    let galleries = tempfile::tempdir()?;
    let propagation = measure_propagation(&runtime, galleries.path(), args, out)?;
    let summary = |samples: &[Duration]| {
        let stats = Stats::of(samples.to_vec()).expect("at least one change");
        let max = samples.iter().max().copied().unwrap_or_default();
        (stats.median, max)
    };
    let (enrol_median, enrol_max) = summary(&propagation.enrol);
    let (remove_median, remove_max) = summary(&propagation.remove);
    writeln!(
        out,
        "  enrol-to-all-gates: median {:.1} ms, max {:.1} ms; remove-to-all-gates: median {:.1} ms, max {:.1} ms",
        ms(enrol_median),
        ms(enrol_max),
        ms(remove_median),
        ms(remove_max)
    )?;

    let json = super::results_path(args.json.as_deref(), "fleet");
    super::write_json(
        &json,
        &json!({
            "backlog": {
                "passages": args.backlog,
                "publish_s": backlog.publish.as_secs_f64(),
                "absorb_s": backlog.absorb.as_secs_f64(),
                "confirmed_s": backlog.confirm.as_secs_f64(),
                "publish_per_s": rate(backlog.publish),
                "absorb_per_s": rate(backlog.absorb),
                "nats_cpu_s": backlog.nats_cpu.as_secs_f64(),
                "nats_rss_kib": backlog.nats_rss_kib,
                "postgres_cpu_s": backlog.postgres_cpu.as_secs_f64(),
                "postgres_rss_kib": backlog.postgres_rss_kib,
            },
            "gallery": {
                "gates": args.gates,
                "changes": args.changes,
                "enrol_to_all_ms": propagation.enrol.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
                "remove_to_all_ms": propagation.remove.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            },
        }),
    )?;
    writeln!(out, "\n(written to {})", json.display())?;
    Ok(())
}
