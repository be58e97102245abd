//! The `.dockerconfigjson` parser and registry host normalisation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = credgate::model::dockerconfig::registries(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = credgate::model::registry::normalize_host(s);
    }
});
