//! Arbitrary bytes as an exposure-index pack (what `index.redb` holds per
//! key: the entries of consecutive values of one dimension and hour):
//! decoding refuses, or yields values in strict order whose entries each
//! decode or are refused; nothing panics, nothing allocates without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use store::index::Entry;
use store::index::pack;

fuzz_target!(|data: &[u8]| {
    if let Ok(pairs) = pack::decode(data) {
        for w in pairs.windows(2) {
            assert!(w[0].0 < w[1].0, "values in strict order");
        }
        for (_, entry) in pairs {
            if let Some(e) = Entry::decode(entry) {
                assert_eq!(Entry::decode(&e.encode()).expect("an encoded entry decodes").by_mask(), e.by_mask());
            }
        }
    }
});
