//! Configuration of `stratus serve`: command line, then environment, then a TOML file, then
//! defaults.

use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const DEFAULT_DATA_DIR: &str = "./stratus-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_TOKEN_EXPIRATION: i64 = 24 * 3600;
pub const DEFAULT_REGION: &str = "RegionOne";
/// 1 TiB, as Glance's default `image_size_cap`.
pub const DEFAULT_MAX_IMAGE_SIZE: u64 = 1 << 40;
/// Seconds a client has to send a request's headers.
pub const DEFAULT_HEADER_READ_TIMEOUT: f64 = 10.0;
/// Connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Seconds a request body may stall.
pub const DEFAULT_BODY_IDLE_TIMEOUT: f64 = 30.0;
/// Seconds a guest has to power off when asked (upstream's `shutdown_timeout`).
pub const DEFAULT_SHUTDOWN_TIMEOUT: f64 = 60.0;
/// Seconds between two syncs of power states with guests.
pub const DEFAULT_GUEST_SYNC_INTERVAL: f64 = 10.0;

/// How long a node holds a saga without renewing its lease before another node may take it.
pub const DEFAULT_SAGA_LEASE_SECONDS: f64 = 30.0;

/// Settings a config file may carry (all optional). Unknown keys are an error, so typos show.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub public_url: Option<String>,
    pub token_expiration: Option<i64>,
    pub region: Option<String>,
    pub max_image_size: Option<u64>,
    pub storage_dir: Option<PathBuf>,
    pub saga_lease_seconds: Option<f64>,
    /// URL prefixes an image's `web-download` import may fetch; none turns the method off.
    pub image_import_allow: Option<Vec<String>>,
    /// Seconds a client has to send a request's headers (and a kept-alive connection may idle).
    pub header_read_timeout: Option<f64>,
    /// Connections served at once.
    pub max_connections: Option<usize>,
    /// Seconds a request body may stall before the request fails (an upload stops, its image
    /// returns to `queued`).
    pub body_idle_timeout: Option<f64>,
    /// Proxies (addresses or CIDR networks) whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Option<Vec<String>>,
    /// Login protection: lock an account after this many wrong passwords (0: never)...
    pub login_lockout_failures: Option<i64>,
    /// ... within this many seconds ...
    pub login_lockout_window: Option<f64>,
    /// ... for this many seconds.
    pub login_lockout_duration: Option<f64>,
    /// What runs servers: `auto` (QEMU guests where `qemu-system-x86_64` is installed, else
    /// none; the default), `qemu` (real guests) or `none` (disks only).
    pub driver: Option<String>,
    /// The accelerator of QEMU guests: `auto` (KVM if a probe guest runs under it, else TCG),
    /// `kvm` or `tcg`.
    pub accel: Option<String>,
    /// Seconds a guest has to power off when asked (ACPI) before it is stopped hard.
    pub shutdown_timeout: Option<f64>,
    /// Seconds between two syncs of the servers' power states with their guests.
    pub guest_sync_interval: Option<f64>,
    /// Boot again, when `stratus serve` starts, the guests of servers recorded running whose
    /// QEMU is gone (the machine restarted, say), instead of showing them SHUTOFF [false]
    /// (upstream's `resume_guests_state_on_host_boot`).
    pub resume_guests_state_on_host_boot: Option<bool>,
    /// vCPUs this node's servers may take together [default with the qemu driver: the machine's
    /// cores × 16, upstream's CPU overcommit; with the none driver: no limit].
    pub host_vcpus: Option<i64>,
    /// RAM (MB) this node's servers may take together [default with the qemu driver: the
    /// machine's memory; with the none driver: no limit].
    pub host_memory_mb: Option<i64>,
    #[serde(default)]
    pub catalogue: CatalogueConfig,
    /// Addresses of Huawei Cloud's service endpoints (`[huawei_listen]`, keys `iam`, `ecs`,
    /// `ims`, `evs`) [default: the host of `listen`, its port + 1, + 2, + 3, + 4; port 0 picks
    /// free ports].
    #[serde(default)]
    pub huawei_listen: HuaweiListen,
}

/// Where each Huawei service endpoint listens, if not where the default puts it.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HuaweiListen {
    pub iam: Option<String>,
    pub ecs: Option<String>,
    pub ims: Option<String>,
    pub evs: Option<String>,
}

