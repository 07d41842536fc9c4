//! Signing throughput per scheme at 256 B, 4 KiB and 64 KiB, beside the
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! floor for the same bytes (plain SHA-256 and HMAC-SHA256), plus
//! re-serialisation throughput and RSA-2048 signatures per second.
//!
//! Run: `cargo bench -p outhook-signer --bench signing`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, KeyInit, Mac};
use outhook_signer::json::to_js_json;
use outhook_signer::{Bytes, Message, RsaKeyPair, Scheme, Secret, Signer};
use sha2::{Digest, Sha256};
use std::hint::black_box;
use std::sync::Arc;

/// A JSON payload of about `size` bytes with realistic structure.
fn payload(size: usize) -> Bytes {
    let mut s = String::from("{\"type\":\"item.sold\",\"items\":[");
    let mut i = 0;
    while s.len() < size.saturating_sub(40) {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!("{{\"id\":{i},\"sku\":\"SKU-{i:06}\",\"price\":{}.5}}", i * 3));
        i += 1;
    }
    s.push_str("],\"ok\":true}");
    Bytes::from(s)
}

fn signing(c: &mut Criterion) {
    let secret = [Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")];
    for size in [256usize, 4096, 65536] {
        let body = payload(size);
        let mut group = c.benchmark_group(format!("sign/{size}"));
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function("floor-sha256", |b| b.iter(|| Sha256::digest(black_box(&body[..]))));
        group.bench_function("floor-hmac-sha256", |b| {
            b.iter(|| {
                let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
                    .unwrap_or_else(|_| unreachable!());
                mac.update(black_box(&body[..]));
                mac.finalize().into_bytes()
            })
        });
        for name in ["standard-webhooks", "trr", "rheo", "github", "stripe", "real-id"] {
            let signer = Signer::new(Scheme::by_name(name).unwrap(), &secret).unwrap();
            group.bench_with_input(BenchmarkId::new("scheme", name), &body, |b, body| {
                b.iter(|| {
                    signer
                        .sign(&Message::new("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", 1_700_000_000, body))
                        .unwrap()
                })
            });
        }
        group.bench_function("js-reserialise", |b| {
            b.iter(|| to_js_json(black_box(&body[..])).unwrap())
        });
        group.finish();
    }
}

fn rsa(c: &mut Criterion) {
    let key = Arc::new(RsaKeyPair::generate(2048).unwrap());
    let body = payload(256);
    let mut group = c.benchmark_group("rsa2048");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sign-sha256", |b| b.iter(|| key.sign(black_box(&body[..])).unwrap()));
    let signer = Signer::with_rsa(outhook_signer::RsaScheme::cometh(), key.clone());
    group.bench_function("cometh-256B", |b| {
        b.iter(|| signer.sign(&Message::new("m", 1, &body)).unwrap())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = signing, rsa
}
criterion_main!(benches);
