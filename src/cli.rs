//! The `consentgate` command line: `serve`, `migrate`, `check-config`, `import`, `demo`,
//! `client`, `token`, `keys`, `audit verify`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::auth::clients::{NewClient, Role};
use crate::auth::keys::Keyring;
use crate::auth::purposes::PurposeCatalog;
use crate::auth::tokens::{self, PersonClaims};
use crate::auth::{issuer_for, jwt_ring, now_secs};
use crate::config::{Profile, Settings};
use crate::demo::DemoOptions;
use crate::institution::Institution;
use crate::startup::Application;
use crate::store::identity;
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
    /// Manage recipient clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Print a development token for a person (refused under the production profile).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage the gateway's signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Check the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Check institution policies.
    #[command(subcommand)]
    Policies(PoliciesCommand),
    /// Sensitivity labels.
    #[command(subcommand)]
    Labels(LabelsCommand),
}

/// `consentgate policies ...`.
#[derive(Debug, Subcommand)]
pub enum PoliciesCommand {
    /// Validate a policy folder (schema, every .cedar file, label value sets) strictly;
    /// without DIR, the configured policies.
    Check {
        /// A folder holding schema.cedarschema and *.cedar.
        dir: Option<PathBuf>,
    },
}

/// `consentgate labels ...`.
#[derive(Debug, Subcommand)]
pub enum LabelsCommand {
    /// Re-apply the value sets to every stored resource, patient by patient (labels are only
    /// added: a removed code never unlabels a record silently). Idempotent.
    Apply,
}

/// `consentgate client ...`.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client; prints its id.
    Add {
        /// Display name of the software.
        #[arg(long)]
        name: String,
        /// The organisation running it.
        #[arg(long)]
        organization: String,
        /// clinician, researcher, disability_assessor, insurer or data_source.
        #[arg(long)]
        role: String,
        /// A file holding the client's public JWKS.
        #[arg(long, conflicts_with = "jwks_url")]
        jwks_file: Option<PathBuf>,
        /// Or an https URL serving it.
        #[arg(long)]
        jwks_url: Option<String>,
        /// A purpose of use the client may ask for (repeatable; default: the role's).
        #[arg(long = "purpose")]
        purposes: Vec<String>,
        /// A resource type the client may reach (repeatable; default: all).
        #[arg(long = "resource")]
        resources: Vec<String>,
        /// A FHIR reference the client acts as, e.g. Organization/x or Group/study (repeatable).
        #[arg(long = "acts-as")]
        acts_as: Vec<String>,
        /// The purpose of use its tokens get when a token request names none (standard SMART
        /// Backend Services clients send none).
        #[arg(long = "default-purpose")]
        default_purpose: Option<String>,
    },
    /// List the registered clients.
    List,
    /// Remove a client; its tokens stop working at once.
    Remove {
        /// The client id.
        id: String,
    },
}

/// `consentgate token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// A token for a patient (`fhirUser` = `Patient/{id}`).
    Patient {
        /// The Patient resource id.
        id: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        lifetime: i64,
    },
    /// A token for an operator.
    Operator {
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        lifetime: i64,
    },
}

/// `consentgate audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the whole log offline from the database: every entry's bytes and leaf hash,
    /// the stored tree, and every signed checkpoint. Exits 0 when it verifies, 1 when a
    /// problem is found (naming the first sequence that does not match), 2 when the log
    /// cannot be read.
    Verify {
        /// Check checkpoint signatures with this published verifier key string instead of
        /// the log key in the key directory.
        #[arg(long)]
        verifier_key: Option<String>,
    },
}

/// `consentgate keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a new signing key; the previous one stays published until its tokens expire.
    Rotate,
}