/// What runs servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    /// Real guests under QEMU where it is installed, else none (the default).
    Auto,
    /// Real guests under QEMU.
    Qemu,
    /// No guests: a server is its disks.
    None,
}

impl DriverKind {
    pub fn parse(s: &str) -> Result<DriverKind> {
        match s {
            "auto" => Ok(DriverKind::Auto),
            "qemu" => Ok(DriverKind::Qemu),
            "none" => Ok(DriverKind::None),
            other => anyhow::bail!("driver must be auto, qemu or none, not {other:?}"),
        }
    }
}

/// Parses an accelerator setting: `None` for `auto` (probe).
pub fn accel(s: &str) -> Result<Option<stratus_driver::accel::Accel>> {
    if s == "auto" {
        return Ok(None);
    }
    stratus_driver::accel::Accel::parse(s)
        .map(Some)
        .ok_or_else(|| anyhow::anyhow!("accel must be auto, kvm or tcg, not {s:?}"))
}

/// `[catalogue]`: deployment overrides of the action catalogue.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogueConfig {
    /// Entry key (`METHOD path[ body_key]`) → the dependency actions that replace the shipped ones.
    #[serde(default)]
    pub dependencies: std::collections::BTreeMap<String, Vec<String>>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }
}

/// The resolved settings of a server.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// `host:port`; port 0 picks a free port.
    pub listen: String,
    /// `sqlite://...` or `postgres://...`; `None` means SQLite in the data dir.
    pub database_url: Option<String>,
    /// Base URL clients use; `None` means `http://<bound address>`.
    pub public_url: Option<String>,
    /// Token lifetime in seconds.
    pub token_expiration: i64,
    pub region: String,
    /// Largest image data accepted, in bytes (413 above).
    pub max_image_size: u64,
    /// Where image data, disks and work files live; `None` means the data dir. Nodes sharing a
    /// PostgreSQL store share it too (a shared file system), so any node can finish another's work.
    pub storage_dir: Option<std::path::PathBuf>,
    /// Saga lease, in seconds.
    pub saga_lease_seconds: f64,
    /// Fault injection for crash tests (`STRATUS_SAGA_FAULTS`); empty in normal use.
    pub saga_faults: String,
    /// URL prefixes an image's `web-download` import may fetch (empty: the method is off).
    pub image_import_allow: Vec<String>,
    pub header_read_timeout: std::time::Duration,
    pub max_connections: usize,
    pub body_idle_timeout: std::time::Duration,
    pub trusted_proxies: Vec<stratus_api::Cidr>,
    pub login_protection: stratus_services::identity::LoginProtection,
    pub catalogue: CatalogueConfig,
    pub driver: DriverKind,
    /// `None`: probe.
    pub accel: Option<stratus_driver::accel::Accel>,
    pub shutdown_timeout: std::time::Duration,
    pub guest_sync_interval: std::time::Duration,
    pub resume_guests_state_on_host_boot: bool,
    pub host_vcpus: Option<i64>,
    pub host_memory_mb: Option<i64>,
    /// Huawei's endpoints given explicitly; the others follow `listen` ([`Config::huawei`]).
    pub huawei_listen: HuaweiListen,
}

impl Config {
    /// Where each Huawei service endpoint listens: as set, else beside `listen` (its port + 1
    /// for IAM, + 2 for ECS, + 3 for IMS, + 4 for EVS; port 0 stays 0, a free port).
    pub fn huawei(&self) -> Result<Vec<(stratus_api::huawei::Endpoint, String)>> {
        use stratus_api::huawei::Endpoint;
        let (host, port) = self
            .listen
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .ok_or_else(|| anyhow::anyhow!("listen {:?} is not host:port", self.listen))?;
        let h = &self.huawei_listen;
        Endpoint::ALL
            .iter()
            .zip([&h.iam, &h.ecs, &h.ims, &h.evs])
            .zip(1u16..)
            .map(|((&e, set), k)| {
                let addr = match set {
                    Some(a) => a.clone(),
                    None if port == 0 => format!("{host}:0"),
                    None => format!(
                        "{host}:{}",
                        port.checked_add(k).ok_or_else(|| anyhow::anyhow!(
                            "listen port {port} leaves no room for the Huawei endpoints: set [huawei_listen]"
                        ))?
                    ),
                };
                Ok((e, addr))
            })
            .collect()
    }

