//! `stratus`: a small OpenStack-compatible cloud in one binary.

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use stratus::config::{Config, FileConfig};

#[derive(Parser)]
#[command(
    name = "stratus",
    version,
    about = "A small OpenStack-compatible cloud in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a cloud: identity, tokens and the catalogue, on one port.
    Serve(ServeArgs),
    /// Inspect IAM policies of a running cloud.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Operator tools for servers.
    #[command(subcommand)]
    Server(ServerCommand),
    /// Operator tools for sagas (multi-step operations such as createImage).
    #[command(subcommand)]
    Saga(SagaCommand),
    /// Operator tools for tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a new primary token key: new tokens are made with it (by every node within 30 s),
    /// older keys keep validating the tokens made with them until those have expired, then
    /// they are removed (by this command, the next time it runs).
    Rotate(RotateArgs),
}

#[derive(Args)]
struct RotateArgs {
    /// The longest token lifetime of the cloud's nodes, in seconds [default: 86400]
    #[arg(long, env = "STRATUS_TOKEN_EXPIRATION")]
    token_expiration: Option<i64>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Subcommand)]
enum SagaCommand {
    /// List sagas, newest first.
    List(SagaListArgs),
    /// Show a saga with its data and steps.
    Show(SagaIdArgs),
    /// Send a stuck saga back to its undo (a running node retries it).
    Retry(SagaIdArgs),
}

#[derive(Args)]
struct StoreArgs {
    /// Data directory [default: ./stratus-data]
    #[arg(long, env = "STRATUS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Metadata store, if not SQLite in the data dir
    #[arg(long, env = "STRATUS_DATABASE_URL")]
    database_url: Option<String>,
    /// TOML configuration file
    #[arg(long, env = "STRATUS_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct SagaListArgs {
    /// Only sagas in this state (repeatable): running, undoing, done, undone, stuck
    #[arg(long = "state")]
    states: Vec<String>,
    /// At most this many
    #[arg(long, default_value_t = 100)]
    limit: i64,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
struct SagaIdArgs {
    /// The saga's id
    saga_id: String,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Subcommand)]
enum ServerCommand {
    /// Print the disk files of a server, one path per line (root disk first).
    Disks(DisksArgs),
}

#[derive(Args)]
struct DisksArgs {
    /// The server's id
    server_id: String,
    /// Where image data and disks live, if not the data dir
    #[arg(long, env = "STRATUS_STORAGE_DIR")]
    storage_dir: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Explain, per action, whether a user would be allowed, and which policy statement decided.
    /// Exits 0 if allowed, 3 if denied.
    Simulate(SimulateArgs),
}

#[derive(Args)]
struct SimulateArgs {
    /// The user to simulate (name or id)
    #[arg(long)]
    user: String,
    /// The project the user would act in (name or id)
    #[arg(long)]
    project: Option<String>,
    /// The enterprise project of the resource
    #[arg(long)]
    enterprise_project: Option<String>,
    /// An action to decide (repeatable), e.g. ecs:servers:createImage
    #[arg(long = "action")]
    actions: Vec<String>,
    /// A route of the action catalogue: "METHOD PATH [BODY_KEY]"
    #[arg(long)]
    route: Option<String>,
    /// Request context, KEY=VALUE (repeatable), e.g. g:SourceIp=10.0.0.1
    #[arg(long = "context", value_parser = parse_kv)]
    context: Vec<(String, String)>,
    /// Print the API's JSON answer
    #[arg(long)]
    json: bool,
    /// Identity endpoint [default: http://127.0.0.1:8080/identity]
    #[arg(long, env = "OS_AUTH_URL")]
    os_auth_url: Option<String>,
    #[arg(long, env = "OS_USERNAME", default_value = "admin")]
    os_username: String,
    /// Password [default: the data dir's admin-password]
    #[arg(long, env = "OS_PASSWORD", hide_env_values = true)]
    os_password: Option<String>,
    #[arg(long, env = "OS_PROJECT_NAME", default_value = "admin")]
    os_project_name: String,
    #[arg(long, env = "OS_USER_DOMAIN_NAME", default_value = "Default")]
    os_user_domain_name: String,
    /// Data directory to read the admin password from [default: ./stratus-data]
    #[arg(long, env = "STRATUS_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

#[derive(Args)]
struct ServeArgs {
    /// Data directory (SQLite database, secrets, clouds.yaml) [default: ./stratus-data]
    #[arg(long, env = "STRATUS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "STRATUS_LISTEN")]
    listen: Option<String>,
    /// Metadata store: postgres://... for a shared store [default: SQLite in the data dir]
    #[arg(long, env = "STRATUS_DATABASE_URL")]
    database_url: Option<String>,
    /// Base URL clients use, if not http://<listen address>
    #[arg(long, env = "STRATUS_PUBLIC_URL")]
    public_url: Option<String>,
    /// Token lifetime in seconds [default: 86400]
    #[arg(long, env = "STRATUS_TOKEN_EXPIRATION")]
    token_expiration: Option<i64>,
    /// Where image data and disks live, if not the data dir (shared by nodes of one PostgreSQL
    /// store)
    #[arg(long, env = "STRATUS_STORAGE_DIR")]
    storage_dir: Option<PathBuf>,
    /// TOML file with any of: data_dir, listen, database_url, public_url, token_expiration,
    /// region, max_image_size, storage_dir, saga_lease_seconds, driver, accel, shutdown_timeout,
    /// guest_sync_interval, resume_guests_state_on_host_boot, [catalogue.dependencies]
    #[arg(long, env = "STRATUS_CONFIG")]
    config: Option<PathBuf>,
}

fn main() {
    release_large_frees();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Server(ServerCommand::Disks(args)) => server_disks(args),
        Command::Saga(cmd) => saga(cmd),
        Command::Token(TokenCommand::Rotate(args)) => rotate_tokens(args),
        Command::Policy(PolicyCommand::Simulate(args)) => match simulate(args) {
            Ok(true) => Ok(()),
            Ok(false) => std::process::exit(3),
            Err(e) => Err(e),
        },
    };
    if let Err(e) = result {
        // One line: the cause chain, outermost first.
        let msg = e
            .chain()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(": ");
        eprintln!("stratus: error: {msg}");
        std::process::exit(1);
    }
}

