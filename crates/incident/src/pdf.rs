//! The report as PDF: `report.html` printed by headless Chromium.
//!
//! piiwatch draws no PDF itself: the page is written once (inline SVG and
//! print CSS) and the browser that renders it on screen prints it, so the
//! PDF and the page show the same thing. Chromium runs with a fresh
//! profile, without background networking, sync or component updates,
//! and with every request sent to a proxy on a closed local port
//! ([`NO_NETWORK`]): the page is self-contained and nothing it or the
//! browser asks for leaves the machine (headless Chromium still asks
//! Google for the time and for sign-in otherwise). It is stopped if it
//! has not written the file within [`TIMEOUT`].

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where Chromium's requests go: the discard port on loopback, where
/// nothing listens, so every request fails at once on this machine.
pub const NO_NETWORK: &str = "--proxy-server=http://127.0.0.1:9";

/// How long Chromium may take to print the page.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// The names Chromium goes by on `PATH`, in the order they are tried.
const NAMES: &[&str] = &["chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"];

/// Why there is no PDF.
#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    /// No browser to print with.
    #[error(
        "--pdf needs headless Chromium and none was found (tried {tried}): install it (Debian: apt-get install chromium) or name it with --browser"
    )]
    NoBrowser {
        /// What was looked for.
        tried: String,
    },
    /// The browser named is not there.
    #[error("--browser {0}: no such file")]
    Missing(PathBuf),
    /// The browser could not be started.
    #[error("cannot start {browser}: {source}")]
    Start {
        /// The browser.
        browser: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The browser ran but wrote no PDF.
    #[error("{browser} wrote no PDF of {page}: {why}")]
    Failed {
        /// The browser.
        browser: PathBuf,
        /// The page.
        page: PathBuf,
        /// What happened (exit status, time-out, a file that is not a PDF).
        why: String,
    },
}

/// The browser to print with: `given` if any, else the first of
/// Chromium's usual names found on `path` (the `PATH` variable's value).
pub fn find_browser(given: Option<&Path>, path: Option<&std::ffi::OsStr>) -> Result<PathBuf, PdfError> {
    if let Some(b) = given {
        return if b.is_file() { Ok(b.to_owned()) } else { Err(PdfError::Missing(b.to_owned())) };
    }
    let dirs: Vec<PathBuf> = path.map(|p| std::env::split_paths(p).collect()).unwrap_or_default();
    for name in NAMES {
        for dir in &dirs {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(PdfError::NoBrowser { tried: NAMES.join(", ") })
}

/// Prints `page` (an HTML file) to `pdf` with `browser`; returns `pdf`.
pub fn print(browser: &Path, page: &Path, pdf: &Path) -> Result<PathBuf, PdfError> {
    let failed = |why: String| PdfError::Failed { browser: browser.to_owned(), page: page.to_owned(), why };
    let page_abs = std::fs::canonicalize(page).map_err(|e| failed(format!("cannot read the page: {e}")))?;
    let out_dir = pdf.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    // A fresh, private profile next to the output, removed afterwards.
    let profile = out_dir.join(format!(".chromium-profile-{}", std::process::id()));
    let _ = std::fs::remove_file(pdf);
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-pdf-header-footer",
            "--disable-features=NetworkTimeServiceQuerying",
            NO_NETWORK,
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(format!("file://{}", page_abs.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| PdfError::Start { browser: browser.to_owned(), source })?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if started.elapsed() > TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("no PDF after {} s; stopped", TIMEOUT.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => break Err(format!("cannot wait for it: {e}")),
        }
    };
    let _ = std::fs::remove_dir_all(&profile);
    let status = status.map_err(failed)?;
    let head = std::fs::read(pdf).ok().map(|b| b.get(..5).map(<[u8]>::to_vec).unwrap_or_default());
    match head {
        Some(h) if h == b"%PDF-" => Ok(pdf.to_owned()),
        Some(_) => Err(failed("the file it wrote is not a PDF".into())),
        None => Err(failed(format!("it exited with {status} and wrote nothing"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_browser_is_named_with_what_to_do() {
        let dir = std::env::temp_dir().join(format!("piiwatch-no-browser-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let e = find_browser(None, Some(dir.as_os_str())).expect_err("no browser there");
        let msg = e.to_string();
        assert!(msg.contains("apt-get install chromium") && msg.contains("--browser") && !msg.contains('\n'), "{msg}");
        let given = Path::new("/opt/x/chrome");
        assert!(find_browser(Some(given), None).expect_err("not there").to_string().contains("/opt/x/chrome"));
        if let Ok(t) = find_true() {
            assert_eq!(find_browser(Some(&t), None).expect("given"), t);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_browser_that_writes_no_pdf_is_an_error_not_a_hang() {
        // `true` exits at once without writing anything.
        let Ok(browser) = find_true() else { return };
        let dir = std::env::temp_dir().join(format!("piiwatch-pdf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let page = dir.join("report.html");
        std::fs::write(&page, "<html></html>").expect("page");
        let e = print(&browser, &page, &dir.join("report.pdf")).expect_err("no PDF");
        assert!(e.to_string().contains("wrote nothing"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn find_true() -> Result<PathBuf, ()> {
        ["/usr/bin/true", "/bin/true"].iter().map(PathBuf::from).find(|p| p.is_file()).ok_or(())
    }
}
