//! Codec throughput in bytes per second: framing (line, len) and text encodings (gbk ↔ utf-8).
//!
//! Run with `cargo bench --bench codecs`. These are the costs every message pays on top of the
//! socket, so they should stay far above the network's speed.

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use socktalk::codec::{FrameCodec, Framing, Transcoder, WireEncoding};
use std::hint::black_box;
use tokio_util::codec::{Decoder, Encoder};

/// 1,000 chat-sized messages.
fn messages() -> Vec<Vec<u8>> {
    (0..1000)
        .map(|i| {
            format!("[#lobby] <guest{i}> hello there, this is message number {i}").into_bytes()
        })
        .collect()
}

fn framing(c: &mut Criterion) {
    let messages = messages();
    for framing in [Framing::Line, Framing::Len] {
        let mut wire = BytesMut::new();
        let mut codec = FrameCodec::new(framing, 64 * 1024);
        for message in &messages {
            codec.encode(message, &mut wire).unwrap();
        }
        let mut group = c.benchmark_group(format!("{framing:?}").to_lowercase());
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function("decode", |b| {
            b.iter(|| {
                let mut buf = wire.clone();
                let mut codec = FrameCodec::new(framing, 64 * 1024);
                let mut count = 0;
                while let Some(frame) = codec.decode(&mut buf).unwrap() {
                    count += frame.len();
                }
                black_box(count)
            })
        });
        group.bench_function("encode", |b| {
            let mut out = BytesMut::with_capacity(wire.len());
            b.iter(|| {
                out.clear();
                let mut codec = FrameCodec::new(framing, 64 * 1024);
                for message in &messages {
                    codec.encode(message, &mut out).unwrap();
                }
                black_box(out.len())
            })
        });
        group.finish();
    }
}

fn text(c: &mut Criterion) {
    let gbk = WireEncoding::for_label("gbk").unwrap();
    let utf8 = WireEncoding::default();
    let chinese =
        "你好，世界！这是一条用来测量编码速度的中文消息，夹杂 ASCII text 和数字 12345。\n"
            .repeat(200);
    let chinese_gbk = gbk.encode_message(&chinese);
    let mut group = c.benchmark_group("text");
    group.throughput(Throughput::Bytes(chinese.len() as u64));
    group.bench_function("utf8_to_gbk", |b| {
        b.iter(|| {
            let mut to_wire = Transcoder::new(utf8, gbk);
            black_box(to_wire.feed(chinese.as_bytes(), true).len())
        })
    });
    group.throughput(Throughput::Bytes(chinese_gbk.len() as u64));
    group.bench_function("gbk_to_utf8", |b| {
        b.iter(|| {
            let mut from_wire = Transcoder::new(gbk, utf8);
            black_box(from_wire.feed(&chinese_gbk, true).len())
        })
    });
    group.finish();
}

criterion_group!(benches, framing, text);
criterion_main!(benches);
