//! The providers' own verification snippets, run by real `python3` and
//! `node`, accept what Outhook signs, for every payload of the corpus.

use std::sync::OnceLock;
use std::time::SystemTime;

use outhook_signer::{Bytes, Message, RsaKeyPair, Scheme, Secret, SignedRequest, Signer, Verifier};
use outhook_testkit::corpus::{Payload, payloads};
use outhook_testkit::verifiers::{self, Case, Lang, Verdict};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn rsa_key() -> &'static RsaKeyPair {
    static KEY: OnceLock<RsaKeyPair> = OnceLock::new();
    KEY.get_or_init(|| RsaKeyPair::generate(2048).unwrap())
}

pub fn rsa_pem() -> String {
    rsa_key().to_pkcs8_pem().unwrap().to_string()
}

pub fn public_pem() -> String {
    rsa_key().public_key().unwrap().to_pem()
}

/// Signs every corpus payload; returns the corpus, the signed requests and the cases.
fn sign_corpus(
    scheme: &str,
    signing_keys: &[Secret],
    verify_key: &str,
) -> (Vec<Payload>, Vec<SignedRequest>, Vec<Case>) {
    let signer = Signer::new(Scheme::by_name(scheme).unwrap(), signing_keys).unwrap();
    let corpus = payloads();
    let mut requests = Vec::new();
    let mut cases = Vec::new();
    for (i, p) in corpus.iter().enumerate() {
        let payload = Bytes::from(p.json.clone());
        let id = format!("msg_{i}");
        let req = signer.sign(&Message::new(&id, now(), &payload)).unwrap();
        cases.push(Case {
            body: req.body.to_vec(),
            headers: req
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                .collect(),
            key: verify_key.to_owned(),
        });
        requests.push(req);
    }
    (corpus, requests, cases)
}

fn assert_all_accepted(what: &str, corpus: &[Payload], verdicts: &[Verdict]) {
    let rejected: Vec<_> = corpus
        .iter()
        .zip(verdicts)
        .filter(|(_, v)| !v.ok)
        .map(|(p, v)| format!("{} ({:?})", p.name, v.error))
        .collect();
    assert!(rejected.is_empty(), "{what} rejected: {rejected:#?}");
    assert_eq!(verdicts.len(), corpus.len());
}

/// Our own verifier accepts every request it signed.
fn assert_we_accept(scheme: &str, keys: &[Secret], requests: &[SignedRequest]) {
    let verifier = Verifier::new(Scheme::by_name(scheme).unwrap(), keys).unwrap();
    for req in requests {
        verifier.verify(req, &req.body).unwrap();
    }
}

#[test]
fn trr_python_snippet_accepts_every_payload() {
    let secret = "your_signing_secret";
    let (corpus, requests, cases) = sign_corpus("trr", &[Secret::new(secret)], secret);
    assert_all_accepted(
        "TRR Python",
        &corpus,
        &verifiers::run(Lang::Python, "trr", &cases).unwrap(),
    );
    for (p, r) in corpus.iter().zip(&requests) {
        assert_eq!(r.body, p.json.as_bytes(), "raw schemes send the provider's bytes");
    }
    assert_we_accept("trr", &[Secret::new(secret)], &requests);
}

#[test]
fn real_id_node_snippet_accepts_every_payload() {
    let secret = "rk_live_0123456789abcdef";
    let (corpus, requests, cases) = sign_corpus("real-id", &[Secret::new(secret)], secret);
    assert_all_accepted(
        "Real ID Node",
        &corpus,
        &verifiers::run(Lang::Node, "real-id", &cases).unwrap(),
    );
    assert_we_accept("real-id", &[Secret::new(secret)], &requests);
}

#[test]
fn real_id_python_snippet_accepts_every_payload_where_python_and_node_agree() {
    let secret = "rk_live_0123456789abcdef";
    let (corpus, _, cases) = sign_corpus("real-id", &[Secret::new(secret)], secret);
    let verdicts = verifiers::run(Lang::Python, "real-id", &cases).unwrap();
    for (p, v) in corpus.iter().zip(&verdicts) {
        // The corpus labels by hand where json.dumps and JSON.stringify agree;
        // Python itself confirms the label, and its verdict follows it.
        assert_eq!(v.python_agrees, Some(p.python_agrees), "agreement label of {}", p.name);
        assert_eq!(v.ok, p.python_agrees, "Real ID Python on {}: {:?}", p.name, v.error);
    }
    assert!(corpus.iter().filter(|p| p.python_agrees).count() >= 15);
}

#[test]
fn rheo_python_and_typescript_snippets_accept_every_payload() {
    let secret = "whsec_rheo_0123456789";
    let (corpus, requests, cases) = sign_corpus("rheo", &[Secret::new(secret)], secret);
    assert_all_accepted(
        "Rheo Python",
        &corpus,
        &verifiers::run(Lang::Python, "rheo", &cases).unwrap(),
    );
    assert_all_accepted(
        "Rheo TypeScript",
        &corpus,
        &verifiers::run(Lang::Node, "rheo", &cases).unwrap(),
    );
    assert_we_accept("rheo", &[Secret::new(secret)], &requests);
}

#[test]
fn cometh_node_create_verify_accepts_every_payload() {
    let (corpus, requests, cases) = sign_corpus("cometh", &[Secret::new(rsa_pem())], &public_pem());
    assert_all_accepted(
        "Cometh Node",
        &corpus,
        &verifiers::run(Lang::Node, "cometh", &cases).unwrap(),
    );
    assert_we_accept("cometh", &[Secret::new(public_pem())], &requests);
}

