//! The stratus server as a library: what `stratus serve` runs, also started in-process by tests.

pub mod config;
mod datadir;
pub mod http;
pub mod policy_cli;
pub mod saga_cli;

use anyhow::{Context, Result};
use config::Config;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use stratus_api::AppState;
use stratus_services::authz::Authorizer;
use stratus_services::compute::Compute;
use stratus_services::create_image::{self, ImageSagas};
use stratus_services::disks::Disks;
use stratus_services::guests::Guests;
use stratus_services::iam::Iam;
use stratus_services::identity::Identity;
use stratus_services::images::import::{ImageImport, ImportSagas, Imports};
use stratus_services::images::Images;
use stratus_services::policy::Catalogue;
use stratus_services::rebuild;
use stratus_services::saga::{Faults, LeaseTimes, Sagas};
use stratus_services::volumes::Volumes;
use stratus_services::{bootstrap, demo};
use stratus_store::Store;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use datadir::DataDir;

/// Name of the cloud `clouds.yaml` defines.
pub const CLOUD_NAME: &str = "stratus-admin";

/// A started server. Dropping it does not stop it; call [`Running::shutdown`].
pub struct Running {
    pub addr: SocketAddr,
    pub public_url: String,
    pub data_dir: DataDir,
    pub store: Arc<Store>,
    /// Set on the very first start: the generated admin password.
    pub admin_password: Option<String>,
    /// Path of the written `clouds.yaml`, if the admin password is known.
    pub clouds_yaml: Option<PathBuf>,
    /// The router the listener serves, for requests handed to it directly (without a socket).
    pub app: axum::Router,
    /// Huawei Cloud's service endpoints (IAM, ECS, IMS, EVS), each on its own listener.
    pub huawei: Vec<(stratus_api::huawei::Endpoint, String)>,
    /// `huaweicloud.json` (the endpoints, region, ids a Huawei SDK needs), beside `clouds.yaml`.
    pub huawei_json: Option<PathBuf>,
    /// Dropping the sender would stop the server, so it is held until the task ends.
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    /// What runs guests here (`qemu (tcg)`, `none (disks only)`).
    pub guests: String,
    /// Looks for sagas to resume; stopped with the server.
    scanner: JoinHandle<()>,
    /// Syncs servers' power states with their guests; stopped with the server (the guests
    /// keep running).
    guest_sync: JoinHandle<()>,
}

impl Running {
    /// Stops accepting, finishes in-flight requests, closes the store.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.wait().await
    }

    /// Waits until the server stops by itself (after a signal, for `stratus serve`).
    pub async fn wait(self) -> Result<()> {
        let Running {
            task,
            store,
            data_dir,
            stop,
            scanner,
            guest_sync,
            ..
        } = self;
        let served = task.await.context("server task panicked");
        scanner.abort();
        guest_sync.abort();
        served??;
        drop(stop);
        store.close().await;
        drop(data_dir);
        Ok(())
    }
}

