//! The workload annotation parser: lines of `key=value` become annotations.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|data: &str| {
    let annotations: BTreeMap<String, String> = data
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    if let Ok(requests) = credgate::model::workload::parse(Some(&annotations)) {
        let _ = requests.references().count();
    }
    for image in data.lines() {
        let _ = credgate::model::registry::image_host(image);
    }
});
