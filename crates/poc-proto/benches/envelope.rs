//! Envelope crypto: `Sender::seal` (sign + seal) and `Recipient::open`
//! (verify + open) of a 4 KiB inquiry, against the primitives they are built
//! from, measured in the same run with the same crates (ed25519-dalek,
//! x25519-dalek, ring).
//!
//! `cargo bench -p poc-proto --bench envelope` runs the criterion groups, then
//! re-measures every operation itself (interleaved batches, median per
//! operation) and prints the ratios (seal) / (sum of its primitives) and
//! (open) / (sum of its primitives). Target: at most 1.25. Under `cargo test`
//! (criterion's test mode) every operation runs once and no ratio is printed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use ed25519_dalek::Signer;
use poc_proto::Message;
use poc_proto::envelope::{MemoryReplayCache, Sender};
use poc_proto::keys::{EphemeralSecret, SignatureLabel};
use poc_proto::testkit::{NOW, World, inquiry_message};
use poc_proto::time::Seconds;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;

/// Size of the inquiry's encoded content.
const CONTENT_LEN: usize = 4096;

/// One benchmarked operation: a name and a closure doing it once.
struct Op {
    name: &'static str,
    run: Box<dyn FnMut()>,
}

impl Op {
    fn new(name: &'static str, run: impl FnMut() + 'static) -> Self {
        Op {
            name,
            run: Box::new(run),
        }
    }
}

struct OkmLen(usize);

impl hkdf::KeyType for OkmLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// An ephemeral secret that differs on every call, as a real sender's would.
fn ephemeral(counter: &mut u64) -> EphemeralSecret {
    *counter += 1;
    let mut bytes = [0x5a; 32];
    for (dst, src) in bytes.iter_mut().zip(counter.to_le_bytes()) {
        *dst = src;
    }
    EphemeralSecret::from_random_bytes(bytes)
}

