//! The control socket's file (issue #10): 0600 from the moment it has its name, owned by the
//! user it serves, nothing left beside it; a live peer's socket refused, a stale one
//! replaced, anything else at the path refused; removed on exit. (Who may connect is
//! tested in `control.rs`: the owner only.)

use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::PathBuf;

use reload_node::control::bind;

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("reload-ctlsock-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn bound_socket_is_0600_owned_by_its_user_and_alone() {
    let dir = scratch("mode");
    let path = dir.join("control.sock");
    let socket = bind(&path).unwrap();
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    assert_eq!(meta.uid(), socket.owner());
    std::fs::write(dir.join("probe"), b"").unwrap();
    let me = std::fs::metadata(dir.join("probe")).unwrap().uid();
    assert_eq!(socket.owner(), me, "the socket serves the user we run as");
    std::fs::remove_file(dir.join("probe")).unwrap();
    assert_eq!(
        entries(&dir),
        ["control.sock"],
        "no temporary name left beside it"
    );
    // It answers connections (the backlog accepts before it is served).
    std::os::unix::net::UnixStream::connect(&path).expect("connect");
    drop(socket);
    assert!(!path.exists(), "removed when dropped");
    assert!(entries(&dir).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_live_socket_is_refused_and_kept() {
    let dir = scratch("live");
    let path = dir.join("control.sock");
    let first = bind(&path).unwrap();
    let ino = std::fs::symlink_metadata(&path).unwrap().ino();
    let err = bind(&path).unwrap_err();
    assert_eq!(
        err,
        format!(
            "another peer is running with control socket {} (stop it first, or give this one \
             another --data-dir or --control PATH)",
            path.display()
        )
    );
    assert_eq!(std::fs::symlink_metadata(&path).unwrap().ino(), ino);
    assert_eq!(entries(&dir), ["control.sock"]);
    drop(first);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_stale_socket_is_replaced() {
    let dir = scratch("stale");
    let path = dir.join("control.sock");
    // A peer killed with its socket bound: the file stays, nobody listens.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let stale = std::fs::symlink_metadata(&path).unwrap();
    assert!(stale.file_type().is_socket());
    let socket = bind(&path).expect("a stale socket is replaced");
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    // Nobody listened on the stale file: a connection proves it was replaced (its inode
    // number may well be reused by the new one, so that proves nothing).
    std::os::unix::net::UnixStream::connect(&path).expect("the new socket listens");
    assert_eq!(entries(&dir), ["control.sock"]);
    drop(socket);
    assert!(!path.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn what_is_not_a_socket_is_refused_and_left_alone() {
    let dir = scratch("file");
    let path = dir.join("control.sock");
    std::fs::write(&path, b"precious").unwrap();
    let err = bind(&path).unwrap_err();
    assert_eq!(
        err,
        format!(
            "{} exists and is not a socket: remove it or give another --control PATH",
            path.display()
        )
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    assert_eq!(entries(&dir), ["control.sock"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_path_too_long_for_a_unix_socket_is_refused() {
    let dir = scratch("long");
    let path = dir.join("x".repeat(120));
    let err = bind(&path).unwrap_err();
    assert!(err.contains("too long for a Unix socket"), "{err}");
    assert!(entries(&dir).is_empty(), "nothing created");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_socket_in_a_missing_directory_is_a_readable_error() {
    let dir = scratch("missing");
    let path = dir.join("no-such-dir").join("control.sock");
    let err = bind(&path).unwrap_err();
    assert!(err.contains("cannot create the control socket in"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_path_that_fits_but_not_while_being_made_is_refused_cleanly() {
    let dir = scratch("edge");
    // The socket is made as DIR/.csXXXXXXXX/s (DIR + 14 bytes): a name of 2 bytes fits
    // sun_path, its temporary name does not.
    // DIR/SUB/cs is 103 bytes.
    let sub_len = 103 - dir.as_os_str().len() - "/".len() - "/cs".len();
    assert!(
        sub_len > 14,
        "temporary directory path too long for this test"
    );
    let sub = dir.join("d".repeat(sub_len));
    std::fs::create_dir(&sub).unwrap();
    let path = sub.join("cs");
    assert_eq!(path.as_os_str().len(), 103);
    let err = bind(&path).unwrap_err();
    assert!(err.contains("too long for a Unix socket"), "{err}");
    assert!(entries(&sub).is_empty(), "nothing left behind");
    let _ = std::fs::remove_dir_all(&dir);
}
