// SPDX-License-Identifier: MIT OR Apache-2.0
//! facegatectl: the gate operator's command line.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use facegate_dbus::BusAddress;
use facegate_vision::gallery::Gallery;
use facegatectl::enroll::{self, Request};
use facegatectl::identify::{self, Options};
use facegatectl::output::Output;
use facegatectl::pipeline::{ModelArgs, Models};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(
    name = "facegatectl",
    version,
    about = "Operate a FaceGate face-pay gate: enrol passengers, identify faces, benchmark"
)]
struct Cli {
    #[command(flatten)]
    models: ModelArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enrol passengers: one person with --id (one photo or several), or many with --csv or --dir
    #[command(visible_alias = "enrol")]
    Enroll(EnrollArgs),
    /// Remove a passenger from the gallery, immediately and for real
    Remove {
        #[arg(long, value_name = "DIR")]
        gallery: PathBuf,
        #[arg(long)]
        id: String,
    },
    /// List the people in a gallery
    List {
        #[arg(long, value_name = "DIR")]
        gallery: PathBuf,
    },
    /// Print fgmetadump JSON lines (one per frame) for every face in an image or video
    Identify {
        /// Match faces against this gallery
        #[arg(long, value_name = "DIR")]
        gallery: Option<PathBuf>,
        /// Include embeddings in the output
        #[arg(long)]
        embeddings: bool,
        /// Match as a gate whose policy.max_false_grant_rate is RATE (default: the gate's default, 1e-4)
        #[arg(long, value_name = "RATE", value_parser = false_grant_rate)]
        max_false_grant_rate: Option<f64>,
        file: PathBuf,
    },
    /// Open-set accuracy on a corpus (a folder per person): score distributions, FMR/FNMR, thresholds per gallery size
    Evaluate(facegatectl::evaluate::EvaluateArgs),
    /// The running gate's status, over D-Bus
    Status {
        /// "system", "session" or a D-Bus address
        #[arg(long, default_value = "system")]
        bus: BusAddress,
    },
    /// Passenger tokens: the passenger carries a signed template and shows it as a QR code
    #[command(subcommand)]
    Token(TokenCommand),
    /// The gate demo (a development tool: runs `facegate-dev demo`, see its --help)
    #[command(disable_help_flag = true)]
    Demo {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Benchmarks (a development tool: runs `facegate-dev bench`, see its --help)
    #[command(disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

#[derive(clap::Subcommand)]
enum TokenCommand {
    /// Make the enrolment office's Ed25519 key pair: NAME.key.pem (secret, mode 0600; keep it off
    /// the gates) and NAME.pub.pem (for each gate's /etc/facegate/trusted-keys/)
    Keygen {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[arg(long, default_value = "facegate-token")]
        name: String,
    },
    /// Enrol one photo (exactly one good face) and write the signed token as a QR code PNG and,
    /// beside it, as text (OUT with the extension .txt)
    Issue {
        /// The office's signing key (NAME.key.pem from keygen)
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        /// The passenger's id at the office (opaque to the gate, 1 to 64 bytes; not a name)
        #[arg(long)]
        id: String,
        #[arg(long, value_name = "PHOTO")]
        photo: PathBuf,
        /// Days until it expires (1 to 3650)
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
        valid_days: u32,
        /// The PNG to write
        #[arg(long, value_name = "PNG")]
        out: PathBuf,
    },
    /// Verify a token (its PNG, or the text a QR reader returns) and print it as JSON, the
    /// template left out
    Show {
        file: PathBuf,
        /// The public keys to trust (*.pem)
        #[arg(long, value_name = "DIR", default_value = "/etc/facegate/trusted-keys")]
        trusted: PathBuf,
    },
    /// Add tokens or passengers to the signed revocation list (made if it does not exist, signed
    /// again with KEY); each gate reloads it when it changes
    Revoke {
        /// The office's signing key (NAME.key.pem from keygen); an existing list must verify
        /// with it
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        /// The revocation list to update (a gate's [tokens] revocations)
        #[arg(long, value_name = "FILE")]
        list: PathBuf,
        /// A token id to revoke (32 hex digits, as `token show` prints it); repeatable
        #[arg(long = "token", value_name = "TOKEN_ID")]
        tokens: Vec<String>,
        /// A passenger id whose every token is revoked; repeatable
        #[arg(long = "passenger", value_name = "ID")]
        passengers: Vec<String>,
    },
}

/// A false-grant rate as fgmatch takes it: 1e-12 to 0.5 per stranger passage.
fn false_grant_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if (1e-12..=0.5).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!(
            "{rate} is outside 1e-12..0.5 false grants per stranger passage"
        ))
    }
}