/// glibc raises its mmap threshold after a large block is freed, after which such blocks stay in
/// the heap; the 19 MiB argon2id buffer of every password check would then stay resident. A fixed
/// threshold keeps large blocks in their own mappings, returned to the system when freed.
fn release_large_frees() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn serve(args: ServeArgs) -> Result<()> {
    init_logging();
    let file = match &args.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let mut cfg = Config::resolve(
        args.data_dir,
        args.listen,
        args.database_url,
        args.public_url,
        args.token_expiration,
        file,
    )?;
    if args.storage_dir.is_some() {
        cfg.storage_dir = args.storage_dir;
    }
    if let Ok(lease) = std::env::var("STRATUS_SAGA_LEASE_SECONDS") {
        cfg.saga_lease_seconds = lease
            .parse::<f64>()
            .ok()
            .filter(|l| *l > 0.0 && *l <= 86400.0)
            .ok_or_else(|| anyhow::anyhow!("invalid STRATUS_SAGA_LEASE_SECONDS {lease:?}"))?;
    }
    cfg.saga_faults = std::env::var("STRATUS_SAGA_FAULTS").unwrap_or_default();
    for (var, slot) in [
        ("STRATUS_HEADER_READ_TIMEOUT", &mut cfg.header_read_timeout),
        ("STRATUS_BODY_IDLE_TIMEOUT", &mut cfg.body_idle_timeout),
        ("STRATUS_SHUTDOWN_TIMEOUT", &mut cfg.shutdown_timeout),
        ("STRATUS_GUEST_SYNC_INTERVAL", &mut cfg.guest_sync_interval),
    ] {
        if let Ok(v) = std::env::var(var) {
            let secs = v
                .parse::<f64>()
                .map_err(|_| anyhow::anyhow!("invalid {var} {v:?}"))?;
            *slot = stratus::config::seconds(var, secs)?;
        }
    }
    if let Ok(v) = std::env::var("STRATUS_MAX_CONNECTIONS") {
        cfg.max_connections = v
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| anyhow::anyhow!("invalid STRATUS_MAX_CONNECTIONS {v:?}"))?;
    }
    if let Ok(v) = std::env::var("STRATUS_RESUME_GUESTS_STATE_ON_HOST_BOOT") {
        cfg.resume_guests_state_on_host_boot = match v.as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => anyhow::bail!("invalid STRATUS_RESUME_GUESTS_STATE_ON_HOST_BOOT {v:?}"),
        };
    }
    if let Ok(v) = std::env::var("STRATUS_DRIVER") {
        cfg.driver = stratus::config::DriverKind::parse(&v)?;
    }
    if let Ok(v) = std::env::var("STRATUS_ACCEL") {
        cfg.accel = stratus::config::accel(&v)?;
    }
    if let Ok(list) = std::env::var("STRATUS_TRUSTED_PROXIES") {
        cfg.trusted_proxies = stratus::config::proxies(
            list.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect(),
        )?;
    }
    if let Ok(list) = std::env::var("STRATUS_IMAGE_IMPORT_ALLOW") {
        cfg.image_import_allow = stratus::config::check_import_allow(
            list.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect(),
        )?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let running = stratus::start(&cfg, shutdown_signal()).await?;
        println!(
            "stratus {} listening on {}",
            env!("CARGO_PKG_VERSION"),
            running.public_url
        );
        println!("  identity: {}/identity/v3", running.public_url);
        let huawei: Vec<String> = running
            .huawei
            .iter()
            .map(|(e, url)| format!("{} {url}", e.name()))
            .collect();
        println!("  huawei cloud endpoints: {}", huawei.join(", "));
        println!("  data dir: {}", running.data_dir.path().display());
        println!("  guests: {}", running.guests);
        if let Some(pw) = &running.admin_password {
            println!("  first start: created user 'admin' with password {pw}");
            println!(
                "  (stored in {}, mode 0600)",
                running.data_dir.path().join("admin-password").display()
            );
        }
        if let Some(cy) = &running.clouds_yaml {
            println!("  clouds.yaml: {}", cy.display());
            println!(
                "  try: OS_CLIENT_CONFIG_FILE={} openstack --os-cloud {} token issue",
                cy.display(),
                stratus::CLOUD_NAME
            );
        }
        if let Some(h) = &running.huawei_json {
            println!("  huaweicloud.json (for Huawei's SDKs): {}", h.display());
        }
        running.wait().await?;
        tracing::info!("stopped");
        Ok(())
    })
}