    /// Where image data, disks and work files live.
    pub fn storage(&self) -> PathBuf {
        self.storage_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.clone())
    }

    /// The same settings with the data and storage dirs made absolute against the current
    /// directory, once, so that nothing later depends on where the process runs from (qemu
    /// resolves relative paths against other directories).
    pub fn with_absolute_dirs(mut self) -> Result<Config> {
        self.data_dir = std::path::absolute(&self.data_dir)
            .with_context(|| format!("cannot resolve data dir {}", self.data_dir.display()))?;
        if let Some(s) = &self.storage_dir {
            self.storage_dir = Some(
                std::path::absolute(s)
                    .with_context(|| format!("cannot resolve storage dir {}", s.display()))?,
            );
        }
        Ok(self)
    }

    pub fn with_data_dir(dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: dir.into(),
            listen: DEFAULT_LISTEN.into(),
            database_url: None,
            public_url: None,
            token_expiration: DEFAULT_TOKEN_EXPIRATION,
            region: DEFAULT_REGION.into(),
            max_image_size: DEFAULT_MAX_IMAGE_SIZE,
            storage_dir: None,
            saga_lease_seconds: DEFAULT_SAGA_LEASE_SECONDS,
            saga_faults: String::new(),
            image_import_allow: Vec::new(),
            header_read_timeout: std::time::Duration::from_secs_f64(DEFAULT_HEADER_READ_TIMEOUT),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            body_idle_timeout: std::time::Duration::from_secs_f64(DEFAULT_BODY_IDLE_TIMEOUT),
            trusted_proxies: Vec::new(),
            login_protection: stratus_services::identity::LoginProtection::default(),
            catalogue: CatalogueConfig::default(),
            driver: DriverKind::Auto,
            accel: None,
            shutdown_timeout: std::time::Duration::from_secs_f64(DEFAULT_SHUTDOWN_TIMEOUT),
            guest_sync_interval: std::time::Duration::from_secs_f64(DEFAULT_GUEST_SYNC_INTERVAL),
            resume_guests_state_on_host_boot: false,
            host_vcpus: None,
            host_memory_mb: None,
            huawei_listen: HuaweiListen::default(),
        }
    }

    /// Layers explicit settings (command line or environment) over a file over defaults.
    pub fn resolve(
        cli_data_dir: Option<PathBuf>,
        cli_listen: Option<String>,
        cli_database_url: Option<String>,
        cli_public_url: Option<String>,
        cli_token_expiration: Option<i64>,
        file: FileConfig,
    ) -> Result<Config> {
        let token_expiration = cli_token_expiration
            .or(file.token_expiration)
            .unwrap_or(DEFAULT_TOKEN_EXPIRATION);
        if token_expiration <= 0 {
            anyhow::bail!(
                "token expiration must be a positive number of seconds, not {token_expiration}"
            );
        }
        let saga_lease_seconds = file
            .saga_lease_seconds
            .unwrap_or(DEFAULT_SAGA_LEASE_SECONDS);
        if !(saga_lease_seconds > 0.0 && saga_lease_seconds <= 86400.0) {
            anyhow::bail!(
                "saga_lease_seconds must be between 0 and 86400 seconds, not {saga_lease_seconds}"
            );
        }
        Ok(Config {
            data_dir: cli_data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            listen: cli_listen
                .or(file.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.into()),
            database_url: cli_database_url.or(file.database_url),
            public_url: cli_public_url
                .or(file.public_url)
                .map(|u| u.trim_end_matches('/').to_string()),
            token_expiration,
            region: file.region.unwrap_or_else(|| DEFAULT_REGION.into()),
            max_image_size: file.max_image_size.unwrap_or(DEFAULT_MAX_IMAGE_SIZE),
            storage_dir: file.storage_dir,
            saga_lease_seconds,
            saga_faults: String::new(),
            image_import_allow: check_import_allow(file.image_import_allow.unwrap_or_default())?,
            header_read_timeout: seconds(
                "header_read_timeout",
                file.header_read_timeout
                    .unwrap_or(DEFAULT_HEADER_READ_TIMEOUT),
            )?,
            max_connections: match file.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS) {
                0 => anyhow::bail!("max_connections must be at least 1"),
                n => n,
            },
            body_idle_timeout: seconds(
                "body_idle_timeout",
                file.body_idle_timeout.unwrap_or(DEFAULT_BODY_IDLE_TIMEOUT),
            )?,
            trusted_proxies: proxies(file.trusted_proxies.unwrap_or_default())?,
            login_protection: stratus_services::identity::LoginProtection {
                max_failures: match file.login_lockout_failures.unwrap_or(0) {
                    n if (0..=1000).contains(&n) => n,
                    n => anyhow::bail!("login_lockout_failures must be 0 to 1000, not {n}"),
                },
                window_micros: seconds(
                    "login_lockout_window",
                    file.login_lockout_window.unwrap_or(900.0),
                )?
                .as_micros() as i64,
                lockout_micros: seconds(
                    "login_lockout_duration",
                    file.login_lockout_duration.unwrap_or(900.0),
                )?
                .as_micros() as i64,
            },
            catalogue: file.catalogue,
            driver: DriverKind::parse(file.driver.as_deref().unwrap_or("auto"))?,
            accel: accel(file.accel.as_deref().unwrap_or("auto"))?,
            shutdown_timeout: seconds(
                "shutdown_timeout",
                file.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
            )?,
            guest_sync_interval: seconds(
                "guest_sync_interval",
                file.guest_sync_interval
                    .unwrap_or(DEFAULT_GUEST_SYNC_INTERVAL),
            )?,
            resume_guests_state_on_host_boot: file
                .resume_guests_state_on_host_boot
                .unwrap_or(false),
            host_vcpus: positive("host_vcpus", file.host_vcpus)?,
            host_memory_mb: positive("host_memory_mb", file.host_memory_mb)?,
            huawei_listen: file.huawei_listen,
        })
    }
}