fn token_command(command: TokenCommand, models: &Models, out: &mut Output) -> anyhow::Result<()> {
    use facegatectl::token;
    match command {
        TokenCommand::Keygen { out: dir, name } => {
            let (secret, public, id) = facegate_token::generate_key(&dir, &name)?;
            out.line(format_args!(
                "key {id}: secret {} (keep it at the office), public {} (for the gates)",
                secret.display(),
                public.display()
            ))?;
        }
        TokenCommand::Issue {
            key,
            id,
            photo,
            valid_days,
            out: png,
        } => {
            let issued = token::issue(&key, &id, &photo, valid_days, &png, models)?;
            out.line(format_args!(
                "token {} for {id}: {} ({} payload bytes, {} characters, QR version {}, {}x{} modules) and {}; the int8 template costs {:.1e} of cosine similarity to the photo's embedding",
                issued.token_id,
                issued.png.display(),
                issued.payload_bytes,
                issued.text_chars,
                issued.qr_version,
                issued.qr_modules,
                issued.qr_modules,
                issued.text.display(),
                1.0 - issued.template_cosine
            ))?;
        }
        TokenCommand::Show { file, trusted } => {
            let shown = token::show(&file, &trusted)?;
            out.line(serde_json::to_string(&shown)?)?;
        }
        TokenCommand::Revoke {
            key,
            list,
            tokens,
            passengers,
        } => {
            let revoked = token::revoke(&key, &list, &tokens, &passengers)?;
            out.line(format_args!(
                "{}: {} tokens and {} passengers revoked ({} added), issued at {}",
                list.display(),
                revoked.list.token_ids.len(),
                revoked.list.passenger_ids.len(),
                revoked.added,
                revoked.list.issued_at
            ))?;
        }
    }
    Ok(())
}

#[derive(Args)]
struct EnrollArgs {
    #[arg(long, value_name = "DIR")]
    gallery: PathBuf,
    /// Person id for the PHOTOs ([A-Za-z0-9._@-], up to 64 characters)
    #[arg(long, conflicts_with_all = ["csv", "dir"])]
    id: Option<String>,
    /// Display name for --id (default: the id; with --replace, the label the person has)
    #[arg(long, requires = "id")]
    label: Option<String>,
    /// CSV with the header id,label,photo (photo paths relative to the CSV; several rows with one
    /// id are one person enrolled from all of them)
    #[arg(long, value_name = "FILE", conflicts_with = "dir")]
    csv: Option<PathBuf>,
    /// Every jpg/png in a folder, the file name (without extension) as id and label
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Replace people already enrolled under the same id
    #[arg(long)]
    replace: bool,
    /// A photo of the --id person (repeatable, like PHOTO)
    #[arg(long = "photo", value_name = "PHOTO", requires = "id")]
    photo_option: Vec<PathBuf>,
    /// Photos of the --id person: several make one template that serves all of them, once they
    /// are found to show one person
    #[arg(value_name = "PHOTO", requires = "id")]
    photos: Vec<PathBuf>,
}

fn requests(args: &EnrollArgs) -> anyhow::Result<Vec<Request>> {
    let photos: Vec<PathBuf> = args
        .photos
        .iter()
        .chain(&args.photo_option)
        .cloned()
        .collect();
    let requests = match (&args.id, photos.is_empty(), &args.csv, &args.dir) {
        (Some(id), false, None, None) => vec![Request {
            id: id.clone(),
            label: args.label.clone(),
            photos,
        }],
        (Some(id), true, None, None) => bail!("--id {id}: give at least one PHOTO"),
        (None, true, Some(csv), None) => {
            let requests = enroll::requests_from_csv(csv)?;
            if requests.is_empty() {
                bail!(
                    "{}: no one to enrol (no rows below the header)",
                    csv.display()
                );
            }
            requests
        }
        (None, true, None, Some(dir)) => {
            let requests = enroll::requests_from_dir(dir)
                .with_context(|| format!("cannot read folder {}", dir.display()))?;
            if requests.is_empty() {
                bail!(
                    "{}: no one to enrol (no jpg, jpeg or png files)",
                    dir.display()
                );
            }
            requests
        }
        _ => bail!("say what to enrol: --id ID PHOTO, --csv FILE or --dir DIR"),
    };
    Ok(requests)
}

