//! Query strings and urlencoded form bodies: any bytes parse or give a 400 (413 past
//! `MAX_FIELDS` parameters), never a panic, and a parsed body's parameters are valid UTF-8.
#![no_main]

use gatehouse::request::environ::PairBuf;
use gatehouse::request::input::{MAX_FIELDS, query_params, urlencoded_params};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut params = PairBuf::default();
    if let Ok(text) = std::str::from_utf8(data) {
        query_params(text, &mut params);
    }
    let before = params.iter().count();
    match urlencoded_params(data, &mut params) {
        Ok(()) => {
            for (n, v) in params.iter().skip(before) {
                assert!(std::str::from_utf8(n).is_ok() && std::str::from_utf8(v).is_ok());
            }
        }
        Err(e) if e.status == 413 => assert!(params.len() > MAX_FIELDS),
        Err(e) => assert_eq!(e.status, 400),
    }
});
