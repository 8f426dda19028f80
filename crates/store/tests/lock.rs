//! One writer at a time: a second open of a held store is refused before it
//! touches anything, with an error that says the store is held, not damaged.

use store::{Error, Options, Store};

#[test]
fn a_second_open_is_refused_as_held_and_changes_nothing() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("store");
    let mut first = Store::open(&dir, Options::default()).expect("first open");
    first.audit(&store::Audit::now("test", "q".into(), 0, 0, false)).expect("append and commit");
    // Bytes after HEAD that the first writer has not committed yet: a
    // second open must not cut them back under it.
    let seg = dir.join("ledger/00000001.seg");
    let before = std::fs::read(&seg).expect("segment");
    let head = std::fs::read(dir.join("ledger/HEAD")).expect("HEAD");
    match Store::open(&dir, Options::default()) {
        Err(Error::Locked { path }) => assert_eq!(path, dir),
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("a held store opened twice"),
    }
    let said = Store::open(&dir, Options::default()).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(said.contains("held by another piiwatch process") && !said.contains("verify"), "{said}");
    assert_eq!(std::fs::read(&seg).expect("segment"), before, "the refused open changed the ledger");
    assert_eq!(std::fs::read(dir.join("ledger/HEAD")).expect("HEAD"), head);
    drop(first);
    let again = Store::open(&dir, Options::default()).expect("open once the first has closed");
    assert_eq!(again.head().records, 1);
}
