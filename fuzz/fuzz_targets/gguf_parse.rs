//! Fuzz the GGUF parser: any byte string must parse or give `Error::Gguf`, never panic, hang or
//! allocate without bound. Run with `cargo +nightly fuzz run gguf_parse` from the repository root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wgquant::gguf::GgufFile;

fuzz_target!(|data: &[u8]| {
    match GgufFile::from_bytes(data.to_vec()) {
        Ok(file) => {
            for t in file.tensors() {
                assert_eq!(file.tensor_data(t).len() as u64, t.n_bytes);
            }
        }
        Err(wgquant::Error::Gguf { .. }) => {}
        Err(e) => panic!("untyped error: {e}"),
    }
});
