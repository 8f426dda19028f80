//! Arbitrary text as a detector configuration: parsing must return a
//! configuration or a one-line error, never panic, and a configuration that
//! parses must build an engine or fail with an error.
#![no_main]

use detect::{Config, Engine, World};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::parse(text) {
        Ok(cfg) => {
            let world = World::new(model::Directory::default(), &cfg.engine.hosting_labels);
            let _ = Engine::new(&cfg, world);
        }
        Err(e) => assert!(!e.to_string().contains('\n'), "error spans lines: {e}"),
    }
});
