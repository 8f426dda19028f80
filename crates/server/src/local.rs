//! Reading while the service writes: `serve` holds the store (its ledger,
//! index and audit chain have one writer), so a CLI command on the same
//! machine that must record what it did (`scope`, `export`) hands its work
//! to the running server instead of failing on the lock.
//!
//! At start the server makes an admin token of its own (named `local`,
//! kept in memory only) and writes `DIR/serve.json` (mode 0600, beside the
//! store's `secret`, which whoever can read it holds already): the address
//! to reach it on loopback, its process id and that token. The CLI reads
//! the file when the store is held; the audit chain records such queries
//! as `token:local for USER`. The file is removed when the server stops; a
//! stale one (after `kill -9`) names a server that does not answer, and the
//! CLI says so.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The file in the store directory.
pub const FILE: &str = "serve.json";

/// The header that names the person a local command runs for.
pub const ON_BEHALF_OF: &str = "x-piiwatch-on-behalf-of";

#[derive(Serialize, Deserialize)]
struct Advert {
    url: String,
    pid: u32,
    token: String,
    /// The server's certificate (PEM) when it serves HTTPS: trusted as the root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca: Option<PathBuf>,
}

/// Writes `DIR/serve.json` for the address the server listens on.
pub(crate) fn advertise(dir: &Path, addr: SocketAddr, cert: Option<&Path>, token: &str) -> std::io::Result<()> {
    let ip = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let url = match cert {
        // The certificate names a host, not an address: `localhost` is what a
        // local certificate names.
        Some(_) if ip.is_loopback() => format!("https://localhost:{}", addr.port()),
        Some(_) => format!("https://{}", SocketAddr::new(ip, addr.port())),
        None => format!("http://{}", SocketAddr::new(ip, addr.port())),
    };
    let advert = Advert { url, pid: std::process::id(), token: token.to_owned(), ca: cert.map(Path::to_owned) };
    let text = serde_json::to_vec_pretty(&advert).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!("{FILE}.tmp"));
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(FILE))
}

/// Removes `DIR/serve.json` if it is this process's.
pub(crate) fn withdraw(dir: &Path) {
    let path = dir.join(FILE);
    let ours = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Advert>(&b).ok())
        .is_some_and(|a| a.pid == std::process::id());
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

/// Why the running server did not do what was handed to it.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The server named in `serve.json` does not answer.
    #[error("the store is held by a piiwatch serve that {url} names in {file}, but it does not answer ({why})")]
    Unreachable {
        /// Its address.
        url: String,
        /// The file.
        file: String,
        /// What failed.
        why: String,
    },
    /// The request was wrong (400): a usage error.
    #[error("{0}")]
    Usage(String),
    /// The server refused or failed.
    #[error("piiwatch serve at {url}: {message}")]
    Refused {
        /// Its address.
        url: String,
        /// Its error message.
        message: String,
    },
}

/// A running server on this machine that holds the store.
pub struct Local {
    url: String,
    token: String,
    agent: ureq::Agent,
    file: PathBuf,
}

