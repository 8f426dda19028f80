//! `piiwatch` commands on a store that a running `serve` holds: `scope`,
//! `export`, `verify` and `incident` go through the server (over TLS when it
//! serves HTTPS) instead of failing on the store's lock (contract sections
//! 5 and 6).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::serve::{Server, agent, get, join, lines_of, post_simulation, send, tmp, token};
use support::{ok, simulation};

/// HTTPS from a configured certificate and key; the CLI's queries of the
/// store it holds go through it over TLS (trusting the certificate its
/// `serve.json` names); a bad key is a one-line error.
#[test]
fn https_with_a_configured_certificate() {
    let dir = tmp();
    let store = dir.path().join("store");
    let admin = token(&store, "admin", "ops");
    let pair =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("certificate");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, pair.cert.pem()).expect("write");
    std::fs::write(&key, pair.signing_key.serialize_pem()).expect("write");
    let (c, k) = (cert.to_str().expect("utf-8"), key.to_str().expect("utf-8"));
    let server = Server::start(&store, &["--tls-cert", c, "--tls-key", k]);
    let der: &'static [u8] = Box::leak(pair.cert.der().to_vec().into_boxed_slice());
    let roots = ureq::tls::RootCerts::Specific(std::sync::Arc::new(vec![ureq::tls::Certificate::from_der(der)]));
    let tls: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build())
        .build()
        .into();
    let https = server.base.replace("http://", "https://");
    let mut r = tls.get(&format!("{https}/healthz")).call().expect("https answers");
    assert_eq!((r.status().as_u16(), r.body_mut().read_to_string().expect("body")), (200, "ok\n".to_owned()));
    // Plain HTTP to the TLS port gets no HTTP answer.
    assert!(agent().get(&server.url("/healthz")).call().is_err());
    // Still serving after that.
    assert_eq!(tls.get(&format!("{https}/readyz")).call().expect("https").status().as_u16(), 200);
    // Events in over HTTPS, then the CLI's scope of the held store, through the server over TLS.
    let lines = lines_of(&simulation("coupang", 2000, 1));
    let req = tls.post(&format!("{https}/v1/events")).header("Authorization", &format!("Bearer {admin}"));
    assert_eq!(send(req, &join(&lines[..4000])).0, 200);
    let s = store.to_str().expect("utf-8");
    let everything = r#"src_endpoint.ip cidr "0.0.0.0/0" or src_endpoint.ip cidr "::/0""#;
    let out = ok(&["scope", "--store", s, "--where", everything, "--format", "json"]);
    let scoped: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(scoped["events"].as_u64().unwrap_or(0) > 100, "{scoped}");
    assert!(server.terminate().success());
    let mut through = false;
    store::ledger::scan(&store.join("ledger"), |r| {
        if r.kind == store::kind::AUDIT
            && let Ok(a) = serde_json::from_slice::<Value>(r.payload)
        {
            through |= a["user"].as_str().is_some_and(|u| u.starts_with("token:local for "));
        }
    })
    .expect("ledger");
    assert!(through, "the scope went through the server, over TLS");
    // A key that is not a key: exit 1, one line naming the file, nothing of its contents.
    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXNlY3JldA==\n-----END PRIVATE KEY-----\n")
        .expect("write");
    let out = support::piiwatch(&[
        "serve",
        "--store",
        store.to_str().expect("utf-8"),
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        c,
        "--tls-key",
        k,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("piiwatch: error:") && last.contains("key.pem"), "{err}");
    assert!(!err.contains("c2VjcmV0"), "the key's bytes never reach the error");
}

