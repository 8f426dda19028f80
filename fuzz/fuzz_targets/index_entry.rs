//! Arbitrary bytes as an exposure-index entry (what `index.redb` holds per
//! key): decoding refuses or yields an entry that encodes and decodes back
//! to the same subjects; nothing panics, nothing allocates without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use store::index::Entry;

fuzz_target!(|data: &[u8]| {
    if let Some(e) = Entry::decode(data) {
        let again = Entry::decode(&e.encode()).expect("an encoded entry decodes");
        assert_eq!(again.by_mask(), e.by_mask());
        assert_eq!((again.events, again.first, again.last), (e.events, e.first, e.last));
    }
});
