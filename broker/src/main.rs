//! `postern`: the trust broker service and its command line.

use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tokio::sync::watch;

use postern_broker::app;

/// mimalloc: the service allocates and frees many short-lived JSON values and buffers per
/// request, which glibc's allocator handles markedly slower.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use postern_broker::config::{LogFormat, Overrides, Settings};
use postern_broker::domain::pki::IssueCommand;
use postern_broker::domain::posture::policy::Policy;
use postern_broker::domain::{Principal, SystemClock};
use postern_broker::http::{self, AppState};
use postern_broker::keystore::KeyName;
use postern_broker::model::Role;
use postern_broker::server;
use postern_certs::crl::RevocationReason;
use postern_certs::names::SubjectName;

#[derive(Debug, Parser)]
#[command(
    name = "postern",
    version,
    about = "postern: the trust broker for enterprise messaging"
)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "POSTERN_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (sled store, keys, certificates).
    #[arg(long, global = true, env = "POSTERN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker (creates the data directory and a development CA on first start).
    Serve(ServeArgs),
    /// Certificate authority commands (offline, on the data directory).
    #[command(subcommand)]
    Ca(CaCommand),
    /// Audit log commands.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Tenant commands.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// API token commands.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Routing policy commands.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Signed feed commands.
    #[command(subcommand)]
    Feed(FeedCommand),
    /// Fetch a device's enrollment profile from a running broker (as an MDM does).
    Profile(ProfileArgs),
}

