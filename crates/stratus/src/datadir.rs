//! The data directory: the SQLite database, secrets and `clouds.yaml`, guarded by an exclusive
//! lock so that two servers never share one.

use anyhow::{bail, Context, Result};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub struct DataDir {
    path: PathBuf,
    /// Held for the life of the server; the OS releases it when the process dies.
    _lock: File,
}

impl DataDir {
    /// Creates the directory if needed (mode 0700) and takes its lock. Fails, changing nothing,
    /// if the path is not a usable directory or another server holds the lock.
    pub fn open(path: &Path) -> Result<DataDir> {
        if !path.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .with_context(|| format!("cannot create data dir {}", path.display()))?;
        }
        let meta = fs::metadata(path)
            .with_context(|| format!("cannot use data dir {}", path.display()))?;
        if !meta.is_dir() {
            bail!("data dir {} is not a directory", path.display());
        }
        fs::read_dir(path)
            .with_context(|| format!("data dir {} is not readable", path.display()))?;
        let path = path
            .canonicalize()
            .with_context(|| format!("cannot resolve data dir {}", path.display()))?;
        let lock_path = path.join("stratus.lock");
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .with_context(|| format!("data dir {} is not writable", path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&lock_path).unwrap_or_default();
                bail!(
                    "data dir {} is in use by another stratus server (pid {})",
                    path.display(),
                    holder.trim()
                );
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock data dir {}", path.display()))
            }
        }
        lock.set_len(0)?;
        writeln!(lock, "{}", std::process::id())?;
        Ok(DataDir { path, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn sqlite_url(&self) -> String {
        sqlite_url_of(&self.path)
    }

    /// Writes a file readable by the owner only, atomically.
    pub fn write_secret(&self, name: &str, content: &str) -> Result<PathBuf> {
        let target = self.path.join(name);
        let tmp = self.path.join(format!(".{name}.tmp"));
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            f.write_all(content.as_bytes())?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &target).with_context(|| format!("cannot write {}", target.display()))?;
        Ok(target)
    }

    /// This node's name in leases: made once per data dir, so a restarted node knows its own
    /// sagas.
    pub fn node_id(&self) -> Result<String> {
        if let Some(id) = self.read_secret("node-id")? {
            let id = id.trim().to_string();
            if !id.is_empty() {
                return Ok(id);
            }
        }
        let id = format!("node-{}", stratus_services::new_id());
        self.write_secret("node-id", &format!("{id}\n"))?;
        Ok(id)
    }

    pub fn read_secret(&self, name: &str) -> Result<Option<String>> {
        match fs::read_to_string(self.path.join(name)) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {name} in the data dir")),
        }
    }

    /// Writes `clouds.yaml` (0600) with one cloud for the administrator.
    pub fn write_clouds_yaml(
        &self,
        cloud: &str,
        public_url: &str,
        password: &str,
        region: &str,
    ) -> Result<PathBuf> {
        let text = format!(
            "clouds:\n  {cloud}:\n    auth:\n      auth_url: {public_url}/identity\n      username: admin\n      \
             password: \"{password}\"\n      project_name: admin\n      user_domain_name: Default\n      \
             project_domain_name: Default\n    region_name: {region}\n    identity_api_version: 3\n    \
             interface: public\n"
        );
        self.write_secret("clouds.yaml", &text)
    }
}

/// The URL of the embedded store of data dir `dir`.
pub fn sqlite_url_of(dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", dir.join("stratus.db").display())
}