fn server_disks(a: DisksArgs) -> Result<()> {
    let mut cfg = store_config(a.store)?;
    if a.storage_dir.is_some() {
        cfg.storage_dir = a.storage_dir;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for p in rt.block_on(stratus::server_disks(&cfg, &a.server_id))? {
        println!("{}", p.display());
    }
    Ok(())
}

fn store_config(a: StoreArgs) -> Result<Config> {
    let file = match &a.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    Config::resolve(a.data_dir, None, a.database_url, None, None, file)
}

fn rotate_tokens(a: RotateArgs) -> Result<()> {
    let file = match &a.store.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let cfg = Config::resolve(
        a.store.data_dir,
        None,
        a.store.database_url,
        None,
        a.token_expiration,
        file,
    )?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let r = rt.block_on(stratus::rotate_token_keys(&cfg))?;
    let ids = |v: &[i64]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
        }
    };
    println!("new primary token key: {}", r.primary);
    println!(
        "older keys kept (tokens made with them may be unexpired): {}",
        ids(&r.kept)
    );
    println!(
        "older keys removed (every token made with them has expired): {}",
        ids(&r.pruned)
    );
    Ok(())
}

fn saga(cmd: SagaCommand) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cmd {
        SagaCommand::List(a) => {
            let states = a
                .states
                .iter()
                .map(|s| s.parse::<stratus_store::SagaState>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    let all: Vec<&str> = stratus_store::SagaState::ALL
                        .iter()
                        .map(|s| s.as_str())
                        .collect();
                    anyhow::anyhow!("{e}; one of {}", all.join(", "))
                })?;
            let cfg = store_config(a.store)?;
            print!(
                "{}",
                rt.block_on(stratus::saga_cli::list(&cfg, &states, a.limit))?
            );
        }
        SagaCommand::Show(a) => {
            let cfg = store_config(a.store)?;
            print!(
                "{}",
                rt.block_on(stratus::saga_cli::show(&cfg, &a.saga_id))?
            );
        }
        SagaCommand::Retry(a) => {
            let cfg = store_config(a.store)?;
            if !rt.block_on(stratus::saga_cli::retry(&cfg, &a.saga_id))? {
                anyhow::bail!("saga {} is not stuck (or does not exist)", a.saga_id);
            }
            println!("saga {} will be undone again by a running node", a.saga_id);
        }
    }
    Ok(())
}

fn simulate(a: SimulateArgs) -> Result<bool> {
    let password = match a.os_password {
        Some(p) => p,
        None => {
            let dir = a
                .data_dir
                .unwrap_or_else(|| PathBuf::from(stratus::config::DEFAULT_DATA_DIR));
            let f = dir.join("admin-password");
            std::fs::read_to_string(&f)
                .map(|s| s.trim().to_string())
                .map_err(|e| {
                    anyhow::anyhow!(
                        "no --os-password given and {} is unreadable: {e}",
                        f.display()
                    )
                })?
        }
    };
    let conn = stratus::policy_cli::Connection {
        auth_url: a
            .os_auth_url
            .unwrap_or_else(|| format!("http://{}/identity", stratus::config::DEFAULT_LISTEN)),
        username: a.os_username,
        password,
        project: a.os_project_name,
        user_domain: a.os_user_domain_name,
    };
    let sim = stratus::policy_cli::Simulate {
        user: a.user,
        project: a.project,
        enterprise_project: a.enterprise_project,
        actions: a.actions,
        route: a.route,
        context: a.context,
        json: a.json,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(stratus::policy_cli::simulate(conn, sim))
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
