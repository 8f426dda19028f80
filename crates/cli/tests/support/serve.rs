//! A running `piiwatch serve` and the HTTP helpers its tests share
//! (`tests/serve.rs`, `tests/serve_cli.rs`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use super::ok;

/// A running `piiwatch serve`.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    pub fn start(store: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_piiwatch"))
            .args(["serve", "--store", store.to_str().expect("utf-8"), "--listen", "127.0.0.1:0"])
            .args(extra)
            .arg("--quarantine")
            .arg(store.with_extension("quarantine.jsonl"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve starts");
        let err = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let keep = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_owned());
                }
                keep.lock().expect("log").push_str(&(line + "\n"));
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("serve did not say it was listening: {}", log.lock().expect("log"))
        });
        Server { child, base: format!("http://{addr}"), stderr: log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(Instant::now() < deadline, "serve did not stop on SIGTERM: {}", self.stderr.lock().expect("log"));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// Status, body and the `x-piiwatch-reason` header.
pub fn send(req: ureq::RequestBuilder<ureq::typestate::WithBody>, body: &[u8]) -> (u16, String, Option<String>) {
    let mut r = req.send(body).expect("request is answered");
    let reason = r.headers().get("x-piiwatch-reason").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (r.status().as_u16(), text, reason)
}

pub fn get(a: &ureq::Agent, url: &str, auth: Option<&str>) -> (u16, String) {
    let mut req = a.get(url);
    if let Some(t) = auth {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut r = req.call().expect("request is answered");
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default())
}

pub fn token(store: &Path, role: &str, name: &str) -> String {
    let out = ok(&["token", "create", "--store", store.to_str().expect("utf-8"), "--role", role, "--name", name]);
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

/// The simulation's lines, as bytes (some are not UTF-8 on purpose).
pub fn lines_of(sim: &Path) -> Vec<Vec<u8>> {
    let mut bytes = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(sim.join("events.jsonl.gz")).expect("events"))
        .read_to_end(&mut bytes)
        .expect("gzip");
    bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect()
}

/// Sends the simulation's lines to `POST /v1/events` in requests of 2,000,
/// each answered 200.
pub fn post_simulation(a: &ureq::Agent, server: &Server, token: &str, sim: &Path) {
    for chunk in lines_of(sim).chunks(2000) {
        let req = a.post(&server.url("/v1/events")).header("Authorization", &format!("Bearer {token}"));
        assert_eq!(send(req, &join(chunk)).0, 200);
    }
}

pub fn join(lines: &[Vec<u8>]) -> Vec<u8> {
    lines.iter().flat_map(|l| l.iter().copied().chain([b'\n'])).collect()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

pub fn uids(lines: &str) -> std::collections::BTreeSet<String> {
    lines
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["finding_info"]["uid"].as_str().map(str::to_owned))
        .collect()
}

pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// A bearer JWT as a gateway would see it (signature not checked by piiwatch).
pub fn jwt(kid: Option<&str>, jti: Option<&str>, sub: &str) -> String {
    let b = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let mut header = json!({"alg": "RS256", "typ": "JWT"});
    if let Some(k) = kid {
        header["kid"] = json!(k);
    }
    let mut claims = json!({"sub": sub});
    if let Some(t) = jti {
        claims["jti"] = json!(t);
    }
    format!("{}.{}.c2lnbmF0dXJl", b(&header), b(&claims))
}
