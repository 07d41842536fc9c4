//! The README's main job.
//!
//! Run: `cargo run --example quickstart`
//!
//! Signs one seed event per scheme and verifies it with Outhook's verifier.
//! (The dispatcher issue turns this into the full outbox-to-receiver demo.)

use outhook_signer::{Bytes, Message, RsaKeyPair, Scheme, Secret, Signer, Verifier};

fn main() -> anyhow::Result<()> {
    let rsa = RsaKeyPair::generate(2048)?;
    let rows = [
        ("trr", r#"{"type":"vendor.notification","vendor_id":"v_123"}"#),
        ("real-id", r#"{"event":"check.completed","created_at":"2022-12-09T15:20:35.136Z","check":{"id":"abcdef","step":"completed","testing":true}}"#),
        ("standard-webhooks", r#"{"type":"customer.data_deletion_request","check":{"id":"abcdef"}}"#),
        ("rheo", r#"{"event":"item.sold","data":{"item_id":"PART_001"}}"#),
        ("cometh", r#"{"type":"ORDER_FILLED","order":{"id":"0xabc","tokenId":42}}"#),
    ];
    println!("{:<18} {:<28} {:>6}  verified", "scheme", "signature header", "bytes");
    for (name, json) in rows {
        let scheme = Scheme::by_name(name)?;
        let (signing, verifying) = match name {
            "cometh" => (Secret::new(rsa.to_pkcs8_pem()?.as_str()), Secret::new(rsa.public_key()?.to_pem())),
            _ => {
                let s = scheme.generate_secret()?;
                (s.clone(), s)
            }
        };
        let payload = Bytes::from_static(json.as_bytes());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
        let request = Signer::new(scheme.clone(), &[signing])?.sign(&Message::new("msg_quickstart", now, &payload))?;
        let verified = Verifier::new(scheme, &[verifying])?.verify(&request, &request.body).is_ok();
        let header = request.headers.last().map(|(n, _)| n.as_str()).unwrap_or("");
        println!("{name:<18} {header:<28} {:>6}  {verified}", request.body.len());
        anyhow::ensure!(verified, "{name} did not verify");
    }
    Ok(())
}