/// Opens the data dir and the store, bootstraps, and starts serving. Returns once the listener
/// is bound. `stop_signal` ends the server gracefully when it completes.
pub async fn start(
    cfg: &Config,
    stop_signal: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Running> {
    let cfg = &cfg.clone().with_absolute_dirs()?;
    private_files();
    let data_dir = DataDir::open(&cfg.data_dir)?;
    let url = match &cfg.database_url {
        Some(u) => u.clone(),
        None => data_dir.sqlite_url(),
    };
    let store = Arc::new(
        Store::open(&url)
            .await
            .with_context(|| format!("cannot open the metadata store {}", redact(&url)))?,
    );
    let catalogue = Arc::new(load_catalogue(cfg)?);
    let boot = bootstrap::bootstrap(&store, &cfg.region, &catalogue)
        .await
        .context("bootstrap failed")?;
    if let Some(pw) = &boot.admin_password {
        data_dir.write_secret("admin-password", &format!("{pw}\n"))?;
    }
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let public_url = cfg
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let clouds_yaml = match data_dir.read_secret("admin-password")? {
        Some(pw) => {
            Some(data_dir.write_clouds_yaml(CLOUD_NAME, &public_url, pw.trim(), &cfg.region)?)
        }
        None => None,
    };
    let storage = cfg.storage();
    private_dir(&storage)?;
    let identity = Arc::new(
        Identity::new(store.clone(), cfg.token_expiration)
            .await
            .context("cannot load identity state")?
            .with_login_protection(cfg.login_protection)
            .with_credential_key(credential_key(&storage)?),
    );
    let mut huawei_listeners = Vec::new();
    for (endpoint, at) in cfg.huawei()? {
        let l = tokio::net::TcpListener::bind(&at).await.with_context(|| {
            format!(
                "cannot listen on {at} for Huawei's {} endpoint",
                endpoint.name()
            )
        })?;
        huawei_listeners.push((endpoint, l));
    }
    let huawei: Vec<(stratus_api::huawei::Endpoint, String)> = huawei_listeners
        .iter()
        .map(|(e, l)| Ok((*e, format!("http://{}", l.local_addr()?))))
        .collect::<std::io::Result<_>>()?;
    let huawei_json = match &clouds_yaml {
        Some(_) => Some(huawei_snippet(&data_dir, &store, &cfg.region, &huawei).await?),
        None => None,
    };
    let authz = Arc::new(Authorizer::new(store.clone(), catalogue));
    let iam = Arc::new(Iam::new(store.clone(), authz.clone()));
    let images = Arc::new(
        Images::new(store.clone(), storage.join("images"), cfg.max_image_size)
            .context("cannot open the image store")?,
    );
    let admin_project = stratus_store::project_by_name(
        store.pool(),
        bootstrap::DEFAULT_DOMAIN_ID,
        bootstrap::ADMIN_PROJECT,
    )
    .await?;
    if let Some(p) = admin_project {
        let work = storage.join("tmp");
        if let Err(e) = demo::ensure_demo_image(&store, &images, &p.id, &work).await {
            tracing::warn!("the demo image could not be registered: {e}");
        }
    }
    let node = data_dir.node_id()?;
    let disks = Arc::new(Disks::new(storage.join("disks"), &node));
    let purged = disks.purge_partial_fills().await;
    if purged > 0 {
        tracing::info!("removed {purged} image cache fills left half-made");
    }
    let qemu_installed = stratus_driver::qemu::find_qemu().is_some();
    let driver: Arc<dyn stratus_driver::ComputeDriver> = match cfg.driver {
        config::DriverKind::None => Arc::new(stratus_driver::NoGuests),
        config::DriverKind::Auto if !qemu_installed => {
            tracing::warn!(
                "qemu-system-x86_64 is not installed: servers run no guest (Debian: apt-get \
                 install qemu-system-x86)"
            );
            Arc::new(stratus_driver::NoGuests)
        }
        config::DriverKind::Auto | config::DriverKind::Qemu => Arc::new(
            stratus_driver::qemu::QemuDriver::new(data_dir.path().join("guests"), None, cfg.accel)
                .await
                .context("cannot run guests")?,
        ),
    };
    let guests = Arc::new(Guests::new(
        store.clone(),
        disks.clone(),
        driver,
        cfg.shutdown_timeout,
        cfg.capacity(),
    ));
    let quotas = Arc::new(stratus_services::quotas::Quotas::new(store.clone()));
    let sagas = Arc::new(Sagas::new(
        store.clone(),
        node,
        LeaseTimes {
            lease: std::time::Duration::from_secs_f64(cfg.saga_lease_seconds),
        },
        Faults::parse(&cfg.saga_faults),
        data_dir.path().to_path_buf(),
    ));
    let volumes = Arc::new(Volumes::new(
        store.clone(),
        images.clone(),
        disks.clone(),
        quotas,
        sagas.clone(),
        guests.clone(),
    ));
    let image_sagas = Arc::new(ImageSagas {
        store: store.clone(),
        images: images.clone(),
        volumes: volumes.clone(),
        disks: disks.clone(),
        guests: guests.clone(),
    });
    sagas.register::<create_image::ImageBacked>(image_sagas.clone());
    sagas.register::<create_image::VolumeBacked>(image_sagas.clone());
    sagas.register::<create_image::Backup>(image_sagas);
    sagas.register::<rebuild::Rebuild>(Arc::new(rebuild::RebuildSagas {
        store: store.clone(),
        images: images.clone(),
        disks: disks.clone(),
        guests: guests.clone(),
    }));
    let compute = Arc::new(Compute::new(
        store.clone(),
        images.clone(),
        volumes.clone(),
        disks,
        guests.clone(),
        sagas.clone(),
    ));
    sagas.register::<ImageImport>(Arc::new(ImportSagas {
        images: images.clone(),
        web_download_allow: cfg.image_import_allow.clone(),
    }));
    let imports = Arc::new(Imports::new(
        images.clone(),
        sagas.clone(),
        cfg.image_import_allow.clone(),
    ));
    // Resumes this node's interrupted sagas now, and any node's whose lease runs out later.
    let scanner = sagas.spawn_scanner();
    // Notices guests that died while this node was down (or boots them again, if so set), then
    // keeps watching.
    let guest_sync = guests.spawn_sync(
        cfg.guest_sync_interval,
        cfg.resume_guests_state_on_host_boot,
    );
    let guests_described = guests.driver().describe();
    let state = Arc::new(AppState {
        identity,
        directory: Arc::new(stratus_services::directory::Directory::new(store.clone())),
        authz,
        iam,
        images,
        compute,
        volumes,
        imports,
        jobs: Arc::new(stratus_services::jobs::Jobs::new(store.clone())),
        public_url: public_url.clone(),
        http: stratus_api::HttpSettings {
            body_idle_timeout: cfg.body_idle_timeout,
            trusted_proxies: cfg.trusted_proxies.clone(),
        },
        openapi: Default::default(),
    });
    let app = stratus_api::router(state);
    let served = app.clone();
    let limits = http::ConnectionLimits {
        header_read_timeout: cfg.header_read_timeout,
        max_connections: cfg.max_connections,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    // The Huawei endpoints stop when the main listener does.
    let (halt, halted) = tokio::sync::watch::channel(false);
    let mut huawei_tasks = Vec::new();
    for (endpoint, l) in huawei_listeners {
        let mut halted = halted.clone();
        let app = stratus_api::huawei::router(app.clone(), endpoint);
        huawei_tasks.push(tokio::spawn(http::serve(l, app, limits, async move {
            let _ = halted.wait_for(|h| *h).await;
        })));
    }
    let task = tokio::spawn(async move {
        let signal = async move {
            tokio::select! {
                _ = stop_signal => {},
                _ = stopped => {},
            }
            let _ = halt.send(true);
        };
        let served = http::serve(listener, served, limits, signal).await;
        for t in huawei_tasks {
            match t.await {
                Ok(Err(e)) => tracing::warn!("a Huawei endpoint failed: {e}"),
                Err(e) => tracing::warn!("a Huawei endpoint's task failed: {e}"),
                Ok(Ok(())) => {}
            }
        }
        served
    });
    Ok(Running {
        addr,
        public_url,
        data_dir,
        store,
        admin_password: boot.admin_password,
        clouds_yaml,
        app,
        huawei,
        huawei_json,
        stop: Some(stop),
        task,
        scanner,
        guests: guests_described,
        guest_sync,
    })
}

/// The key that encrypts access keys' secrets in the store: `credential.key` in the storage dir
/// (which nodes of one store share), made at the first start.
fn credential_key(
    storage: &std::path::Path,
) -> Result<stratus_services::access_keys::CredentialKey> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = storage.join("credential.key");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let b = stratus_services::access_keys::CredentialKey::generate();
            let tmp = storage.join(format!("credential.key.{}", std::process::id()));
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            f.write_all(&b)?;
            f.sync_all()?;
            // Another node may have made one meanwhile: the first one made stays.
            if std::fs::hard_link(&tmp, &path).is_err() && !path.exists() {
                anyhow::bail!("cannot create {}", path.display());
            }
            let _ = std::fs::remove_file(&tmp);
            std::fs::read(&path)?
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let key: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("{} is not a 32-byte key", path.display()))?;
    Ok(stratus_services::access_keys::CredentialKey::from_bytes(
        &key,
    ))
}

