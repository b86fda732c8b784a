//! The `consentgate` command line: `serve`, `migrate`, `check-config`, `import`, `demo`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::demo::{self, DemoOptions};
use crate::records::bundle;
use crate::startup::Application;
use crate::store::{Store, resources};
use crate::{import, telemetry};

/// consentgate: a consent-managed health-data-sharing gateway.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// A TOML file with settings that override config/default.toml.
    #[arg(long, global = true, env = "CONSENTGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (HTTPS on 127.0.0.1:8443 by default).
    Serve {
        /// Fill an empty database with synthetic demo patients first.
        #[arg(long)]
        demo: bool,
        /// How many demo patients `--demo` creates.
        #[arg(long, default_value_t = 10)]
        demo_patients: usize,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the effective configuration, secrets masked, and exit.
    CheckConfig,
    /// Load FHIR Bundles (.json) and NDJSON files (.ndjson) into the database.
    Import {
        /// Files to load, in order (load organisation and practitioner bundles first).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Fill an empty database with deterministic synthetic patients.
    Demo {
        /// How many patients.
        #[arg(long, default_value_t = 10)]
        patients: usize,
        /// Seed of the generator; the same seed gives the same patients.
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        /// Add to a database that already holds records.
        #[arg(long)]
        append: bool,
    },
}

/// Runs the command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let settings = Settings::load(cli.config.as_deref())?;
    telemetry::init(&settings.log);
    match cli.command {
        Command::CheckConfig => {
            print!("{}", settings.to_masked_toml());
            Ok(0)
        }
        Command::Migrate => {
            let store = Store::open(&settings)?;
            let applied = store.migrate()?;
            println!("{} migrations applied", applied.len());
            for name in applied {
                println!("  {name}");
            }
            Ok(0)
        }
        Command::Import { files, quiet } => {
            let store = open_migrated(&settings)?;
            let summary = import::import_files(&store, &settings.limits, &files, quiet)?;
            println!("{} resources stored", summary.stored);
            for f in &summary.failures {
                eprintln!("failed: {f}");
            }
            Ok(if summary.failures.is_empty() { 0 } else { 1 })
        }
        Command::Demo {
            patients,
            seed,
            append,
        } => {
            let store = open_migrated(&settings)?;
            fill_demo(&store, &settings, &DemoOptions { patients, seed }, append)?;
            Ok(0)
        }
        Command::Serve {
            demo,
            demo_patients,
        } => {
            let store = if settings.database.migrate_on_start {
                open_migrated(&settings)?
            } else {
                Store::open(&settings)?
            };
            if demo {
                let opts = DemoOptions {
                    patients: demo_patients,
                    ..DemoOptions::default()
                };
                fill_demo(&store, &settings, &opts, false)?;
            }
            serve(settings, store)?;
            Ok(0)
        }
    }
}

fn open_migrated(settings: &Settings) -> anyhow::Result<Store> {
    let store = Store::open(settings).context("opening the database")?;
    store.migrate().context("applying database migrations")?;
    Ok(store)
}

fn serve(settings: Settings, store: Store) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build_with_store(settings.clone(), store)?;
        let credential = settings.data_path(&settings.auth.operator_token_file);
        eprintln!("consentgate listening on {}", app.base_url());
        if !settings.server.plain_http && settings.server.tls.cert_file.as_os_str().is_empty() {
            eprintln!(
                "  development TLS certificate: {}",
                settings.data_dir.join("tls/dev-cert.pem").display()
            );
        }
        eprintln!("  operator credential: {}", credential.display());
        app.run_until_stopped().await?;
        eprintln!("consentgate stopped");
        Ok(())
    })
}

/// Loads demo patients unless the database already holds records (or `append`).
fn fill_demo(
    store: &Store,
    settings: &Settings,
    opts: &DemoOptions,
    append: bool,
) -> anyhow::Result<()> {
    let mut conn = store.conn()?;
    let existing = resources::count(&mut conn)?;
    if existing > 0 && !append {
        println!(
            "the database already holds {existing} resources; demo data not loaded (use --append to add)"
        );
        return Ok(());
    }
    let bar = indicatif::ProgressBar::new(opts.patients as u64 + 1);
    let mut stored = 0usize;
    let bundles = std::iter::once(demo::directory_bundle(opts)).chain(demo::patient_bundles(opts));
    for b in bundles {
        let response = bundle::process(&mut conn, b, &settings.limits)
            .map_err(|e| anyhow::anyhow!("demo bundle refused: {e}"))?;
        stored += response
            .get("entry")
            .and_then(|e| e.as_array())
            .map_or(0, Vec::len);
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "demo data loaded: {} patients, {stored} resources (seed {})",
        opts.patients, opts.seed
    );
    Ok(())
}