impl Local {
    /// The server that `DIR/serve.json` names, if there is such a file.
    pub fn discover(dir: &Path) -> Result<Option<Self>, String> {
        let file = dir.join(FILE);
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {}", file.display(), e.kind())),
        };
        let advert: Advert =
            serde_json::from_slice(&bytes).map_err(|e| format!("{} is not what serve writes: {e}", file.display()))?;
        // Left behind by a server that was killed: whoever holds the store now is not it.
        if cfg!(target_os = "linux") && !Path::new(&format!("/proc/{}", advert.pid)).exists() {
            return Ok(None);
        }
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // A scope of a whole store can take a while; a server that does
            // not answer at all is found at once by the connection failing.
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(3600)));
        if let Some(ca) = &advert.ca {
            let pem = std::fs::read(ca).map_err(|e| format!("cannot read {}: {}", ca.display(), e.kind()))?;
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(format!("{}: no certificate", ca.display()));
            }
            config = config.tls_config(
                ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::new_with_certs(&certs)).build(),
            );
        }
        Ok(Some(Self { url: advert.url, token: advert.token, agent: config.build().into(), file }))
    }

    /// Its address.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs a scope in the server, recorded as `token:local for USER`.
    pub fn scope(&self, request: &scope::Request, user: &str) -> Result<scope::Outcome, LocalError> {
        let body = serde_json::to_vec(request).map_err(|e| LocalError::Usage(e.to_string()))?;
        let answer = self.post("/v1/scope", user, &body)?;
        serde_json::from_slice(&answer).map_err(|e| self.refused(format!("unexpected answer: {e}")))
    }

    /// Opens an incident in the server's store, recorded as `token:local for USER`; its id.
    pub fn incident_open(&self, from_alert: &str, title: Option<&str>, user: &str) -> Result<String, LocalError> {
        let body = serde_json::json!({"from_alert": from_alert, "title": title}).to_string();
        let answer = self.post("/v1/incidents", user, body.as_bytes())?;
        let v: serde_json::Value =
            serde_json::from_slice(&answer).map_err(|e| self.refused(format!("unexpected answer: {e}")))?;
        v["id"].as_str().map(str::to_owned).ok_or_else(|| self.refused("unexpected answer: no id".into()))
    }

    /// Records a change to an incident in the server's store; the incident's state after it.
    pub fn incident_change(
        &self,
        id: &str,
        change: &incident::Change,
        user: &str,
    ) -> Result<serde_json::Value, LocalError> {
        let body = serde_json::to_vec(change).map_err(|e| LocalError::Usage(e.to_string()))?;
        let path = format!("/v1/incidents/{}", id.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', ""));
        let answer = self.post(&path, user, &body)?;
        serde_json::from_slice(&answer).map_err(|e| self.refused(format!("unexpected answer: {e}")))
    }

    /// Records a query done outside the server (an export that read the
    /// ledger) in the store's audit chain.
    pub fn audit(&self, entry: &store::Audit) -> Result<(), LocalError> {
        let body = serde_json::to_vec(entry).map_err(|e| LocalError::Usage(e.to_string()))?;
        self.post("/v1/audit", &entry.user, &body).map(drop)
    }

    fn post(&self, path: &str, user: &str, body: &[u8]) -> Result<Vec<u8>, LocalError> {
        let sent = self
            .agent
            .post(format!("{}{path}", self.url))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .header(ON_BEHALF_OF, user)
            .send(body);
        let mut response = sent.map_err(|e| LocalError::Unreachable {
            url: self.url.clone(),
            file: self.file.display().to_string(),
            why: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let bytes = response.body_mut().with_config().limit(64 << 20).read_to_vec().map_err(|e| {
            LocalError::Unreachable { url: self.url.clone(), file: self.file.display().to_string(), why: e.to_string() }
        })?;
        if status == 200 {
            return Ok(bytes);
        }
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("status {status}"));
        if status == 400 { Err(LocalError::Usage(message)) } else { Err(self.refused(message)) }
    }

    fn refused(&self, message: String) -> LocalError {
        LocalError::Refused { url: self.url.clone(), message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_by_a_live_process_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr: SocketAddr = "0.0.0.0:8470".parse().expect("addr");
        advertise(dir.path(), addr, None, "pw_x").expect("written");
        let found = Local::discover(dir.path()).expect("readable").expect("this process is alive");
        assert_eq!(found.url(), "http://127.0.0.1:8470", "an unspecified address is reached on loopback");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(FILE)).expect("file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A file a killed server left: no server.
        let stale = serde_json::json!({"url": "http://127.0.0.1:1", "pid": 2_000_000_000u32, "token": "pw_y"});
        std::fs::write(dir.path().join(FILE), stale.to_string()).expect("write");
        if cfg!(target_os = "linux") {
            assert!(Local::discover(dir.path()).expect("readable").is_none());
        }
        // Withdrawn only by the process that wrote it.
        withdraw(dir.path());
        assert!(dir.path().join(FILE).exists(), "another process's file stays");
        advertise(dir.path(), addr, None, "pw_x").expect("written");
        withdraw(dir.path());
        assert!(!dir.path().join(FILE).exists());
        assert!(Local::discover(dir.path()).expect("no file is fine").is_none());
    }
}