/// The operations, in table order: the two envelope operations, the
/// primitives of their baselines, then parts of the envelope code that are in
/// no baseline (to account for any overhead).
fn ops() -> Vec<Op> {
    // Leaked so the closures can borrow it for 'static; one per process.
    let world: &'static World = Box::leak(Box::new(World::new()));
    let message: &'static Message = Box::leak(Box::new(inquiry_message(
        world,
        "EST.cert",
        "FRA.cert",
        CONTENT_LEN,
    )));
    let from = world.poc("EST.cert");
    let to = world.poc("FRA.cert");
    let expires_at = NOW.plus(Seconds::days(7));
    let sealed = world.seal(message, "bench").unwrap().into_bytes();
    let content = message.encode().unwrap();
    // Same layout as inside the seal: u64le(len) || content || signature.
    let plaintext_len = 8 + content.len() + 64;
    let plaintext = vec![0x42u8; plaintext_len];

    // Primitive inputs, from the same key material as the world.
    let signing = ed25519_dalek::SigningKey::from_bytes(&from.identity_seed);
    let verifying = signing.verifying_key();
    let verifying_bytes = verifying.to_bytes();
    let signature = signing.sign(&content);
    let prekey_secret = x25519_dalek::StaticSecret::from(to.prekey_seed);
    let ephemeral_public =
        x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([0x5a; 32]));
    let salt = b"pocnet/v1 seal\0";
    let info = [0x17u8; 15 + 2 + 16 + 8 + 32 + 32 + 8]; // the transcript's size
    let ikm = [0x99u8; 32];
    let aead_key =
        || LessSafeKey::new(UnboundKey::new(&aead::CHACHA20_POLY1305, &[7u8; 32]).unwrap());
    let nonce = || Nonce::assume_unique_for_key([3u8; aead::NONCE_LEN]);
    let ciphertext = {
        let mut buffer = plaintext.clone();
        aead_key()
            .seal_in_place_append_tag(nonce(), Aad::from(&info[..]), &mut buffer)
            .unwrap();
        buffer
    };

    let mut counter = 0u64;
    let sender = Sender::new(&from.certificate, &from.identity).unwrap();
    let prekey = to.prekey();
    let seal = move || {
        let ephemeral = ephemeral(&mut counter);
        black_box(
            sender
                .seal(message, &to.certificate, &prekey, expires_at, ephemeral)
                .unwrap(),
        );
    };
    let recipient = world.recipient("FRA.cert");
    let open = move || {
        // A fresh cache each time: with a shared one every open after the
        // first would fail as a replay (the unwrap makes sure none does).
        let mut cache = MemoryReplayCache::default();
        black_box(recipient.open(&sealed, &mut cache, NOW).unwrap());
    };
    let content_for_sign = content.clone();
    let content_for_verify = content.clone();
    let content_for_decode = content.clone();
    let content_for_digest = content.clone();
    let mut seal_buffer = Vec::with_capacity(plaintext_len + aead::MAX_TAG_LEN);
    let seal_key = aead_key();
    let mut open_buffer = Vec::with_capacity(ciphertext.len());
    let open_key = aead_key();
    let mut x25519_counter = 0u64;
    let content_for_poc_sign = content.clone();
    let content_for_poc_verify = content.clone();
    let identity_public = from.certificate.body().identity_key;
    let poc_signature = from.identity.sign(SignatureLabel::Message, &content);
    let prekey_ring_secret = to.prekeys.secret(to.prekey().prekey().id).unwrap();

    vec![
        Op::new("seal", seal),
        Op::new("open", open),
        Op::new("ed25519_sign", move || {
            black_box(signing.sign(black_box(&content_for_sign)));
        }),
        Op::new("ed25519_verify_strict", move || {
            verifying
                .verify_strict(black_box(&content_for_verify), &signature)
                .unwrap();
        }),
        Op::new("x25519_public_key", move || {
            x25519_counter += 1;
            let mut bytes = [0x5a; 32];
            for (dst, src) in bytes.iter_mut().zip(x25519_counter.to_le_bytes()) {
                *dst = src;
            }
            let secret = x25519_dalek::StaticSecret::from(bytes);
            black_box(x25519_dalek::PublicKey::from(&secret));
        }),
        Op::new("x25519_dh", move || {
            let shared = prekey_secret.diffie_hellman(black_box(&ephemeral_public));
            black_box(shared.was_contributory());
        }),
        Op::new("hkdf_sha256_44", move || {
            let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(black_box(&ikm));
            let mut okm = [0u8; 44];
            prk.expand(&[&info[..]], OkmLen(okm.len()))
                .unwrap()
                .fill(&mut okm)
                .unwrap();
            black_box(okm);
        }),
        Op::new("chacha20poly1305_seal", move || {
            seal_buffer.clear();
            seal_buffer.extend_from_slice(&plaintext);
            seal_key
                .seal_in_place_append_tag(nonce(), Aad::from(&info[..]), &mut seal_buffer)
                .unwrap();
            black_box(&seal_buffer);
        }),
        Op::new("chacha20poly1305_open", move || {
            open_buffer.clear();
            open_buffer.extend_from_slice(&ciphertext);
            let opened = open_key
                .open_in_place(nonce(), Aad::from(&info[..]), &mut open_buffer)
                .unwrap();
            black_box(opened);
        }),
        // Not primitives: where any overhead over the baselines may go.
        Op::new("extra_poc_identity_sign", move || {
            black_box(
                from.identity
                    .sign(SignatureLabel::Message, black_box(&content_for_poc_sign)),
            );
        }),
        Op::new("extra_poc_identity_verify", move || {
            assert!(identity_public.verify(
                SignatureLabel::Message,
                black_box(&content_for_poc_verify),
                &poc_signature
            ));
        }),
        Op::new("extra_prekey_secret_public", move || {
            black_box(prekey_ring_secret.public());
        }),
        Op::new("extra_message_encode", move || {
            black_box(message.encode().unwrap());
        }),
        Op::new("extra_message_decode", move || {
            black_box(Message::decode(black_box(&content_for_decode)).unwrap());
        }),
        Op::new("extra_ed25519_key_parse_is_weak", move || {
            let key = ed25519_dalek::VerifyingKey::from_bytes(black_box(&verifying_bytes));
            black_box(key.unwrap().is_weak());
        }),
        Op::new("extra_sha256_content_digest", move || {
            black_box(ring::digest::digest(
                &ring::digest::SHA256,
                black_box(&content_for_digest),
            ));
        }),
    ]
}

/// Criterion: one benchmark per operation.
fn criterion_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("envelope_4KiB");
    for mut op in ops() {
        group.bench_function(op.name, |b| b.iter(&mut op.run));
    }
    group.finish();
}

criterion_group!(benches, criterion_benches);