/// While `serve` holds the store, the CLI's `scope`, `export` and `verify`
/// work instead of failing on the lock: scope and export through the
/// server (`DIR/serve.json`, mode 0600), recorded in the audit chain as the
/// server's own token for the person who ran them; verify by reading what
/// was committed. The scope through the server is the one the CLI gives
/// once the server has stopped, re-identification included.
#[test]
fn cli_queries_a_store_the_server_holds() {
    let sim = simulation("coupang", 2000, 1);
    let dir = tmp();
    let store = dir.path().join("store");
    let s = store.to_str().expect("utf-8");
    let admin = token(&store, "admin", "ops");
    let server = Server::start(&store, &["--idle-flush", "0.2"]);
    let a = agent();
    post_simulation(&a, &server, &admin, &sim);
    let advert = store.join("serve.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&advert).expect("serve.json is written").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "serve.json holds a token: owner only");
    }
    // Every access, its subjects re-identified into `ids`.
    let scope_all = |ids: &Path| {
        let everything = r#"src_endpoint.ip cidr "0.0.0.0/0" or src_endpoint.ip cidr "::/0""#;
        let ids = ids.to_str().expect("utf-8");
        let out = ok(&["scope", "--store", s, "--where", everything, "--format", "json", "--subjects-out", ids]);
        serde_json::from_slice::<Value>(&out.stdout).expect("json")
    };
    let ids_live = dir.path().join("ids-live.txt");
    let live = scope_all(&ids_live);
    assert!(live["subjects"].as_u64().unwrap_or(0) > 100, "{live}");
    // A wrong expression is still a usage error (exit 2), answered by the server.
    let bad = support::piiwatch(&["scope", "--store", s, "--where", "src_endpoint.ip ="]);
    assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stderr));
    let out_dir = dir.path().join("export");
    ok(&["export", "--store", s, "--format", "parquet", "--out", out_dir.to_str().expect("utf-8")]);
    assert!(std::fs::metadata(out_dir.join("events.parquet")).expect("events.parquet").len() > 1000);
    let verified = ok(&["verify", "--store", s, "--format", "json"]);
    let report: Value = serde_json::from_slice(&verified.stdout).expect("json");
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["notes"].to_string().contains("held by a running piiwatch"), "{report}");
    // The same verify through the API, and the store's health.
    let analyst = token(&store, "analyst", "reader");
    let post =
        |auth: &str| send(a.post(&server.url("/v1/verify")).header("Authorization", &format!("Bearer {auth}")), b"");
    assert_eq!(post(&analyst).0, 403, "starting a verify is an admin's");
    assert_eq!(post(&admin).0, 202);
    let deadline = Instant::now() + Duration::from_secs(60);
    let last = loop {
        let (status, body) = get(&a, &server.url("/v1/verify"), Some(&analyst));
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).expect("json");
        if v["running"] == false && v["last"].is_object() {
            break v["last"].clone();
        }
        assert!(Instant::now() < deadline, "verify did not end: {v}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(last["ok"], true, "{last}");
    assert!(last["records"].as_u64().unwrap_or(0) >= report["records"].as_u64().unwrap_or(u64::MAX), "{last}");
    let (status, body) = get(&a, &server.url("/v1/store"), Some(&analyst));
    assert_eq!(status, 200, "{body}");
    let health: Value = serde_json::from_str(&body).expect("json");
    assert!(health["records"].as_u64().unwrap_or(0) >= last["records"].as_u64().unwrap_or(u64::MAX), "{health}");
    assert_eq!(health["head_hash"].as_str().map(str::len), Some(64), "{health}");
    assert!(health["checkpoint"].as_str().is_some_and(|c| c.contains('\u{2014}')), "a signed note: {health}");
    assert_eq!(health["verify"]["last"], last);
    assert!(server.terminate().success());
    assert!(!advert.exists(), "serve.json is removed when the server stops");
    // The same scope without the server: the same answer and the same ids.
    let ids_after = dir.path().join("ids-after.txt");
    assert_eq!(scope_all(&ids_after), live);
    let (l, r) = (std::fs::read(&ids_live).expect("ids"), std::fs::read(&ids_after).expect("ids"));
    assert!(!l.is_empty() && l == r, "re-identified through the server: the same ids");
    // The audit chain names who asked, and that it went through the server.
    let mut users = Vec::new();
    store::ledger::scan(&store.join("ledger"), |r| {
        if let Some(a) =
            (r.kind == store::kind::AUDIT).then(|| serde_json::from_slice::<Value>(r.payload).ok()).flatten()
        {
            let text = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
            users.push((text("command"), text("user"), a["reidentified"] == true));
        }
    })
    .expect("ledger");
    let through: Vec<_> = users.iter().filter(|(_, u, _)| u.starts_with("token:local for ")).collect();
    assert!(through.iter().any(|(c, _, re)| c == "scope (http)" && *re), "{users:?}");
    assert!(through.iter().any(|(c, _, _)| c == "export"), "{users:?}");
}

