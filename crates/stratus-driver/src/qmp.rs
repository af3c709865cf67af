//! A QMP client: QEMU's machine protocol over a UNIX socket, one JSON object a line. After the
//! greeting and `qmp_capabilities`, each command is answered by an object carrying its `id`;
//! events (objects with `event`) may come in between and are kept for the caller.
//!
//! Hand-written rather than generated: the driver uses a handful of commands whose arguments
//! are stable from QEMU 7.2 (Debian 12) to 10.x, and a typed binding generated from one QEMU's
//! schema would pin that schema's version.

use crate::{DriverError, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

/// How long a reply may take; QMP answers at once, jobs report through events.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest line accepted from QEMU.
const MAX_LINE: usize = 1 << 20;

pub struct Qmp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_id: u64,
    events: Vec<Value>,
}

impl Qmp {
    /// Connects to the socket at `path` and negotiates capabilities. A socket nobody listens on
    /// (or none at all) is an I/O error of kind `NotFound` or `ConnectionRefused`.
    pub async fn connect(path: &Path) -> std::io::Result<Qmp> {
        let stream = UnixStream::connect(path).await?;
        let (r, w) = stream.into_split();
        let mut q = Qmp {
            reader: BufReader::new(r),
            writer: w,
            next_id: 1,
            events: Vec::new(),
        };
        let greeting = q.read().await?;
        if greeting.get("QMP").is_none() {
            return Err(std::io::Error::other(format!(
                "not a QMP greeting: {greeting}"
            )));
        }
        q.execute("qmp_capabilities", None)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(q)
    }

    async fn read(&mut self) -> std::io::Result<Value> {
        let mut line = String::new();
        let n = tokio::time::timeout(REPLY_TIMEOUT, self.reader.read_line(&mut line))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "QMP did not answer")
            })??;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line.len() > MAX_LINE {
            return Err(std::io::Error::other("QMP line too long"));
        }
        serde_json::from_str(&line).map_err(std::io::Error::other)
    }

    /// Runs `command` with `arguments`; its `return` value, or its error's description.
    pub async fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({"execute": command, "id": id});
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut text = msg.to_string();
        text.push('\n');
        let what = format!("QMP {command}");
        self.writer
            .write_all(text.as_bytes())
            .await
            .map_err(DriverError::io(&what))?;
        loop {
            let v = self.read().await.map_err(DriverError::io(&what))?;
            if v.get("event").is_some() {
                self.events.push(v);
                continue;
            }
            if v.get("id").and_then(Value::as_u64) != Some(id) {
                continue;
            }
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            let desc = v["error"]["desc"].as_str().unwrap_or("unknown error");
            return Err(DriverError::Failed(format!("{what}: {desc}")));
        }
    }

    /// The events received so far, oldest first; they are handed out once.
    pub fn take_events(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.events)
    }
}