/// Writes `huaweicloud.json` beside `clouds.yaml`: what a Huawei SDK needs to reach this cloud
/// as the admin (endpoints, region, the admin's domain and project ids). The admin's access key
/// is made with the IAM API, not here.
async fn huawei_snippet(
    data_dir: &DataDir,
    store: &Store,
    region: &str,
    huawei: &[(stratus_api::huawei::Endpoint, String)],
) -> Result<PathBuf> {
    let project = stratus_store::project_by_name(
        store.pool(),
        bootstrap::DEFAULT_DOMAIN_ID,
        bootstrap::ADMIN_PROJECT,
    )
    .await?;
    let endpoints: serde_json::Map<String, serde_json::Value> = huawei
        .iter()
        .map(|(e, url)| (e.name().to_string(), serde_json::Value::from(url.clone())))
        .collect();
    let doc = serde_json::json!({
        "region": region,
        "domain_id": bootstrap::DEFAULT_DOMAIN_ID,
        "project_id": project.map(|p| p.id),
        "endpoints": endpoints,
    });
    data_dir.write_secret("huaweicloud.json", &format!("{doc:#}\n"))
}

/// The shipped action catalogue with the deployment's overrides applied.
pub fn load_catalogue(cfg: &Config) -> Result<Catalogue> {
    let mut c = Catalogue::shipped()?;
    for (key, deps) in &cfg.catalogue.dependencies {
        c.override_dependencies(key, deps.clone())
            .with_context(|| format!("invalid [catalogue.dependencies] override {key:?}"))?;
    }
    Ok(c)
}

