//! Building and running the server: [`Application::build`] opens the store, binds the
//! listener (port 0 works, for tests), sets up TLS and returns a server ready to run.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context;

use crate::api::{self, AppState, observe};
use crate::audit::log::{AuditLog, CheckpointSigner};
use crate::auth::Authority;
use crate::auth::purposes::PurposeCatalog;
use crate::config::Settings;
use crate::gateway::Gateway;
use crate::institution::Institution;
use crate::store::Store;
use crate::tls;

/// A bound, configured server that has not started serving yet.
pub struct Application {
    port: u16,
    base_url: String,
    server: Server,
    store: Store,
    gateway: Arc<Gateway>,
}

impl Application {
    /// Opens the store (migrating when configured), loads credentials, binds and sets up
    /// TLS. Nothing is served until [`Application::run_until_stopped`].
    pub fn build(settings: Settings) -> anyhow::Result<Application> {
        let store = Store::open(&settings).context("opening the database")?;
        if settings.database.migrate_on_start {
            let applied = store.migrate().context("applying database migrations")?;
            if !applied.is_empty() {
                tracing::info!(count = applied.len(), "database migrations applied");
            }
        }
        let store_for_app = store.clone();
        Self::build_with_store(settings, store_for_app)
    }

    /// As [`Application::build`], on an already opened store.
    pub fn build_with_store(settings: Settings, store: Store) -> anyhow::Result<Application> {
        let listener = TcpListener::bind((settings.server.host, settings.server.port))
            .with_context(|| {
                format!("binding {}:{}", settings.server.host, settings.server.port)
            })?;
        let port = listener.local_addr()?.port();
        let base_url = settings.base_url(port);

        let tls_config = if settings.server.plain_http {
            None
        } else {
            let files = tls::certificate_files(&settings)?;
            if files.generated {
                tracing::info!(cert = %files.cert.display(), "development TLS certificate generated");
            }
            Some(tls::server_config(&files)?)
        };

        let auth = Authority::new(&settings, &base_url).context("loading keys and issuers")?;
        let origin = format!(
            "{}/audit",
            base_url
                .split_once("://")
                .map_or(base_url.as_str(), |(_, rest)| rest)
        );
        let checkpoints =
            CheckpointSigner::open(&settings.data_path(&settings.auth.key_dir), &origin)
                .context("loading the audit log key")?;
        let audit = AuditLog::start(
            store.clone(),
            Duration::from_micros(settings.database.audit_commit_wait_us),
        )
        .context("starting the audit writer")?;
        let guard = crate::net::OutboundGuard::from_settings(&settings.outbound)?;
        let notify_worker =
            crate::notify::DeliveryWorker::start(store.clone(), &settings.auth, guard)
                .context("starting the notification delivery worker")?;
        let institution = Institution::load(&settings)?;
        let shaping = crate::release::Shaping::open(&settings.data_path(&settings.auth.key_dir))
            .context("loading the de-identification secret")?;
        let limits = settings.limits;
        let metrics = observe::Metrics::new().context("setting up metrics")?;
        let rate_limits = web::Data::new(
            crate::ratelimit::RateLimits::new(&settings.rate_limits)
                .context("setting up rate limits")?,
        );
        metrics
            .register(rate_limits.counter())
            .context("registering the rate-limit metric")?;
        let intake = web::Data::new(api::intake::Intake::new(
            settings.server.max_inflight_body_bytes,
            Duration::from_secs(settings.server.client_body_timeout_secs),
        ));
        let gateway = Arc::new(Gateway {
            store: store.clone(),
            settings: Arc::new(settings.clone()),
            auth,
            audit,
            checkpoints,
            institution,
            shaping,
            purposes: PurposeCatalog::official(),
            base_url: base_url.clone(),
            contexts: Default::default(),
        });
        // The HTTP workers, and the CPU each may run on (`cpus`): the count actix would
        // take by default, made explicit so that the placement is planned for the same one.
        let workers = match settings.server.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let placement = crate::cpus::WorkerPlacement::plan(
            settings.server.pin_workers,
            workers,
            store.backend() == crate::store::Backend::Sqlite,
        )
        .map(Arc::new);
        let pinned = prometheus::IntGauge::new(
            "http_workers_pinned",
            "HTTP workers pinned to a CPU of their own (server.pin_workers)",
        )
        .context("setting up the worker placement metric")?;
        metrics
            .register(Box::new(pinned.clone()))
            .context("registering the worker placement metric")?;
        if let Some(placement) = &placement {
            tracing::info!(workers, cpus = ?placement.cpus(), "each HTTP worker pinned to a CPU of its own");
        }
        for collector in gateway.audit.collectors() {
            metrics
                .register(collector)
                .context("registering the audit metrics")?;
        }
        let export_metrics =
            crate::export::ExportMetrics::new().context("setting up the export metrics")?;
        for collector in export_metrics.collectors() {
            metrics
                .register(collector)
                .context("registering the export metrics")?;
        }
        let export_worker = crate::export::ExportWorker::start(gateway.clone(), export_metrics);
        let state = web::Data::new(AppState {
            gateway: gateway.clone(),
            metrics,
            notify_worker,
            export_worker,
        });
        let openapi = web::Data::new(
            api::openapi::Served::new().context("serialising the OpenAPI document")?,
        );
        let server_settings = &settings.server;
        let server = HttpServer::new(move || {
            // Run by each worker's thread as it starts.
            if let Some(placement) = &placement
                && placement.pin_current().is_some()
            {
                pinned.inc();
            }
            App::new()
                .app_data(state.clone())
                .app_data(rate_limits.clone())
                .app_data(intake.clone())
                .wrap(from_fn(api::intake::intake))
                .wrap(from_fn(observe::observe))
                .app_data(openapi.clone())
                .configure(|cfg| api::body_configs(cfg, &limits))
                // The API before the pages: actix tries an application's routes in order,
                // each pattern with a parameter by a regular expression, and the pages'
                // dozen of those were tried before every API request, the consent-checked
                // read's among them (`docs/PERFORMANCE.md`, "Eighteenth step"). No page
                // shares a first path segment with an API route, so the order changes what
                // is tried first, never what answers.
                .configure(api::routes)
                .configure(crate::web::configure)
        })
        .shutdown_timeout(server_settings.shutdown_timeout_secs)
        // Slow clients (slowloris): headers, then the close, each within its time; bodies
        // within theirs (api::intake).
        .client_request_timeout(Duration::from_secs(
            server_settings.client_request_timeout_secs,
        ))
        .client_disconnect_timeout(Duration::from_secs(
            server_settings.client_disconnect_timeout_secs,
        ))
        .keep_alive(match server_settings.keep_alive_secs {
            0 => actix_web::http::KeepAlive::Disabled,
            secs => actix_web::http::KeepAlive::Timeout(Duration::from_secs(secs)),
        })
        .max_connections(server_settings.max_connections_per_worker)
        .workers(workers);
        let server = match tls_config {
            Some(config) => server.listen_rustls_0_23(listener, config)?,
            None => server.listen(listener)?,
        }
        .run();
        Ok(Application {
            port,
            base_url,
            server,
            store,
            gateway,
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The base URL clients use.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The store the server uses.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A handle to stop the server gracefully.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGINT or SIGTERM (actix's signal handling), then drains gracefully.
    /// The patient-rights sweep runs alongside and stops with the server, and so does,
    /// after an upgrade, the walk that stores the decision's facts of older rows.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let facts = actix_web::rt::spawn(facts_backfill(self.gateway.store.clone()));
        let sweep = actix_web::rt::spawn(rights_sweep(self.gateway));
        let served = self.server.await;
        sweep.abort();
        facts.abort();
        served
    }
}

/// Stores the decision's facts of the rows written before they were (`records::facts`);
/// once through, later starts read one row. A failure is logged: those rows are still read
/// correctly, by parsing their bodies, and the next start tries again.
async fn facts_backfill(store: crate::store::Store) {
    match crate::records::facts::backfill(store).await {
        Ok(done) if done == Default::default() => {}
        Ok(done) => tracing::info!(
            stored = done.stored,
            unreadable = done.unreadable,
            "decision facts stored for resources written before they were"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "storing the decision facts of older resources failed; retrying at the next start")
        }
    }
}

/// Every `rights.sweep_interval_secs`: end the delegations of parents and guardians whose
/// patient came of age, even if the delegate never signs in again, and flag amendment
/// requests that went past their deadline (each audited, so the patient is told). A failed
/// round is logged and retried at the next tick.
async fn rights_sweep(gateway: Arc<Gateway>) {
    let every = Duration::from_secs(gateway.settings.rights.sweep_interval_secs);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match crate::delegation::majority::sweep(&gateway).await {
            Ok(0) => {}
            Ok(ended) => tracing::info!(ended, "delegations ended at the age of majority"),
            Err(e) => tracing::warn!(code = e.code, "rights sweep failed; retrying next round"),
        }
        match crate::amendment::overdue::sweep(&gateway).await {
            Ok(0) => {}
            Ok(flagged) => tracing::info!(flagged, "amendment requests flagged overdue"),
            Err(e) => tracing::warn!(code = e.code, "amendment sweep failed; retrying next round"),
        }
    }
}
