//! Arbitrary text through the parsers a third party's `piiwatch proof check`
//! runs on files it is handed (`store::checkpoint`): signed notes, checkpoint
//! bodies, verifier and signer keys, a history of notes, and inclusion and
//! consistency proofs (JSON), each checked against checkpoints built from
//! the proof's own claims (so sizes up to `u64::MAX` reach `ct-merkle`'s
//! index arithmetic). Nothing may panic; what parses writes back as it was
//! read; errors are one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use store::checkpoint::{
    Checkpoint, Consistency, Inclusion, Note, NoteSigner, VerifierKey, decode_hash, split_notes,
};

fn one_line(e: &impl std::fmt::Display) {
    assert!(!e.to_string().contains('\n'), "error spans lines: {e}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Note::parse(text) {
        Ok(n) => {
            assert_eq!(n.encode(), text, "a note writes back as read");
            assert_eq!(Note::parse(&n.encode()).as_ref(), Ok(&n));
            let key = NoteSigner::from_seed("piiwatch/fuzz", &[1; 32]).map(|s| s.verifier());
            if let Ok(key) = key {
                match n.verify(&key) {
                    Ok(t) => assert_eq!(t, n.text()),
                    Err(e) => one_line(&e),
                }
            }
        }
        Err(e) => one_line(&e),
    }
    match Checkpoint::parse_body(text) {
        Ok(c) => assert_eq!(c.body(), text, "a checkpoint writes back as read"),
        Err(e) => one_line(&e),
    }
    match VerifierKey::parse(text) {
        Ok(k) => assert_eq!(VerifierKey::parse(&k.to_string()).as_ref(), Ok(&k)),
        Err(e) => one_line(&e),
    }
    if let Err(e) = NoteSigner::parse(text) {
        one_line(&e);
    }
    let (notes, torn) = split_notes(text);
    assert_eq!(notes.concat() + torn, text, "notes and the torn tail are the text");

    let claimed = |origin: &str, size: u64, root: &str| Checkpoint {
        origin: origin.to_owned(),
        size,
        root: decode_hash(root).unwrap_or([0; 32]),
    };
    if let Ok(p) = serde_json::from_str::<Inclusion>(text) {
        if let Err(e) = p.check(&claimed(&p.origin, p.tree_size, &p.root)) {
            one_line(&e);
        }
    }
    if let Ok(p) = serde_json::from_str::<Consistency>(text) {
        let old = claimed(&p.origin, p.old_size, &p.old_root);
        let new = claimed(&p.origin, p.new_size, &p.new_root);
        if let Err(e) = p.check(&old, &new) {
            one_line(&e);
        }
    }
});