/// Runs the command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let settings = Settings::load(cli.config.as_deref())?;
    let _log = telemetry::init(&settings.log);
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
            let institution = Institution::load(&settings)?;
            let summary = import::import_files(
                &store,
                &settings.limits,
                &institution.labeller,
                &files,
                quiet,
            )?;
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
        Command::Client(command) => client_command(&settings, command),
        Command::Token(command) => {
            let (subject, lifetime, fhir_user, roles) = match command {
                TokenCommand::Patient { id, lifetime } => (
                    format!("patient-{id}"),
                    lifetime,
                    Some(format!("Patient/{id}")),
                    vec![],
                ),
                TokenCommand::Operator { lifetime } => (
                    "operator".to_string(),
                    lifetime,
                    None,
                    vec!["operator".to_string()],
                ),
            };
            let base_url = settings.base_url(settings.server.port);
            println!(
                "{}",
                person_token(&settings, &base_url, &subject, fhir_user, roles, lifetime)?
            );
            Ok(0)
        }
        Command::Audit(AuditCommand::Verify { verifier_key }) => {
            crate::audit::verify::run(&settings, verifier_key.as_deref())
        }
        Command::Keys(KeysCommand::Rotate) => {
            let keyring = keyring(&settings)?;
            let kid = keyring.rotate()?;
            println!(
                "new signing key {kid}; the previous key stays published until its tokens expire"
            );
            Ok(0)
        }
        Command::Policies(PoliciesCommand::Check { dir }) => {
            let institution = match &dir {
                Some(dir) => Institution::load_dir(dir),
                None => Institution::load(&settings),
            };
            match institution {
                Ok(i) => {
                    println!(
                        "policies valid: {} Cedar policies, label value sets {}",
                        i.policies.policy_ids().len(),
                        i.labeller.version_hash()
                    );
                    Ok(0)
                }
                Err(e) => {
                    eprintln!("{e:#}");
                    Ok(1)
                }
            }
        }
        Command::Labels(LabelsCommand::Apply) => {
            let store = open_migrated(&settings)?;
            let institution = Institution::load(&settings)?;
            let (patients, changed) =
                crate::records::relabel::apply_all(&store, &institution.labeller)?;
            println!(
                "labels applied with value sets {}: {patients} patients, {changed} resources gained labels",
                institution.labeller.version_hash()
            );
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

fn keyring(settings: &Settings) -> anyhow::Result<Keyring> {
    let grace =
        settings.auth.access_token_lifetime_secs as i64 + settings.auth.clock_skew_secs as i64;
    Ok(Keyring::open(
        &settings.data_path(&settings.auth.key_dir),
        grace,
    )?)
}

/// Mints a development token for a person, signed with the gateway's key. The issuer is the
/// gateway at `base_url` (the configured one for the CLI), which that gateway trusts.
pub fn person_token(
    settings: &Settings,
    base_url: &str,
    subject: &str,
    fhir_user: Option<String>,
    roles: Vec<String>,
    lifetime: i64,
) -> anyhow::Result<String> {
    if settings.profile == Profile::Production {
        anyhow::bail!("development tokens are refused under the production profile");
    }
    if !(1..=86_400).contains(&lifetime) {
        anyhow::bail!("--lifetime must be between 1 and 86400 seconds");
    }
    jwt_ring::install();
    let keyring = keyring(settings)?;
    let now = now_secs();
    let claims = PersonClaims {
        iss: issuer_for(settings, base_url),
        sub: subject.to_string(),
        aud: tokens::PERSON_AUDIENCE.to_string(),
        exp: now + lifetime,
        iat: now,
        jti: uuid::Uuid::now_v7().to_string(),
        fhir_user,
        roles,
    };
    Ok(tokens::sign(&keyring, tokens::PERSON_TOKEN_TYP, &claims)?)
}

fn client_command(settings: &Settings, command: ClientCommand) -> anyhow::Result<i32> {
    let store = open_migrated(settings)?;
    let mut conn = store.conn()?;
    match command {
        ClientCommand::Add {
            name,
            organization,
            role,
            jwks_file,
            jwks_url,
            purposes,
            resources,
            acts_as,
            default_purpose,
        } => {
            let role = Role::parse(&role).ok_or_else(|| {
                anyhow::anyhow!(
                    "--role must be clinician, researcher, disability_assessor, insurer or data_source"
                )
            })?;
            let jwks = match jwks_file {
                Some(path) => Some(
                    serde_json::from_str(&std::fs::read_to_string(&path)?)
                        .with_context(|| format!("{} is not JSON", path.display()))?,
                ),
                None => None,
            };
            let new = NewClient {
                name,
                organization,
                role,
                jwks,
                jwks_url,
                purposes,
                resources,
                acts_as,
                default_purpose,
            };
            let client = crate::auth::registry::register(
                &mut conn,
                new,
                &settings.roles,
                PurposeCatalog::official(),
            )
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            println!("{}", client.id);
            Ok(0)
        }
        ClientCommand::List => {
            for row in identity::list_clients(&mut conn)? {
                println!(
                    "{}\t{}\t{}\t{}",
                    row.id, row.role, row.organization, row.name
                );
            }
            Ok(0)
        }
        ClientCommand::Remove { id } => {
            if identity::remove_client(&mut conn, &id, now_secs())? {
                println!("client {id} removed");
                Ok(0)
            } else {
                eprintln!("no active client {id}");
                Ok(1)
            }
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
        eprintln!("consentgate listening on {}", app.base_url());
        if !settings.server.plain_http && settings.server.tls.cert_file.as_os_str().is_empty() {
            eprintln!(
                "  development TLS certificate: {}",
                settings.data_dir.join("tls/dev-cert.pem").display()
            );
        }
        if settings.profile != Profile::Production {
            eprintln!("  an operator token: consentgate token operator");
        }
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
    let institution = Institution::load(settings)?;
    let existing = resources::count(&mut *store.conn()?)?;
    if existing > 0 && !append {
        println!(
            "the database already holds {existing} resources; demo data not loaded (use --append to add)"
        );
        return Ok(());
    }
    let bar = indicatif::ProgressBar::new(opts.patients as u64 + 1);
    let stored = import::load_demo(store, &settings.limits, &institution.labeller, opts, || {
        bar.inc(1)
    })?;
    bar.finish_and_clear();
    println!(
        "demo data loaded: {} patients, {stored} resources (seed {})",
        opts.patients, opts.seed
    );
    Ok(())
}
