//! 50 concurrent enrollments yield 50 distinct Node-IDs and 50 rows; a server restart
//! (after SIGKILL) keeps users, rows and the CA.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use reload_enroll::server::password_hash;
use reload_enroll::store::Store;
use reload_proto::identity::ReloadCertificate;

const N: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_enrollments_then_a_restart_loses_nothing() {
    let o = Overlay::init("load", &[]);
    // 50 accounts through the library the CLI uses (one argon2id hash each).
    {
        let store = Store::open(&o.dir.join("enroll.sqlite")).unwrap();
        let hash = password_hash(PASSWORD).unwrap();
        for i in 0..N {
            store.add_user(&format!("user{i}"), &hash).unwrap();
        }
    }
    let ca_before = std::fs::read(o.ca_pem()).unwrap();
    let (_, _, certs_before) = o.counts();
    let server = o.start(&["--max-concurrent-hashes", "4"]);
    let http = o.http();
    let url = o.enroll_url();

    // CSRs first (P-256: cheap to make), then all 50 requests at once, bounded in time.
    let csrs: Vec<Vec<u8>> = (0..N)
        .map(|_| csr(&rcgen::PKCS_ECDSA_P256_SHA256, vec![]).0)
        .collect();
    let started = Instant::now();
    let tasks: Vec<_> = csrs
        .into_iter()
        .enumerate()
        .map(|(i, der)| {
            let http = http.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let user = format!("user{i}");
                let a = post(
                    &http,
                    &url,
                    Form::new(&user, PASSWORD, der),
                    Some("application/pkix-cert"),
                )
                .await;
                (user, a)
            })
        })
        .collect();
    let all = tokio::time::timeout(Duration::from_secs(300), futures_join(tasks))
        .await
        .expect("50 enrollments within 300 s");
    let elapsed = started.elapsed();
    let mut ids = BTreeSet::new();
    for (user, a) in &all {
        assert_eq!(a.status, 200, "{user}: {}", a.text());
        let c = ReloadCertificate::parse(a.body.clone(), 16).unwrap();
        assert_eq!(
            c.user_name.as_deref(),
            Some(format!("{user}@{OVERLAY}").as_str())
        );
        assert_eq!(c.node_ids.len(), 1);
        ids.insert(c.node_ids[0]);
    }
    assert_eq!(ids.len(), N, "50 distinct Node-IDs");
    let (users, node_ids, certs) = o.counts();
    assert_eq!(users, N as i64);
    assert_eq!(node_ids, N as i64 + 2, "plus the two signers'");
    assert_eq!(certs, certs_before + N as i64, "50 certificate rows");
    eprintln!("{N} concurrent enrollments in {elapsed:?}");

    // Kill -9 and restart: nothing is lost; the same CA issues; returning users keep their Node-IDs.
    server.kill();
    let server = o.start(&[]);
    assert_eq!(o.counts(), (users, node_ids, certs));
    assert_eq!(std::fs::read(o.ca_pem()).unwrap(), ca_before);
    let http = o.http();
    let (der, _) = csr(&rcgen::PKCS_RSA_SHA256, vec![]);
    let a = post(
        &http,
        &url,
        Form::new("user7", PASSWORD, der),
        Some("application/pkix-cert"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let c = ReloadCertificate::parse(a.body.clone(), 16).unwrap();
    let (_, first) = all.iter().find(|(u, _)| u == "user7").unwrap();
    let first = ReloadCertificate::parse(first.body.clone(), 16).unwrap();
    assert_eq!(
        c.node_ids, first.node_ids,
        "the same Node-ID after the restart"
    );
    // It chains to the root that was there before the restart.
    let doc = std::fs::read(o.dir.join("overlay.relo")).unwrap();
    let config = reload_proto::config::ConfigDocument::parse_bytes(&doc)
        .unwrap()
        .configurations[0]
        .config
        .clone();
    reload_proto::check::trust_policy(&config)
        .verify(&c, &[], std::time::SystemTime::now())
        .unwrap();
    assert_eq!(o.counts(), (users, node_ids, certs + 1));
    drop(server);
}

async fn futures_join<T: Send + 'static>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}