/// Nanoseconds per call, `[operation][round]`: `rounds` rounds, each running
/// every operation for one batch of about `batch`, interleaved so that load
/// from elsewhere on the machine hits all operations of a round alike.
fn measure(ops: &mut [Op], rounds: usize, batch: Duration) -> Vec<Vec<f64>> {
    let iterations: Vec<u32> = ops
        .iter_mut()
        .map(|op| {
            // Warm up, then size the batch.
            let start = Instant::now();
            let mut n = 0u32;
            while start.elapsed() < batch {
                (op.run)();
                n += 1;
            }
            n.max(1)
        })
        .collect();
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); ops.len()];
    for _ in 0..rounds {
        for ((op, &n), out) in ops.iter_mut().zip(&iterations).zip(samples.iter_mut()) {
            let start = Instant::now();
            for _ in 0..n {
                (op.run)();
            }
            out.push(start.elapsed().as_nanos() as f64 / f64::from(n));
        }
    }
    samples
}

/// The value at quantile `q` (0.5: the median).
fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = ((sorted.len().saturating_sub(1)) as f64 * q).round() as usize;
    sorted.get(at).copied().unwrap_or(f64::NAN)
}

fn micros(ns: f64) -> String {
    format!("{:>9.2} µs", ns / 1000.0)
}

const ROUNDS: usize = 101;
const BATCH: Duration = Duration::from_millis(10);
const TARGET: f64 = 1.25;

/// Re-measures every operation and prints the table and the two ratios.
fn summary() {
    let mut ops = ops();
    let samples = measure(&mut ops, ROUNDS, BATCH);
    let rounds = |name: &str| -> &[f64] {
        ops.iter()
            .zip(&samples)
            .find(|(op, _)| op.name == name)
            .map(|(_, s)| s.as_slice())
            .unwrap()
    };
    let sum = |names: &[&str]| -> Vec<f64> {
        (0..ROUNDS)
            .map(|r| names.iter().map(|n| rounds(n).get(r).unwrap()).sum())
            .collect()
    };
    let seal_primitives = [
        "ed25519_sign",
        "x25519_public_key",
        "x25519_dh",
        "hkdf_sha256_44",
        "chacha20poly1305_seal",
    ];
    let open_primitives = [
        "ed25519_verify_strict",
        "x25519_dh",
        "hkdf_sha256_44",
        "chacha20poly1305_open",
    ];

    let world = World::new();
    let message = inquiry_message(&world, "EST.cert", "FRA.cert", CONTENT_LEN);
    println!();
    println!(
        "Envelope crypto: inquiry of {} content bytes, {} envelope bytes; \
         {ROUNDS} interleaved rounds of ~{} ms batches per operation",
        message.encode().unwrap().len(),
        world.seal(&message, "bench").unwrap().as_bytes().len(),
        BATCH.as_millis()
    );
    println!(
        "  {:<34} {:>12} {:>12} {:>12}",
        "operation", "median", "p25", "p75"
    );
    for (op, s) in ops.iter().zip(&samples) {
        println!(
            "  {:<34} {} {} {}",
            op.name,
            micros(quantile(s, 0.5)),
            micros(quantile(s, 0.25)),
            micros(quantile(s, 0.75))
        );
    }
    println!();
    println!(
        "  {:<22} {:>12} {:>12} {:>12} {:>16} {:>9}",
        "operation", "measured", "primitives", "overhead", "ratio (p25-p75)", "<= 1.25x"
    );
    for (name, op, primitives) in [
        ("seal (sign + seal)", "seal", &seal_primitives[..]),
        ("open (verify + open)", "open", &open_primitives[..]),
    ] {
        let measured = rounds(op);
        let baseline = sum(primitives);
        // The ratio of each round (same machine conditions), then their median.
        let ratios: Vec<f64> = measured.iter().zip(&baseline).map(|(m, b)| m / b).collect();
        let ratio = quantile(&ratios, 0.5);
        let (m, b) = (quantile(measured, 0.5), quantile(&baseline, 0.5));
        println!(
            "  {:<22} {} {} {} {:>6.3}x ({:.2}-{:.2}) {:>9}",
            name,
            micros(m),
            micros(b),
            micros(m - b),
            ratio,
            quantile(&ratios, 0.25),
            quantile(&ratios, 0.75),
            if ratio <= TARGET { "met" } else { "NOT met" }
        );
    }
    println!("  seal primitives: {}", seal_primitives.join(" + "));
    println!("  open primitives: {}", open_primitives.join(" + "));
}

fn main() {
    // Criterion runs benchmarks under `cargo bench` (which passes `--bench`)
    // and only tests them once otherwise; the summary follows suit.
    let args: Vec<String> = std::env::args().collect();
    let benchmarking = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--list");
    benches();
    Criterion::default().configure_from_args().final_summary();
    if benchmarking {
        summary();
    } else {
        for mut op in ops() {
            (op.run)();
        }
    }
}