/// The web-download allow-list: absolute http(s) URL prefixes with a host, so that a prefix
/// cannot match more hosts than it names (`https://example.org` would take
/// `https://example.org.evil.net`: prefixes end with `/`).
pub fn check_import_allow(list: Vec<String>) -> Result<Vec<String>> {
    for p in &list {
        let rest = p
            .strip_prefix("https://")
            .or_else(|| p.strip_prefix("http://"));
        let ok = rest.is_some_and(|r| r.find('/').is_some_and(|slash| slash > 0));
        if !ok {
            anyhow::bail!(
                "image_import_allow entry {p:?} must be an http(s) URL prefix ending its host with '/', such as \"https://images.example.org/\""
            );
        }
    }
    Ok(list)
}

/// A setting that must be positive when given.
fn positive(what: &str, v: Option<i64>) -> Result<Option<i64>> {
    match v {
        Some(n) if n <= 0 => anyhow::bail!("{what} must be positive, not {n}"),
        other => Ok(other),
    }
}

impl Config {
    /// What this node's guests may take together: set, or the machine's with the qemu driver.
    pub fn capacity(&self) -> Option<stratus_services::guests::Capacity> {
        let given = self.host_vcpus.is_some() || self.host_memory_mb.is_some();
        let runs_guests = match self.driver {
            DriverKind::None => false,
            DriverKind::Qemu => true,
            DriverKind::Auto => stratus_driver::qemu::find_qemu().is_some(),
        };
        if !runs_guests && !given {
            return None;
        }
        let machine = stratus_services::guests::Capacity::of_this_machine();
        Some(stratus_services::guests::Capacity {
            vcpus: self.host_vcpus.unwrap_or(machine.vcpus),
            ram_mb: self.host_memory_mb.unwrap_or(machine.ram_mb),
        })
    }
}

/// A positive number of seconds, at most a day.
pub fn seconds(what: &str, s: f64) -> Result<std::time::Duration> {
    if !(s > 0.0 && s <= 86400.0) {
        anyhow::bail!("{what} must be between 0 and 86400 seconds, not {s}");
    }
    Ok(std::time::Duration::from_secs_f64(s))
}

/// Trusted proxies, as addresses or CIDR networks.
pub fn proxies(list: Vec<String>) -> Result<Vec<stratus_api::Cidr>> {
    list.iter()
        .map(|p| {
            p.parse::<stratus_api::Cidr>().map_err(|_| {
                anyhow::anyhow!("trusted_proxies entry {p:?} is not an address or a CIDR network")
            })
        })
        .collect()
}