#[derive(Debug, Args)]
struct ProfileArgs {
    /// The broker's HTTPS base URL.
    #[arg(long)]
    url: String,
    /// PEM file of the CA that issued the broker's TLS certificate.
    #[arg(long)]
    ca_file: PathBuf,
    /// An admin or mdm token of the tenant.
    #[arg(long, env = "POSTERN_TOKEN", hide_env_values = true)]
    token: String,
    /// The tenant.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// The device id.
    #[arg(long)]
    device: String,
    /// The form.
    #[arg(long, value_enum, default_value = "mobileconfig")]
    form: postern_broker::profile_cli::Form,
    /// The device's platform, when the inventory does not say.
    #[arg(long)]
    platform: Option<String>,
    /// The device's OS version.
    #[arg(long)]
    os_version: Option<String>,
    /// The device-attest-01 provisioner.
    #[arg(long)]
    provisioner: Option<String>,
    /// Declarative: the bundle id of the app that receives the identity.
    #[arg(long)]
    app: Option<String>,
    /// Where to write it (standard output when absent).
    #[arg(long, short)]
    out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum FeedCommand {
    /// Follow a tenant's feed as a gateway does: verify the checkpoint (note and JWS) with the
    /// broker's JWK Set, consistency with the checkpoint in --state, and a device's proof;
    /// exits non-zero on any failure and saves the verified checkpoint to --state.
    Verify {
        /// The broker's HTTPS base URL.
        #[arg(long)]
        url: String,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// A bearer token of the tenant (any role) or an operator's.
        #[arg(long, env = "POSTERN_TOKEN", hide_env_values = true)]
        token: String,
        /// PEM file of the CA that issued the broker's TLS certificate.
        #[arg(long)]
        ca_file: PathBuf,
        /// File holding the checkpoint verified on the last run (created if missing).
        #[arg(long)]
        state: Option<PathBuf>,
        /// A device whose newest entry to verify.
        #[arg(long)]
        device: Option<String>,
        /// The oldest checkpoint accepted, in seconds.
        #[arg(long, default_value_t = 600)]
        max_age_seconds: u32,
        /// The broker's feed origin (`feed.origin`); the URL's host by default.
        #[arg(long)]
        origin: Option<String>,
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// HTTPS listen address.
    #[arg(long, env = "POSTERN_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Plain HTTP listen address (CRL, OCSP).
    #[arg(long, env = "POSTERN_HTTP_LISTEN")]
    http_listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Create the CA hierarchy (or import the configured one) if there is none.
    Init,
    /// Show the CA certificates and where they are.
    Show,
    /// Issue a certificate from a CSR; prints the chain (leaf, issuing CA) as PEM.
    Issue {
        /// CSR file (PEM or DER); `-` for standard input.
        #[arg(long)]
        csr: PathBuf,
        /// Profile name.
        #[arg(long)]
        profile: String,
        /// A name to certify instead of the CSR's (`dns:host`, `ip:addr`, `uri:tel:+...`,
        /// `permanent-identifier:SERIAL`); repeatable.
        #[arg(long = "name")]
        names: Vec<String>,
        /// commonName instead of the CSR's.
        #[arg(long)]
        common_name: Option<String>,
        /// Validity in days instead of the profile's default.
        #[arg(long)]
        days: Option<u64>,
        /// Tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a certificate by serial (hex).
    Revoke {
        /// Serial, hex.
        serial: String,
        /// RFC 5280 reason (keyCompromise, superseded, cessationOfOperation, ...).
        #[arg(long, default_value = "unspecified")]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the whole hash chain.
    Verify,
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant.
    Create {
        /// `[a-z0-9-]{1,63}`
        id: String,
        /// Display name.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List tenants.
    List,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Parse a policy file; print its version and each class's rules.
    Check {
        /// Policy TOML file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create an API token; it is printed once.
    Create {
        /// Tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// admin, gateway, mdm, scim or device.
        #[arg(long)]
        role: String,
        /// Label.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Revoke an API token by id.
    Revoke {
        /// Token id.
        id: String,
    },
}

fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&settings.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match settings.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("postern: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut overrides = Overrides {
        data_dir: cli.data_dir.clone(),
        log_format: std::env::var("POSTERN_LOG_FORMAT").ok(),
        ..Overrides::default()
    };
    if let Command::Serve(a) = &cli.command {
        overrides.listen = a.listen;
        overrides.http_listen = a.http_listen;
    }
    let settings = Settings::load(cli.config.as_deref(), &overrides)?;
    init_logging(&settings);
    match cli.command {
        Command::Serve(_) => serve(settings).await,
        Command::Ca(c) => ca(settings, c).await,
        Command::Audit(AuditCommand::Verify) => {
            let app = app::open(settings, Arc::new(SystemClock)).await?;
            let report = app.domain.verify_audit(&Principal::cli())?;
            println!(
                "audit chain ok: {} entries, head {}",
                report.entries, report.head
            );
            Ok(())
        }
        Command::Tenant(TenantCommand::Create { id, name }) => {
            let app = app::open(settings, Arc::new(SystemClock)).await?;
            let t = app
                .domain
                .create_tenant(&Principal::cli(), &id, &name)
                .await?;
            println!("tenant {} created", t.id);
            Ok(())
        }
        Command::Tenant(TenantCommand::List) => {
            let app = app::open(settings, Arc::new(SystemClock)).await?;
            for t in app.domain.tenants(&Principal::cli())? {
                println!("{}\t{}", t.id, t.name);
            }
            Ok(())
        }
        Command::Token(TokenCommand::Create {
            tenant,
            role,
            label,
        }) => {
            let role: Role = role.parse().map_err(anyhow::Error::msg)?;
            let app = app::open(settings, Arc::new(SystemClock)).await?;
            let t = app
                .domain
                .create_token(&Principal::cli(), Some(&tenant), role, &label)
                .await?;
            println!("{}", t.token);
            eprintln!(
                "token {} for tenant {} (role {}); it is shown only now",
                t.record.id,
                t.record.tenant,
                t.record.role.as_str()
            );
            Ok(())
        }
        Command::Policy(PolicyCommand::Check { file }) => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("{}", file.display()))?;
            let policy = Policy::from_toml(&text).with_context(|| format!("{}", file.display()))?;
            print!("{}", policy.summary());
            Ok(())
        }
        Command::Feed(FeedCommand::Verify {
            url,
            tenant,
            token,
            ca_file,
            state,
            device,
            max_age_seconds,
            origin,
        }) => {
            let ca_pem = std::fs::read_to_string(&ca_file)
                .with_context(|| format!("{}", ca_file.display()))?;
            let opts = postern_broker::feed_verify::Options {
                url,
                tenant,
                token,
                ca_pem,
                state,
                device,
                max_age: time::Duration::seconds(i64::from(max_age_seconds)),
                origin,
            };
            let summary =
                postern_broker::feed_verify::run(&opts, time::OffsetDateTime::now_utc()).await?;
            print!("{summary}");
            Ok(())
        }
        Command::Profile(a) => profile(a).await,
        Command::Token(TokenCommand::Revoke { id }) => {
            let app = app::open(settings, Arc::new(SystemClock)).await?;
            app.domain.revoke_token(&Principal::cli(), &id).await?;
            println!("token {id} revoked");
            Ok(())
        }
    }
}

async fn ca(settings: Settings, cmd: CaCommand) -> anyhow::Result<()> {
    match cmd {
        CaCommand::Init => {
            let app = app::open(settings, Arc::new(SystemClock)).await?;
            if !app.ca_created {
                println!("the CA exists already");
            }
            show(&app);
            Ok(())
        }
        CaCommand::Show => {
            let app = app::open(settings, Arc::new(SystemClock)).await?;
            show(&app);
            Ok(())
        }
        CaCommand::Issue {
            csr,
            profile,
            names,
            common_name,
            days,
            tenant,
        } => {
            let csr_bytes = if csr.as_os_str() == "-" {
                let mut b = Vec::new();
                std::io::stdin().read_to_end(&mut b)?;
                b
            } else {
                std::fs::read(&csr).with_context(|| format!("--csr {}", csr.display()))?
            };
            let names = if names.is_empty() {
                None
            } else {
                Some(
                    names
                        .iter()
                        .map(|n| {
                            SubjectName::parse_tagged(n).with_context(|| format!("--name {n}"))
                        })
                        .collect::<anyhow::Result<Vec<_>>>()?,
                )
            };
            let app = app::open(settings, Arc::new(SystemClock)).await?;
            let issued = app
                .domain
                .issue_from_csr(
                    &Principal::cli(),
                    IssueCommand {
                        tenant,
                        csr: csr_bytes,
                        profile,
                        names,
                        common_name,
                        validity: days.map(|d| Duration::from_secs(d * 86_400)),
                    },
                )
                .await?;
            print!("{}", issued.chain_pem);
            eprintln!("issued serial {}", issued.record.serial);
            Ok(())
        }
        CaCommand::Revoke { serial, reason } => {
            let reason: RevocationReason = reason
                .parse()
                .map_err(|e| anyhow::anyhow!("--reason: {e}"))?;
            let app = app::open(settings, Arc::new(SystemClock)).await?;
            let r = app
                .domain
                .revoke(&Principal::cli(), &serial, reason)
                .await?;
            println!("revoked {} ({})", r.serial, reason.as_str());
            Ok(())
        }
    }
}

fn show(app: &app::App) {
    let issuer = app.domain.pki().issuer();
    let root = issuer.root();
    let int = issuer.certificate();
    println!("root CA:    {}", root.subject());
    println!(
        "  file:     {}",
        app.keys.cert_path(KeyName::Root).display()
    );
    println!("  sha256:   {}", root.fingerprint_sha256());
    println!("  valid:    {} .. {}", root.not_before(), root.not_after());
    println!("issuing CA: {}", int.subject());
    println!(
        "  file:     {}",
        app.keys.cert_path(KeyName::Issuing).display()
    );
    println!("  sha256:   {}", int.fingerprint_sha256());
    println!("  valid:    {} .. {}", int.not_before(), int.not_after());
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let dangerous_token = std::env::var("POSTERN_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    let https = server::bind(settings.listen, "listen").await?;
    let plain = server::bind(settings.http_listen, "http_listen").await?;
    let app = app::open(settings, Arc::new(SystemClock)).await?;
    let generated = app
        .domain
        .ensure_bootstrap_token(dangerous_token.as_deref())
        .await?;
    let (chain, key) = app::ensure_tls(&app).await?;
    let tls = Arc::new(server::tls_config_with_client_auth(
        chain,
        key,
        app.domain.pki().issuer().certificate().der(),
    )?);
    let ssf = app::open_ssf(&app)?;
    app.posture.set_ssf(Arc::clone(&ssf));
    let state = AppState::new(
        Arc::clone(&app.domain),
        Arc::clone(&app.acme),
        Arc::clone(&app.posture),
    )
    .with_ssf(Arc::clone(&ssf));
    let connectors = app::open_connectors(&app)?;
    let state = state.with_connectors(Arc::clone(&connectors));
    let scep = postern_broker::scep_ra::open_scep(&app).await?;
    let state = state.with_scep(Arc::clone(&scep));
    let max_body = app.settings.limits.max_body_bytes;
    let https_addr = https.local_addr()?;
    let plain_addr = plain.local_addr()?;
    let (tx, rx) = watch::channel(false);
    // SSF push delivery: queued SETs go out to push receivers
    let pushers = tokio::spawn(Arc::clone(&ssf).run_push(rx.clone()));
    // MDM connectors poll their vendors
    let polling = tokio::spawn(Arc::clone(&connectors).run(rx.clone()));
    let t1 = tokio::spawn(server::serve_tls(
        https,
        tls,
        http::router(state.clone(), max_body),
        rx.clone(),
    ));
    let t2 = tokio::spawn(server::serve_plain(
        plain,
        http::plain_router(state, max_body),
        rx,
    ));

    // the OCSP responder certificate lives 30 days; renew it while running
    let refresh = {
        let (domain, keys) = (Arc::clone(&app.domain), app.keys.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(3600));
            every.tick().await;
            loop {
                every.tick().await;
                if let Err(e) = app::ensure_responder(&domain, &keys).await {
                    tracing::error!(error = %e, "renewing the OCSP responder failed");
                }
            }
        })
    };

    // expired ACME orders and SCEP challenges are removed, Android revocation lists read again
    let acme_upkeep = {
        let acme = Arc::clone(&app.acme);
        let scep = Arc::clone(&scep);
        tokio::spawn(async move {
            let mut cleanup = tokio::time::interval(acme.cleanup_interval());
            let mut lists = tokio::time::interval(acme.revocation_refresh_interval());
            cleanup.tick().await;
            lists.tick().await;
            loop {
                tokio::select! {
                    _ = cleanup.tick() => {
                        if let Err(e) = acme.cleanup().await {
                            tracing::error!(error = %e, "removing expired ACME orders failed");
                        }
                        if let Err(e) = scep.sweep().await {
                            tracing::error!(error = %e, "removing expired SCEP challenges failed");
                        }
                    }
                    _ = lists.tick() => acme.refresh_revocation_lists().await,
                }
            }
        })
    };

    println!("postern is running");
    println!("  data directory: {}", app.settings.data_dir.display());
    println!(
        "  root CA:        {}",
        app.keys.cert_path(KeyName::Root).display()
    );
    println!(
        "  root sha256:    {}",
        app.domain.pki().issuer().root().fingerprint_sha256()
    );
    println!("  https:          https://{https_addr}  (API, admin, PKI)");
    println!("  http:           http://{plain_addr}  (CRL at /pki/crl, OCSP at /pki/ocsp)");
    println!(
        "  ssf:            {}/.well-known/ssf-configuration",
        ssf.issuer()
    );
    for name in app.acme.provisioners().keys() {
        println!("  acme:           https://{https_addr}/acme/{name}/directory");
    }
    if let Some(token) = generated {
        println!("  admin token:    {token}");
        println!(
            "                  (shown once; stored only hashed. Set POSTERN_ADMIN_TOKEN to choose it.)"
        );
    }
    tracing::info!(%https_addr, %plain_addr, "listening");

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = tx.send(true);
    refresh.abort();
    acme_upkeep.abort();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let _ = t1.await;
        let _ = t2.await;
        let _ = pushers.await;
        let _ = polling.await;
    })
    .await;
    app.domain.flush().await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

async fn profile(a: ProfileArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let ca_pem =
        std::fs::read_to_string(&a.ca_file).with_context(|| format!("{}", a.ca_file.display()))?;
    let query = [
        ("platform", a.platform),
        ("os_version", a.os_version),
        ("provisioner", a.provisioner),
        ("app", a.app),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
    .collect();
    let opts = postern_broker::profile_cli::Options {
        url: a.url,
        ca_pem,
        token: a.token,
        tenant: a.tenant,
        device: a.device,
        form: a.form,
        query,
    };
    let (body, content_type) = postern_broker::profile_cli::fetch(&opts).await?;
    match a.out {
        Some(path) => {
            std::fs::write(&path, &body).with_context(|| format!("{}", path.display()))?;
            eprintln!("{} ({content_type}, {} bytes)", path.display(), body.len());
        }
        None => std::io::stdout().write_all(&body)?,
    }
    Ok(())
}
