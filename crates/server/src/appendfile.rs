//! Append-only side files of the store that another process may write too
//! (`tokens.jsonl`, `outbox.jsonl`): an exclusive lock on a lock file of
//! their own (never the store's `LOCK`, which a running server holds), and
//! appends that are on disk before they return.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// An exclusive lock on `path` (created if absent), held until dropped.
pub(crate) fn lock(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
    f.lock()?;
    Ok(f)
}

/// Appends `bytes` to `path` (created with mode 0600) and syncs them; a
/// new file's directory entry is synced too.
pub(crate) fn append_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let existed = path.exists();
    let mut opts = OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    if !existed && let Some(dir) = path.parent().and_then(|d| File::open(d).ok()) {
        dir.sync_all()?;
    }
    Ok(())
}
