//! Fuzzes the `len` framing of `FrameCodec`; see `frame_common.rs` for the invariants.
#![no_main]

mod frame_common;

use libfuzzer_sys::fuzz_target;
use socktalk::codec::Framing;

fuzz_target!(|input: frame_common::Input| frame_common::run(Framing::Len, input));
