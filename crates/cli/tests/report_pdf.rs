//! `piiwatch report --pdf` as a privacy officer uses it: the report of the
//! simulated breach printed by headless Chromium, the PDF read back with
//! `pdftoppm` (poppler) and its pages looked at: the charts are drawn (in
//! colour, where the text is black and grey), the findings chart fits its
//! page; without a browser, one line says what to install and nothing is
//! written.
//!
//! Chromium and pdftoppm come from Debian (`apt-get install chromium
//! poppler-utils`; `.ci/run` installs them when missing). Without them the
//! printing test says so and passes, unless `PIIWATCH_REQUIRE_BROWSER=1`
//! (set by `.ci/run`) makes it fail.

#![allow(clippy::print_stderr)] // says why the printing test is skipped

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{ok, piiwatch};

/// Chromium and pdftoppm, or why the test cannot print.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let path = std::env::var_os("PATH");
    let pdftoppm = path
        .as_ref()
        .map(|p| std::env::split_paths(p).map(|d| d.join("pdftoppm")).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.is_file());
    // The browser as `report --pdf` finds it.
    let browser = incident::pdf::find_browser(None, path.as_deref()).ok();
    match (browser, pdftoppm) {
        (Some(b), Some(p)) => Some((b, p)),
        _ if std::env::var("PIIWATCH_REQUIRE_BROWSER").is_ok_and(|v| v == "1") => {
            panic!(
                "PIIWATCH_REQUIRE_BROWSER=1 but chromium or pdftoppm is missing (apt-get install chromium poppler-utils)"
            )
        }
        _ => {
            eprintln!("skipped: chromium or pdftoppm is not installed (apt-get install chromium poppler-utils)");
            None
        }
    }
}

/// An RGB image read from a binary PPM (`P6`, 8 bits), as pdftoppm writes them.
struct Ppm {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

fn read_ppm(path: &Path) -> Ppm {
    let bytes = std::fs::read(path).expect("the page image");
    // Header: "P6", width, height, maxval, each after whitespace; then one whitespace byte.
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        fields.push(std::str::from_utf8(&bytes[start..i]).expect("ASCII header").to_owned());
    }
    assert_eq!(fields[0], "P6", "{}: a binary PPM", path.display());
    assert_eq!(fields[3], "255", "8 bits per channel");
    let (width, height): (usize, usize) = (fields[1].parse().expect("width"), fields[2].parse().expect("height"));
    let rgb = bytes[i + 1..].to_vec();
    assert_eq!(rgb.len(), width * height * 3, "{}: the whole image", path.display());
    Ppm { width, height, rgb }
}

impl Ppm {
    /// Pixels in colour (a channel 80 apart from another): chart lines,
    /// bars and legends; the report's text is black and grey.
    fn coloured(&self) -> usize {
        self.rgb
            .chunks_exact(3)
            .filter(|p| {
                let (max, min) = (p.iter().max().copied().unwrap_or(0), p.iter().min().copied().unwrap_or(0));
                max - min > 80
            })
            .count()
    }

    /// Rows with anything but white on them.
    fn inked_rows(&self) -> usize {
        (0..self.height)
            .filter(|y| self.rgb[y * self.width * 3..(y + 1) * self.width * 3].iter().any(|&c| c < 200))
            .count()
    }
}

