//! Config files: any TOML text is either a config or an error naming the
//! problem, and a config that parses is validated without panicking.
#![no_main]

use std::path::Path;

use herald::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml(text, Path::new("fuzz.toml")) {
        Ok(config) => {
            let _ = config.validate();
            let _ = format!("{config:?}");
        }
        Err(e) => assert!(e.to_string().contains("fuzz.toml"), "{e}"),
    }
});