/// A gallery that follows the enrolment office (a fleet gate's) is changed at the office only:
/// a change made here would be the gate's alone, and undone by the office's next snapshot.
fn refuse_a_fleet_gallery(dir: &std::path::Path) -> anyhow::Result<()> {
    if let Some(generation) = Gallery::open(dir)
        .ok()
        .and_then(|g| g.upstream_generation())
    {
        bail!(
            "{}: this gallery follows the enrolment office (fleet generation {generation}): enrol and remove there (facegate-backoffice gallery), so that every gate does the same",
            dir.display()
        );
    }
    Ok(())
}

fn enroll_command(args: &EnrollArgs, models: &Models, out: &mut Output) -> anyhow::Result<()> {
    refuse_a_fleet_gallery(&args.gallery)?;
    let requests = requests(args)?;
    let total = requests.len();
    let bar = if total > 1 && std::io::stderr().is_terminal() {
        ProgressBar::new(total as u64).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        )
    } else {
        ProgressBar::hidden()
    };
    let report = enroll::enroll_batch(
        &args.gallery,
        requests,
        args.replace,
        models,
        |_| bar.inc(1),
        |_| {},
    )?;
    bar.finish_and_clear();
    // Printed only now: the batch is committed (or nothing was to be).
    for outcome in &report.outcomes {
        out.line(outcome)?;
    }
    match report.generation {
        Some(generation) => out.line(format_args!(
            "gallery {}: generation {generation}, {} people",
            args.gallery.display(),
            report.gallery_size
        ))?,
        None => out.line(format_args!(
            "gallery {}: unchanged",
            args.gallery.display()
        ))?,
    }
    match report.refused() {
        0 => Ok(()),
        refused if report.outcomes.iter().all(|o| o.request.photos.len() == 1) => {
            bail!("{refused} of {total} photos refused")
        }
        refused => bail!("{refused} of {total} people refused"),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    facegatectl::init().context("GStreamer failed to initialise")?;
    let models = cli.models.models();
    let mut out = Output::stdout();
    match cli.command {
        Command::Enroll(args) => enroll_command(&args, &models, &mut out),
        Command::Remove { gallery, id } => {
            refuse_a_fleet_gallery(&gallery)?;
            let mut opened = Gallery::open(&gallery)?;
            if !opened.remove(&id)? {
                bail!("no person with id {id} in gallery {}", gallery.display());
            }
            let generation = opened.commit()?;
            out.line(format_args!(
                "removed {id}; gallery {}: generation {generation}, {} people",
                gallery.display(),
                opened.len()
            ))?;
            Ok(())
        }
        Command::List { gallery } => {
            let opened = Gallery::open(&gallery)?;
            out.line(format_args!(
                "gallery {}: generation {}, {} people, model {}",
                gallery.display(),
                opened.generation(),
                opened.len(),
                opened.model()
            ))?;
            out.line(format_args!(
                "{}",
                facegatectl::standing::list_line(opened.model(), opened.len() as u64)
            ))?;
            for person in opened.identities() {
                out.line(format_args!(
                    "{}\t{}\t{}",
                    person.id, person.label, person.enrolled_at
                ))?;
            }
            Ok(())
        }
        Command::Identify {
            gallery,
            embeddings,
            max_false_grant_rate,
            file,
        } => {
            let options = Options {
                gallery,
                models,
                max_false_grant_rate,
            };
            identify::dump(&file, &options, out, embeddings)?;
            Ok(())
        }
        Command::Evaluate(args) => Ok(facegatectl::evaluate::command(&args, &models)?),
        Command::Status { bus } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let stats = runtime.block_on(facegate_dbus::read_stats(&bus))?;
            out.text(&facegatectl::status::format_status(&stats))?;
            Ok(())
        }
        Command::Token(command) => token_command(command, &models, &mut out),
        Command::Demo { args } => development_tool("demo", &cli.models, args),
        Command::Bench { args } => development_tool("bench", &cli.models, args),
    }
}

/// The development tools live in their own program, which gates do not ship: `demo` and `bench`
/// hand over to it (beside this program, else on PATH) with the same arguments.
fn development_tool(command: &str, models: &ModelArgs, args: Vec<OsString>) -> anyhow::Result<()> {
    const TOOL: &str = "facegate-dev";
    let beside = std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name(TOOL))
        .filter(|path| path.is_file());
    let program = beside.unwrap_or_else(|| PathBuf::from(TOOL));
    let error = std::process::Command::new(&program)
        .arg(command)
        .args(models.to_args())
        .args(args)
        .exec();
    bail!(
        "facegatectl {command} runs the development tools ({}: {error}); they are not part of \
         the gate software: build them from the source tree with `make build`",
        program.display()
    )
}

fn main() -> ExitCode {
    facegatectl::run_main("facegatectl", || run(Cli::parse()))
}