#[test]
fn the_report_prints_to_a_pdf_whose_pages_show_the_charts() {
    let Some((_, pdftoppm)) = tools() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, store_dir) = support::simulated_store(tmp.path(), "coupang", 3000, 3);
    let store = store_dir.to_str().expect("utf-8");
    let uid = support::first_finding(tmp.path(), "coupang", "forged-token");
    ok(&["incident", "open", "--store", store, "--from-alert", &uid]);
    let out = tmp.path().join("out");
    let o = ok(&[
        "report",
        "--store",
        store,
        "--incident",
        "INC-1",
        "--out",
        out.to_str().expect("utf-8"),
        "--pdf",
        "--format",
        "json",
    ]);
    let written: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let pdf = out.join("report.pdf");
    assert_eq!(written["pdf"].as_str().map(Path::new), Some(pdf.as_path()));
    let bytes = std::fs::read(&pdf).expect("report.pdf");
    assert!(bytes.starts_with(b"%PDF-"), "a PDF");
    assert!(
        !out.read_dir().expect("out").any(|e| e.expect("entry").file_name().to_string_lossy().starts_with(".chromium")),
        "the browser's profile is removed"
    );

    // pdftoppm opens it: the first three pages as images.
    let prefix = tmp.path().join("page");
    let status = Command::new(&pdftoppm)
        .args(["-r", "40", "-f", "1", "-l", "3"])
        .arg(&pdf)
        .arg(&prefix)
        .status()
        .expect("pdftoppm runs");
    assert!(status.success(), "pdftoppm reads the PDF");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .expect("tmp")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("page")))
        .collect();
    pages.sort();
    assert_eq!(pages.len(), 3, "at least three pages: {pages:?}");
    let images: Vec<Ppm> = pages.iter().map(|p| read_ppm(p)).collect();
    // Page one: the title, the summary and the exposure chart, in colour.
    assert!(images[0].coloured() > 300, "page 1 has a chart drawn ({} coloured pixels)", images[0].coloured());
    // No page of the first three is left blank by a chart too tall to fit it.
    for (i, img) in images.iter().enumerate() {
        assert!(
            img.inked_rows() > img.height / 4,
            "page {} is mostly empty ({} inked rows of {})",
            i + 1,
            img.inked_rows(),
            img.height
        );
    }
    // Findings, sources and clocks: charts on the pages after the first.
    let later: usize = images[1..].iter().map(Ppm::coloured).sum();
    assert!(later > 300, "charts on pages 2 and 3 ({later} coloured pixels)");

    // No request leaves the page: printed again through a browser whose
    // proxy (piiwatch points it at a closed port) is a listener here that
    // notes every request. Headless Chromium asks Google for itself
    // (sign-in, time); the page asks for nothing.
    let (browser, _) = tools().expect("checked above");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("non-blocking");
    let wrapper = tmp.path().join("chromium-via-proxy.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/bash\nargs=()\nfor a in \"$@\"; do case \"$a\" in --proxy-server=*) args+=(\"--proxy-server=http://127.0.0.1:{port}\");; *) args+=(\"$a\");; esac; done\nexec {} \"${{args[@]}}\"\n",
            browser.display()
        ),
    )
    .expect("wrapper");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = std::thread::spawn({
        let done = done.clone();
        move || {
            use std::io::Read;
            let mut asked = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut c, _)) => {
                        let _ = c.set_read_timeout(Some(std::time::Duration::from_secs(2)));
                        let mut head = [0u8; 256];
                        let n = c.read(&mut head).unwrap_or(0);
                        asked.push(String::from_utf8_lossy(&head[..n]).lines().next().unwrap_or_default().to_owned());
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
            asked
        }
    });
    let out2 = tmp.path().join("out2");
    let (o2, w) = (out2.to_str().expect("utf-8"), wrapper.to_str().expect("utf-8"));
    ok(&["report", "--store", store, "--incident", "INC-1", "--out", o2, "--pdf", "--browser", w]);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let asked = seen.join().expect("listener");
    assert!(out2.join("report.pdf").exists(), "printed through the wrapper");
    let own = |line: &str| {
        let host = line.split_whitespace().nth(1).unwrap_or_default();
        let host = host.trim_start_matches("http://").split([':', '/']).next().unwrap_or_default();
        ["google.com", "googleapis.com", "gstatic.com"].iter().any(|d| host == *d || host.ends_with(&format!(".{d}")))
    };
    let page: Vec<&String> = asked.iter().filter(|l| !own(l)).collect();
    assert!(page.is_empty(), "requests that are not the browser's own: {page:?}");
}

#[test]
fn without_a_browser_pdf_is_refused_in_one_line_before_anything_is_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    ok(&["ingest", "--store", store.to_str().expect("utf-8"), "-"]);
    let out = tmp.path().join("out");
    let empty = tmp.path().join("no-browsers-here");
    std::fs::create_dir_all(&empty).expect("dir");
    let run = Command::new(env!("CARGO_BIN_EXE_piiwatch"))
        .args(["report", "--store", store.to_str().expect("utf-8"), "--incident", "INC-1", "--pdf"])
        .arg("--out")
        .arg(&out)
        .env("PATH", &empty)
        .output()
        .expect("piiwatch runs");
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains("chromium") && err.contains("--browser"), "{err}");
    assert!(!out.exists(), "nothing written");
    // A named browser that is not there is refused the same way.
    let run = piiwatch(&[
        "report",
        "--store",
        store.to_str().expect("utf-8"),
        "--incident",
        "INC-1",
        "--out",
        out.to_str().expect("utf-8"),
        "--pdf",
        "--browser",
        "/nonexistent/chromium",
    ]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("/nonexistent/chromium"));
    assert!(!out.exists(), "nothing written");
}
