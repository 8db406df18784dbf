//! A hostile client learns nothing from a failed authentication (issue #10): an unknown
//! account, a wrong password, a disabled account (with or without its password) and a name
//! that cannot be an account get the very same answer — status, body and headers — and only
//! the server's log says which it was. Names that cannot be accounts are throttled by
//! address.

mod common;

use std::collections::BTreeMap;

use common::*;

/// Status, body and every header but `date`.
type Whole = (u16, BTreeMap<String, Vec<String>>, Vec<u8>);

async fn post_whole(http: &reqwest::Client, url: &str, user: &str, password: &str) -> Whole {
    let (good_csr, _) = csr(&rcgen::PKCS_ECDSA_P256_SHA256, vec![]);
    let r = http
        .post(url)
        .header("accept", "application/pkix-cert")
        .multipart(Form::new(user, password, good_csr).build())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in r.headers() {
        if name.as_str() != "date" {
            headers
                .entry(name.as_str().to_string())
                .or_default()
                .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
        }
    }
    (status, headers, r.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_wrong_password_and_disabled_account_look_the_same() {
    let o = Overlay::init("hostile", &[]);
    o.add_user("alice", PASSWORD);
    o.add_user("mallory", PASSWORD);
    let (ok, _, err) = run(&["user", "disable", "mallory", "--data-dir", o.d()], "");
    assert!(ok, "{err}");
    let server = o.start(&["--max-failed-logins", "100"]);
    let http = o.http();
    let url = o.enroll_url();
    let long_name = "x".repeat(60_000);

    let cases = [
        ("unknown user", "nobody", PASSWORD),
        ("wrong password", "alice", "not the password"),
        ("disabled account, right password", "mallory", PASSWORD),
        (
            "disabled account, wrong password",
            "mallory",
            "not the password",
        ),
        ("not an account name", "no such name!", PASSWORD),
        ("a 60 000-byte name", long_name.as_str(), PASSWORD),
    ];
    let mut answers = Vec::new();
    for (what, user, password) in cases {
        answers.push((what, post_whole(&http, &url, user, password).await));
    }
    let (first_what, first) = &answers[0];
    assert_eq!(first.0, 403, "{first:?}");
    assert_eq!(first.2, b"failed_authentication", "{first:?}");
    assert!(
        !first.1.contains_key(reload_enroll::DETAIL_HEADER),
        "no detail header: {first:?}"
    );
    for (what, a) in &answers[1..] {
        assert_eq!(a, first, "{what} and {first_what} differ");
    }

    // The log says which it was, and never holds the client's long name.
    let log = server.log();
    for reason in [
        "unknown user",
        "wrong password",
        "account disabled (right password)",
        "account disabled (wrong password)",
        "not an account name",
    ] {
        assert!(log.contains(reason), "log lacks {reason:?}:\n{log}");
    }
    assert!(
        !log.contains(&long_name[..100]),
        "the log holds the client's bytes"
    );

    // The right password of an enabled account still works.
    let a = post_whole(&http, &url, "alice", PASSWORD).await;
    assert_eq!(a.0, 200, "{}", String::from_utf8_lossy(&a.2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bogus_names_is_throttled_by_address() {
    let o = Overlay::init("flood", &[]);
    o.add_user("alice", PASSWORD);
    // Limit per address: 4 × 2 failures.
    let server = o.start(&["--max-failed-logins", "2", "--lockout", "600"]);
    let http = o.http();
    let url = o.enroll_url();
    for i in 0..8 {
        let name = format!("{i}{}", "-".repeat(30_000));
        let a = post_whole(&http, &url, &name, PASSWORD).await;
        assert_eq!(
            (a.0, a.2.as_slice()),
            (403, &b"failed_authentication"[..]),
            "bogus name {i}"
        );
    }
    // The address is locked out now, for any name, even a real account's right password.
    for user in ["9-another-bogus-name!", "alice"] {
        let a = post_whole(&http, &url, user, PASSWORD).await;
        assert_eq!(a.0, 429, "{user}: {}", String::from_utf8_lossy(&a.2));
        assert!(a.1.contains_key("retry-after"), "{a:?}");
    }
    assert!(server.log().contains("failed-login limit reached"));
}
