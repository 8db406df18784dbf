//! The seed corpus of the `enroll_form` fuzz target (`fuzz/corpus/enroll_form/`, issue 10)
//! replayed as an ordinary test: every file goes through
//! `reload_enroll::fuzzing::enroll_form`, which must return without panicking.
//!
//! `write_seed_corpus` (ignored) wrote the seeds once:
//! `cargo test -p reload-enroll --test fuzz_corpora -- --ignored write_seed_corpus`.

#[path = "../../fuzz/replay.rs"]
mod replay;

use std::path::PathBuf;

use reload_enroll::fuzzing::{BOUNDARY, enroll_form};

fn corpus_dir() -> PathBuf {
    replay::corpus_dir(env!("CARGO_MANIFEST_DIR"), "enroll_form")
}

#[test]
fn enroll_form_corpus() {
    replay::replay(env!("CARGO_MANIFEST_DIR"), "enroll_form", enroll_form);
}

/// One part of a multipart body.
fn part(boundary: &str, name: &str, ctype: Option<&str>, value: &[u8]) -> Vec<u8> {
    let mut v =
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"").into_bytes();
    if name == "csr" {
        v.extend_from_slice(b"; filename=\"csr.der\"");
    }
    v.extend_from_slice(b"\r\n");
    if let Some(t) = ctype {
        v.extend_from_slice(format!("Content-Type: {t}\r\n").as_bytes());
    }
    v.extend_from_slice(b"\r\n");
    v.extend_from_slice(value);
    v.extend_from_slice(b"\r\n");
    v
}

fn end(boundary: &str) -> Vec<u8> {
    format!("--{boundary}--\r\n").into_bytes()
}

fn csr(names: Vec<rcgen::SanType>) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.subject_alt_names = names;
    p.serialize_request(&key).unwrap().der().to_vec()
}

fn email(s: &str) -> rcgen::SanType {
    rcgen::SanType::Rfc822Name(s.to_string().try_into().unwrap())
}

#[test]
#[ignore = "writes the seed corpus under fuzz/corpus (run once, by hand)"]
fn write_seed_corpus() {
    let b = BOUNDARY;
    let der = csr(vec![email("alice@fuzz.test")]);
    let pem = reload_proto::identity::to_pem("CERTIFICATE REQUEST", &der);
    let other = csr(vec![
        email("alice@fuzz.test"),
        rcgen::SanType::DnsName("x.example".try_into().unwrap()),
    ]);
    let form = |fields: &[Vec<u8>], boundary: &str| -> Vec<u8> {
        let mut v = fields.concat();
        v.extend(end(boundary));
        v
    };
    let fixed = |body: Vec<u8>| [vec![0u8], body].concat();
    let full = form(
        &[
            part(b, "username", None, b"alice"),
            part(b, "password", None, b"correct horse"),
            part(b, "nodeids", None, b"2"),
            part(b, "csr", Some("application/pkcs10"), &der),
        ],
        b,
    );
    let custom = "xYz-123";
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("full-der", fixed(full.clone())),
        (
            "full-pem",
            fixed(form(
                &[
                    part(b, "username", None, b"bob"),
                    part(b, "password", None, b"pw"),
                    part(b, "csr", Some("application/pkcs10; charset=x"), pem.as_bytes()),
                ],
                b,
            )),
        ),
        (
            "own-boundary",
            [
                vec![1u8],
                format!("{custom}\n").into_bytes(),
                form(
                    &[
                        part(custom, "username", None, b"carol"),
                        part(custom, "password", None, b"pw"),
                        part(custom, "csr", Some("application/pkcs10"), &other),
                    ],
                    custom,
                ),
            ]
            .concat(),
        ),
        (
            "duplicate-field",
            fixed(form(
                &[
                    part(b, "username", None, b"a"),
                    part(b, "username", None, b"b"),
                ],
                b,
            )),
        ),
        (
            "too-many-fields",
            fixed(form(
                &(0..9)
                    .map(|i| part(b, &format!("f{i}"), None, b"v"))
                    .collect::<Vec<_>>(),
                b,
            )),
        ),
        (
            "not-utf8-and-wrong-type",
            fixed(form(
                &[
                    part(b, "username", None, b"\xff\xfe"),
                    part(b, "password", None, b"\xc3"),
                    part(b, "csr", Some("text/plain"), b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"),
                ],
                b,
            )),
        ),
        ("unterminated", fixed(full[..full.len() / 2].to_vec())),
        ("empty-body", vec![0u8]),
    ];
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for (i, (label, data)) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}-{label}")), data).unwrap();
    }
}