/// Incidents while `serve` holds the store: the CLI opens one, records
/// awareness and shows it through the server (the change records and the
/// scope name the person, through the server's local token), and
/// `GET /v1/incidents/{id}` answers the same scope and clocks.
#[test]
fn incidents_through_the_server_that_holds_the_store() {
    let sim = simulation("coupang", 2000, 1);
    let dir = tmp();
    let store = dir.path().join("store");
    let s = store.to_str().expect("utf-8");
    let admin = token(&store, "admin", "ops");
    let analyst = token(&store, "analyst", "privacy-officer");
    let server = Server::start(&store, &["--idle-flush", "0.2"]);
    let a = agent();
    post_simulation(&a, &server, &admin, &sim);
    // The forged tokens' finding, once stored.
    let deadline = Instant::now() + Duration::from_secs(60);
    let uid = loop {
        let (_, body) = get(&a, &server.url("/v1/alerts"), Some(&analyst));
        let found = body
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|f| f["finding_info"]["analytic"]["name"] == "forged-token")
            .and_then(|f| f["finding_info"]["uid"].as_str().map(str::to_owned));
        if let Some(u) = found
            && incident::group::findings(&store).expect("findings").iter().any(|f| f.uid == u)
        {
            break u;
        }
        assert!(Instant::now() < deadline, "no stored forged-token finding: {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let o = ok(&["incident", "open", "--store", s, "--from-alert", &uid]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "INC-1\n");
    ok(&["incident", "aware", "--store", s, "INC-1", "--at", "2026-12-07T12:00:00Z"]);
    let bad = support::piiwatch(&["incident", "unlink", "--store", s, "INC-1", "pw-none"]);
    assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stderr));
    let cli: Value = serde_json::from_slice(
        &ok(&["incident", "show", "--store", s, "INC-1", "--format", "json", "--now", "2026-12-07T13:00:00Z"]).stdout,
    )
    .expect("json");
    let (status, body) = get(&a, &server.url("/v1/incidents/INC-1?now=2026-12-07T13:00:00Z"), Some(&analyst));
    assert_eq!(status, 200, "{body}");
    let http: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(cli["scope"], http["scope"]);
    assert!(cli["scope"]["subjects"].as_u64().unwrap_or(0) > 100, "{}", cli["scope"]);
    assert_eq!(cli["clocks"], http["clocks"]);
    assert_eq!(http["aware_time"], 1_796_644_800_000_i64);
    let (status, body) = get(&a, &server.url("/v1/incidents"), Some(&analyst));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"INC-1\""), "{body}");
    // The same change over HTTP, with the token's name in the record.
    let req = a.post(&server.url("/v1/incidents/INC-1")).header("Authorization", &format!("Bearer {analyst}"));
    let (status, body, _) = send(req, br#"{"contain": {"time": 1796734800000}}"#);
    assert_eq!((status, body.contains("contained")), (200, true), "{body}");
    let req = a.post(&server.url("/v1/incidents/INC-9")).header("Authorization", &format!("Bearer {analyst}"));
    assert_eq!(send(req, br#"{"note": {"text": "x"}}"#).0, 404);
    let (status, _) = get(&a, &server.url("/v1/incidents/INC-1"), None);
    assert_eq!(status, 401);
    assert!(server.terminate().success());
    let history: Vec<String> = incident::Incidents::load(&store).expect("incidents").list()[0]
        .history
        .iter()
        .map(|r| format!("{} {}", r.change.name(), r.by))
        .collect();
    assert!(history[0].starts_with("open token:local for "), "{history:?}");
    assert_eq!(history.last().map(String::as_str), Some("contain token:privacy-officer"), "{history:?}");
}