#[test]
fn standard_webhooks_official_libraries_accept_every_payload() {
    let secret = Secret::generate_whsec().unwrap();
    let (corpus, requests, cases) = sign_corpus("standard-webhooks", std::slice::from_ref(&secret), secret.expose());
    assert_all_accepted(
        "standardwebhooks (PyPI)",
        &corpus,
        &verifiers::run(Lang::Python, "standard-webhooks", &cases).unwrap(),
    );
    assert_all_accepted(
        "standardwebhooks (npm)",
        &corpus,
        &verifiers::run(Lang::Node, "standard-webhooks", &cases).unwrap(),
    );
    assert_we_accept("standard-webhooks", &[secret], &requests);
}

#[test]
fn during_rotation_every_secret_signs_and_each_library_accepts_either() {
    let (new, old) = (Secret::generate_whsec().unwrap(), Secret::generate_whsec().unwrap());
    let signer = Signer::new(
        Scheme::by_name("standard-webhooks").unwrap(),
        &[new.clone(), old.clone()],
    )
    .unwrap();
    let payload = Bytes::from_static(br#"{"type":"check.completed"}"#);
    let req = signer.sign(&Message::new("msg_rot", now(), &payload)).unwrap();
    assert_eq!(req.header("webhook-signature").unwrap().split(' ').count(), 2);
    let cases: Vec<Case> = [&new, &old]
        .iter()
        .map(|k| Case {
            body: req.body.to_vec(),
            headers: req
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.clone()))
                .collect(),
            key: k.expose().to_owned(),
        })
        .collect();
    for lang in [Lang::Python, Lang::Node] {
        let verdicts = verifiers::run(lang, "standard-webhooks", &cases).unwrap();
        assert!(verdicts.iter().all(|v| v.ok), "{lang:?}: {verdicts:?}");
    }
}

/// Runs `node -e script` with `input` on stdin and returns its stdout.
fn node(script: &str, input: String) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("node")
        .args(["-e", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "node failed");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn json_stringify_bodies_are_byte_identical_to_node() {
    // Node itself is the oracle: JSON.stringify(JSON.parse(x)) for each payload.
    let corpus = payloads();
    let script = "let d='';process.stdin.on('data',c=>d+=c).on('end',()=>{for(const l of d.split('\\n')){if(!l)continue;process.stdout.write(Buffer.from(JSON.stringify(JSON.parse(Buffer.from(l,'base64').toString('utf8')))).toString('base64')+'\\n')}})";
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let input: String = corpus.iter().map(|p| b64.encode(&p.json) + "\n").collect();
    let out = node(script, input);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), corpus.len());
    for (p, line) in corpus.iter().zip(lines) {
        let node = b64.decode(line).unwrap();
        let ours = outhook_signer::json::to_js_json(p.json.as_bytes()).unwrap();
        assert!(
            ours == node,
            "{}: ours {:?} node {:?}",
            p.name,
            String::from_utf8_lossy(&ours[..ours.len().min(200)]),
            String::from_utf8_lossy(&node[..node.len().min(200)])
        );
    }
}

#[test]
fn standard_webhooks_v1a_signatures_verify_with_nodes_own_ed25519() {
    // The reference libraries do not implement v1a yet; Node's crypto is an
    // independent Ed25519 verifier of the spec's signed content.
    let scheme = Scheme::by_name("standard-webhooks-v1a").unwrap();
    let key = scheme.generate_secret().unwrap();
    let public = outhook_signer::Ed25519SigningKey::from_whsk(key.expose())
        .unwrap()
        .public_key()
        .to_whpk();
    let signer = Signer::new(scheme, std::slice::from_ref(&key)).unwrap();
    let corpus = payloads();
    let mut lines = String::new();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    for (i, p) in corpus.iter().enumerate() {
        let payload = Bytes::from(p.json.clone());
        let req = signer
            .sign(&Message::new(&format!("msg_{i}"), now(), &payload))
            .unwrap();
        let sig = req
            .header("webhook-signature")
            .unwrap()
            .strip_prefix("v1a,")
            .unwrap()
            .to_owned();
        let content = format!(
            "{}.{}.",
            req.header("webhook-id").unwrap(),
            req.header("webhook-timestamp").unwrap()
        );
        let mut signed = content.into_bytes();
        signed.extend_from_slice(&req.body);
        lines.push_str(&format!("{} {}\n", b64.encode(&signed), sig));
    }
    let raw_public = b64.decode(public.trim_start_matches("whpk_")).unwrap();
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw_public);
    let script = format!(
        "const c=require('crypto');const k=c.createPublicKey({{key:{{kty:'OKP',crv:'Ed25519',x:'{x}'}},format:'jwk'}});\
         let d='';process.stdin.on('data',s=>d+=s).on('end',()=>{{for(const l of d.split('\\n')){{if(!l)continue;\
         const [m,s]=l.split(' ');console.log(c.verify(null,Buffer.from(m,'base64'),k,Buffer.from(s,'base64')))}}}})"
    );
    let out = node(&script, lines);
    let verdicts: Vec<&str> = out.lines().collect();
    assert_eq!(verdicts.len(), corpus.len());
    assert!(verdicts.iter().all(|v| *v == "true"), "{verdicts:?}");
}
