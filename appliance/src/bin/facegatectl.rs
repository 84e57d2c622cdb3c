//! facegatectl: the gate operator's command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use facegate_appliance::demo::{self, DemoPaths};
use facegate_appliance::enroll::{self, Request};
use facegate_appliance::identify::{self, Options};
use facegate_appliance::pipeline::Models;
use facegate_vision::gallery::Gallery;
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

#[derive(Args)]
struct ModelArgs {
    /// Face detector model (default: $FACEGATE_MODEL_DIR/facegate_yunet_2023mar.onnx)
    #[arg(long, global = true, value_name = "ONNX")]
    detector_model: Option<PathBuf>,
    /// Face embedder model (default: $FACEGATE_MODEL_DIR/facegate_sface_2021dec.onnx)
    #[arg(long, global = true, value_name = "ONNX")]
    embedder_model: Option<PathBuf>,
    /// Detector input size (longer side, pixels); enrolment defaults to 640, identification to fgdetect's default
    #[arg(long, global = true, value_name = "PIXELS", value_parser = clap::value_parser!(u32).range(32..=4096))]
    input_size: Option<u32>,
}

impl ModelArgs {
    fn models(&self) -> Models {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.to_string_lossy().into_owned());
        Models {
            detector: path(&self.detector_model),
            embedder: path(&self.embedder_model),
            input_size: self.input_size,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Enrol passengers: one photo with --id, or many with --csv or --dir
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
        file: PathBuf,
    },
    /// The gate demo: facegated on a walk-up video with a simulated gate and a private D-Bus
    /// (--recognition: identification only, on the photos and the video)
    Demo {
        /// Identify the development photos and the video instead of running the gate
        #[arg(long)]
        recognition: bool,
        #[arg(long, value_name = "DIR", requires = "recognition")]
        photos: Option<PathBuf>,
        #[arg(long, value_name = "DIR", requires = "recognition")]
        videos: Option<PathBuf>,
        /// Gallery to build (default: a fresh temporary one)
        #[arg(long, value_name = "DIR", requires = "recognition")]
        gallery: Option<PathBuf>,
    },
    /// The running gate's status, over D-Bus
    Status {
        /// "system", "session" or a D-Bus address
        #[arg(long, default_value = "system")]
        bus: String,
    },
    /// Measure speed, scale and decision latency (see docs/BENCHMARKS.md)
    #[command(subcommand)]
    Bench(facegate_appliance::bench::BenchCommand),
}

#[derive(Args)]
struct EnrollArgs {
    #[arg(long, value_name = "DIR")]
    gallery: PathBuf,
    /// Person id for a single PHOTO ([A-Za-z0-9._@-], up to 64 characters)
    #[arg(long, requires = "photo", conflicts_with_all = ["csv", "dir"])]
    id: Option<String>,
    /// Display name for a single PHOTO (default: the id)
    #[arg(long, requires = "id")]
    label: Option<String>,
    /// CSV with the header id,label,photo (photo paths relative to the CSV)
    #[arg(long, value_name = "FILE", conflicts_with = "dir")]
    csv: Option<PathBuf>,
    /// Every jpg/png in a folder, the file name (without extension) as id and label
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Replace people already enrolled under the same id
    #[arg(long)]
    replace: bool,
    photo: Option<PathBuf>,
}

fn requests(args: &EnrollArgs) -> anyhow::Result<Vec<Request>> {
    Ok(match (&args.id, &args.photo, &args.csv, &args.dir) {
        (Some(id), Some(photo), None, None) => vec![Request {
            id: id.clone(),
            label: args.label.clone().unwrap_or_else(|| id.clone()),
            photo: photo.clone(),
        }],
        (None, None, Some(csv), None) => enroll::requests_from_csv(csv)?,
        (None, None, None, Some(dir)) => enroll::requests_from_dir(dir)
            .with_context(|| format!("cannot read folder {}", dir.display()))?,
        _ => bail!("say what to enrol: --id ID PHOTO, --csv FILE or --dir DIR"),
    })
}

fn enroll_command(args: &EnrollArgs, models: &Models) -> anyhow::Result<()> {
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
    let report = enroll::enroll_all(&args.gallery, requests, args.replace, models, |outcome| {
        bar.suspend(|| println!("{outcome}"));
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    match report.generation {
        Some(generation) => println!(
            "gallery {}: generation {generation}, {} people",
            args.gallery.display(),
            report.gallery_size
        ),
        None => println!("gallery {}: unchanged", args.gallery.display()),
    }
    match report.refused() {
        0 => Ok(()),
        refused => bail!("{refused} of {total} photos refused"),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    facegate_appliance::init().context("GStreamer failed to initialise")?;
    let models = cli.models.models();
    match cli.command {
        Command::Enroll(args) => enroll_command(&args, &models),
        Command::Remove { gallery, id } => {
            let mut opened = Gallery::open(&gallery)?;
            if !opened.remove(&id)? {
                bail!("no person with id {id} in gallery {}", gallery.display());
            }
            let generation = opened.commit()?;
            println!(
                "removed {id}; gallery {}: generation {generation}, {} people",
                gallery.display(),
                opened.len()
            );
            Ok(())
        }
        Command::List { gallery } => {
            let opened = Gallery::open(&gallery)?;
            println!(
                "gallery {}: generation {}, {} people, model {}",
                gallery.display(),
                opened.generation(),
                opened.len(),
                opened.model()
            );
            for person in opened.identities() {
                println!("{}\t{}\t{}", person.id, person.label, person.enrolled_at);
            }
            Ok(())
        }
        Command::Identify {
            gallery,
            embeddings,
            file,
        } => {
            let options = Options { gallery, models };
            identify::dump(&file, &options, "-", embeddings)?;
            Ok(())
        }
        Command::Demo {
            recognition: false, ..
        } => facegate_appliance::gate_demo::run(&mut std::io::stdout()),
        Command::Demo {
            recognition: true,
            photos,
            videos,
            gallery,
        } => {
            let scratch = tempfile::tempdir()?;
            let paths = DemoPaths {
                photos: photos.unwrap_or_else(|| demo::default_dir("FACEGATE_PHOTO_DIR", "photos")),
                videos: videos.unwrap_or_else(|| demo::default_dir("FACEGATE_VIDEO_DIR", "videos")),
                gallery: gallery.unwrap_or_else(|| scratch.path().join("gallery")),
            };
            demo::run(&paths, &models, &mut std::io::stdout())
        }
        Command::Status { bus } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let status = runtime.block_on(facegate_appliance::status::read_status(&bus))?;
            print!("{}", facegate_appliance::status::format_status(&status));
            Ok(())
        }
        Command::Bench(command) => {
            facegate_appliance::bench::run(&command, &models, &mut std::io::stdout())
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("FACEGATE_LOG"))
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("facegatectl: {error:#}");
            ExitCode::FAILURE
        }
    }
}
