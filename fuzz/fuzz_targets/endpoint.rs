//! Fuzzes the address parser: any string either parses or is refused with a usage error, and a
//! parsed endpoint's `Display` parses back to the same endpoint.
#![no_main]

use libfuzzer_sys::fuzz_target;
use socktalk::Endpoint;

fuzz_target!(|text: &str| {
    match text.parse::<Endpoint>() {
        Ok(endpoint) => {
            let shown = endpoint.to_string();
            let again: Endpoint = shown
                .parse()
                .unwrap_or_else(|err| panic!("{text:?} -> {shown:?} does not parse: {err}"));
            assert_eq!(again, endpoint, "{text:?} -> {shown:?}");
            assert_eq!(again.to_string(), shown);
        }
        Err(err) => {
            assert!(err.is_usage(), "{text:?}: {err}");
            assert!(!err.to_string().is_empty());
        }
    }
});
