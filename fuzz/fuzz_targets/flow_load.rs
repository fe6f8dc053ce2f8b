//! A flow file of any content is refused with diagnostics, never a panic.
#![no_main]

use hotline::flow::{load_sources, Sources};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let sources = Sources {
        dir: PathBuf::from("flows"),
        files: vec![(PathBuf::from("flows/main.yaml"), text)],
        catalogue: None,
        audio: None,
        unreadable: false,
    };
    let _ = load_sources(&sources);
});