/// A database URL with any password hidden, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Opens the metadata store a configuration names, without the data dir's lock (operator tools).
pub(crate) async fn open_store(cfg: &Config) -> Result<Store> {
    let url = match &cfg.database_url {
        Some(u) => u.clone(),
        None => datadir::sqlite_url_of(&cfg.data_dir),
    };
    Store::open(&url)
        .await
        .with_context(|| format!("cannot open the metadata store {}", redact(&url)))
}

/// The disk files of a server (operator tooling; reads the store, does not lock the data dir).
pub async fn server_disks(cfg: &Config, server_id: &str) -> Result<Vec<std::path::PathBuf>> {
    let cfg = &cfg.clone().with_absolute_dirs()?;
    let store = open_store(cfg).await?;
    let server = stratus_store::server_get(store.pool(), server_id).await?;
    let server = server.with_context(|| format!("no server {server_id}"))?;
    let volumes = stratus_store::volumes_of_server(store.pool(), server_id).await?;
    store.close().await;
    let disks = cfg.storage().join("disks");
    Ok(std::iter::once(server.root_disk)
        .chain(volumes.into_iter().map(|v| v.disk))
        .filter(|d| !d.is_empty())
        .map(|d| disks.join(d))
        .collect())
}

/// Rotates the token keys of the store a configuration names (`stratus token rotate`).
pub async fn rotate_token_keys(cfg: &Config) -> Result<stratus_services::identity::Rotation> {
    let store = open_store(cfg).await?;
    let r = stratus_services::identity::rotate_token_keys(&store, cfg.token_expiration).await;
    store.close().await;
    Ok(r?)
}

/// Every file and directory the server makes (image data, disks, work files, the database) is
/// readable by its owner only: other local users must not read tenants' data.
fn private_files() {
    // SAFETY: umask only sets the process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
}

/// Creates the storage dir if needed, and makes it (and so everything below it) private, also
/// when an older version made it readable to others.
fn private_dir(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create storage dir {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make storage dir {} private", dir.display()))
}
