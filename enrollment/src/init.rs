//! `reload-enroll init`: an overlay from nothing.

use std::net::SocketAddr;
use std::time::SystemTime;

use reload_proto::check::{CheckOptions, check_document};
use reload_proto::config::{
    AccessPolicy, ConfigDocument, KindDataModel, KindDefinition, OverlayConfig, SelfSignedDigest,
    SignatureElement,
};
use reload_proto::identity::ReloadCertificate;
use reload_proto::sign::{Credentials, SigningKey, sign_blob};
use reload_wire::NodeId;
use time::{Duration, OffsetDateTime};

use crate::ca::{BACKDATE, Ca, KeyType, NodeCertSpec, random_node_id, random_serial};
use crate::datadir::{self, DataDir};
use crate::names::{check_overlay_name, user_name};
use crate::store::{self, NewCert, Store};
use crate::{DEFAULT_ENROLL_PATH, Error, Result, sha256_hex};

/// What `init` is told.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub overlay: String,
    pub key_type: KeyType,
    /// Public HTTPS port, written into the enrollment URL.
    pub port: u16,
    /// Overrides `https://<overlay>:<port>/enroll`.
    pub enrollment_url: Option<String>,
    pub bootstrap: Vec<SocketAddr>,
    pub self_signed: Option<SelfSignedDigest>,
    /// Validity of the CA, signer and HTTPS certificates.
    pub validity_days: u32,
    /// `expiration` of the configuration; `None` = no expiration.
    pub config_expires_days: Option<u32>,
    /// Kinds the overlay defines besides [`default_kinds`] (one with the same Kind-ID
    /// replaces the default's); each is signed by the kind-signer.
    pub extra_kinds: Vec<KindDefinition>,
    /// An ICE overlay (RFC 6940 §6.5.1.3): no-ice false, peers run DTLS-UDP-SR with full
    /// ICE. Default: No-ICE.
    pub ice: bool,
}

impl InitOptions {
    pub fn new(overlay: impl Into<String>) -> Self {
        InitOptions {
            overlay: overlay.into(),
            key_type: KeyType::Rsa2048,
            port: crate::DEFAULT_PORT,
            enrollment_url: None,
            bootstrap: Vec::new(),
            self_signed: None,
            validity_days: 3650,
            config_expires_days: None,
            extra_kinds: Vec::new(),
            ice: false,
        }
    }
}

/// What `init` made, for the operator.
#[derive(Clone, Debug)]
pub struct InitReport {
    pub overlay: String,
    pub enrollment_url: String,
    pub ca_sha256: String,
    pub config_signer_sha256: String,
    pub config_signer_node_id: NodeId,
    pub kind_signer_node_id: NodeId,
    pub sequence: u16,
}

/// A signer identity (configuration or kind signer): a node certificate from the CA.
struct Signer {
    creds: Credentials,
    key_pkcs8: Vec<u8>,
    cert_der: Vec<u8>,
    serial: [u8; 16],
    node_id: NodeId,
    user_name: String,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

fn make_signer(ca: &Ca, key_type: KeyType, role: &str, validity: Duration) -> Result<Signer> {
    let key = key_type.generate()?;
    let node_id = random_node_id(16)?;
    let now = OffsetDateTime::now_utc();
    let user = user_name(role, &ca.overlay);
    let spec = NodeCertSpec {
        node_ids: &[node_id],
        user_name: &user,
        serial: random_serial()?,
        not_before: now - BACKDATE,
        not_after: now + validity,
    };
    let cert_der = ca.issue_for_key(&key, &spec)?;
    let key_pkcs8 = key.serialize_der();
    let creds = Credentials::new(
        SigningKey::from_pkcs8(&key_pkcs8)?,
        ReloadCertificate::parse(cert_der.clone(), 16)?,
        node_id,
    )?;
    let (serial, not_before, not_after) = (spec.serial, spec.not_before, spec.not_after);
    Ok(Signer {
        creds,
        key_pkcs8,
        cert_der,
        serial,
        node_id,
        user_name: user,
        not_before,
        not_after,
    })
}

/// The Kinds every overlay made here requires (§11.1 `required-kinds`): SIP-REGISTRATION
/// (RFC 7904), TURN-SERVICE (§9), CERTIFICATE_BY_NODE and CERTIFICATE_BY_USER (§8). Their
/// data models and access policies are the IANA registry's.
pub fn default_kinds() -> Vec<KindDefinition> {
    // The data model / policy arguments are replaced by the registry's for these names.
    let mk = |name: &str, count: u32, size: u32| {
        KindDefinition::new(
            name,
            KindDataModel::Single,
            AccessPolicy::UserMatch,
            count,
            size,
        )
    };
    let mut turn = mk("TURN-SERVICE", 1, 100);
    turn.max_node_multiple = Some(20);
    vec![
        mk("SIP-REGISTRATION", 10, 1000),
        turn,
        mk("CERTIFICATE_BY_NODE", 4, 8192),
        mk("CERTIFICATE_BY_USER", 16, 8192),
    ]
}

/// Reads a Kind definition given on the command line (`reload-enroll init --kind`):
/// `ID,MODEL,POLICY,MAX-COUNT,MAX-SIZE` — ID a Kind-ID in the private range
/// 0xF0000001–0xFFFFFFFE (hex with 0x, or decimal; RFC 6940 §14.6), MODEL `single`, `array`
/// or `dictionary` (§7.2), POLICY an access control policy name (`USER-MATCH`,
/// `NODE-MATCH`, `USER-NODE-MATCH`, `NODE-MULTIPLE`, §7.3), MAX-COUNT and MAX-SIZE the
/// Kind's `max-count` and `max-size` (§11.1). An IANA-registered name instead of ID keeps
/// the registry's model and policy (give them anyway) and sets its limits.
pub fn parse_kind_spec(spec: &str) -> std::result::Result<KindDefinition, String> {
    use reload_proto::config::{KindRef, registered_kind};
    use reload_wire::storage::KindId;
    let usage = "a Kind is ID,MODEL,POLICY,MAX-COUNT,MAX-SIZE, e.g. \
                 0xf0000001,single,USER-MATCH,1,4096";
    let parts: Vec<&str> = spec.split(',').map(str::trim).collect();
    let [id, model, policy, count, size] = parts.as_slice() else {
        return Err(format!("--kind {spec:?}: {usage}"));
    };
    let number = |s: &str| -> Option<u32> {
        match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(h) => u32::from_str_radix(h, 16).ok(),
            None => s.parse().ok(),
        }
    };
    let kind: KindRef = match number(id) {
        Some(n) if KindId(n).is_private() => KindRef::Id(KindId(n)),
        Some(n) if registered_kind(KindId(n)).is_some() => KindRef::Id(KindId(n)),
        Some(n) => {
            return Err(format!(
                "--kind {spec:?}: Kind-ID {n:#x} is neither registered nor in the private range \
                 0xF0000001-0xFFFFFFFE (RFC 6940 §14.6)"
            ));
        }
        None if registered_kind(*id).is_some() => KindRef::Name(id.to_string()),
        None => {
            return Err(format!(
                "--kind {spec:?}: {id:?} is neither a Kind-ID nor a registered Kind name"
            ));
        }
    };
    let model = match model.to_ascii_lowercase().as_str() {
        "single" => KindDataModel::Single,
        "array" => KindDataModel::Array,
        "dictionary" => KindDataModel::Dictionary,
        other => {
            return Err(format!(
                "--kind {spec:?}: data model {other:?} is not single, array or dictionary"
            ));
        }
    };
    let policy = AccessPolicy::from_config_name(&policy.to_ascii_uppercase());
    if matches!(policy, AccessPolicy::Other(_)) {
        return Err(format!(
            "--kind {spec:?}: unknown access control policy (USER-MATCH, NODE-MATCH, \
             USER-NODE-MATCH, NODE-MULTIPLE, …)"
        ));
    }
    let (Some(count), Some(size)) = (number(count), number(size)) else {
        return Err(format!(
            "--kind {spec:?}: MAX-COUNT and MAX-SIZE are numbers; {usage}"
        ));
    };
    let mut k = KindDefinition::new(kind, model, policy, count, size);
    if k.access_control == AccessPolicy::NodeMultiple && k.max_node_multiple.is_none() {
        k.max_node_multiple = Some(
            reload_proto::config::registered_max_node_multiple(k.kind_id().unwrap_or(KindId(0)))
                .unwrap_or(8),
        );
    }
    Ok(k)
}

/// Builds and signs the configuration document; returns its text.
fn signed_document(
    opts: &InitOptions,
    ca: &Ca,
    enrollment_url: &str,
    config_signer: &Signer,
    kind_signer: &Signer,
) -> Result<(String, u16)> {
    let mut c = OverlayConfig::new(opts.overlay.clone());
    c.sequence = 1;
    c.expiration = opts.config_expires_days.map(|d| {
        let now = OffsetDateTime::now_utc();
        // Whole seconds: RFC 3339 without a fraction.
        now.replace_nanosecond(0).unwrap_or(now) + Duration::days(d.into())
    });
    c.root_certs = vec![ca.cert_der.clone().into()];
    c.enrollment_servers = vec![enrollment_url.to_string()];
    c.self_signed_permitted = opts.self_signed.clone();
    c.bootstrap_nodes = opts.bootstrap.clone();
    // An overlay is all ICE or all No-ICE (§6.5.1.5). No-ICE by default: links are
    // TLS-TCP-FH-NO-ICE and DTLS-UDP-SR-NO-ICE under overlay-link-protocol TLS; with
    // `ice`, DTLS-UDP-SR with full ICE (peers behind NATs).
    c.no_ice = !opts.ice;
    c.overlay_link_protocols = vec!["TLS".to_string()];
    c.configuration_signers = vec![config_signer.node_id.as_bytes().to_vec()];
    c.kind_signers = vec![kind_signer.node_id.as_bytes().to_vec()];
    let mut kinds = default_kinds();
    for extra in &opts.extra_kinds {
        kinds.retain(|k| k.kind_id() != extra.kind_id());
        kinds.push(extra.clone());
    }
    for k in &mut kinds {
        let block = sign_blob(&kind_signer.creds, k.to_xml().as_bytes())?;
        k.signature = Some(
            SignatureElement::from_security_block(&block)
                .map_err(|e| Error::new(format!("cannot encode a kind-signature: {e}")))?,
        );
    }
    c.kinds = kinds;
    let xml = c.to_xml();
    let block = sign_blob(&config_signer.creds, xml.as_bytes())?;
    let sig = SignatureElement::from_security_block(&block)
        .map_err(|e| Error::new(format!("cannot encode the configuration signature: {e}")))?;
    Ok((
        ConfigDocument::assemble(&[(xml, vec![sig.value])]),
        c.sequence,
    ))
}

/// Creates the overlay in `dir`. Refuses a directory that already holds one.
pub fn init(dir: &DataDir, opts: &InitOptions) -> Result<InitReport> {
    check_overlay_name(&opts.overlay)?;
    if let Some(existing) = dir.existing_overlay_file() {
        return Err(Error::new(format!(
            "{} already holds an overlay ({} exists); refusing to overwrite it. Use another --data-dir, or remove the directory if you really mean to start over (every issued certificate would be orphaned).",
            dir.root.display(),
            existing.display()
        )));
    }
    let enrollment_url = match &opts.enrollment_url {
        Some(u) => {
            if !u.starts_with("https://") {
                return Err(Error::new(format!(
                    "--enrollment-url {u:?}: it MUST be an https: URL (RFC 6940 §11.1)"
                )));
            }
            u.clone()
        }
        None => format!(
            "https://{}:{}{DEFAULT_ENROLL_PATH}",
            opts.overlay, opts.port
        ),
    };
    let validity = Duration::days(opts.validity_days.into());

    // Everything is made in memory first; files are written once it all checks.
    let (ca, ca_key) = Ca::create(&opts.overlay, opts.key_type, validity)?;
    let config_signer = make_signer(&ca, opts.key_type, "configuration-signer", validity)?;
    let kind_signer = make_signer(&ca, opts.key_type, "kind-signer", validity)?;
    let https_key = opts.key_type.generate()?;
    let https_serial = random_serial()?;
    let https_der = ca.issue_https(&https_key, https_serial, validity)?;
    let (document, sequence) =
        signed_document(opts, &ca, &enrollment_url, &config_signer, &kind_signer)?;

    let report = check_document(
        document.as_bytes(),
        &CheckOptions {
            verify: true,
            previous: None,
            now: SystemTime::now(),
        },
    );
    if !report.is_clean() {
        let list: Vec<String> = report.problems.iter().map(|p| format!("  {p}")).collect();
        return Err(Error::new(format!(
            "internal error: the generated configuration does not pass its own check:\n{}",
            list.join("\n")
        )));
    }

    dir.create()?;
    datadir::write_key(&dir.ca_key(), &ca_key)?;
    datadir::write_cert(&dir.ca_cert(), &ca.cert_der)?;
    datadir::write_key(&dir.config_signer_key(), &config_signer.key_pkcs8)?;
    datadir::write_cert(&dir.config_signer_cert(), &config_signer.cert_der)?;
    datadir::write_key(&dir.kind_signer_key(), &kind_signer.key_pkcs8)?;
    datadir::write_cert(&dir.kind_signer_cert(), &kind_signer.cert_der)?;
    datadir::write_key(&dir.https_key(), &https_key.serialize_der())?;
    datadir::write_cert(&dir.https_cert(), &https_der)?;
    datadir::write_public(&dir.config(), document.as_bytes())?;

    let mut db = Store::create(&dir.database())?;
    db.set_meta("overlay", &opts.overlay)?;
    db.set_meta("enrollment_url", &enrollment_url)?;
    db.set_meta("created", &crate::unix_now().to_string())?;
    let ca_cert = ReloadCertificate::parse(ca.cert_der.clone(), 16)?;
    let ca_serial = x509_serial(&ca.cert_der)?;
    db.record_infrastructure(&NewCert {
        serial: &ca_serial,
        owner: "#root-ca",
        purpose: store::PURPOSE_CA,
        node_ids: &[],
        user_name: None,
        not_before: ca_cert.not_before,
        not_after: ca_cert.not_after,
        csr_sha256: None,
        peer: None,
        der: &ca.cert_der,
    })?;
    for (signer, purpose) in [
        (&config_signer, store::PURPOSE_CONFIG_SIGNER),
        (&kind_signer, store::PURPOSE_KIND_SIGNER),
    ] {
        db.record_infrastructure(&NewCert {
            serial: &signer.serial,
            owner: &format!("#{purpose}"),
            purpose,
            node_ids: &[signer.node_id],
            user_name: Some(&signer.user_name),
            not_before: signer.not_before.unix_timestamp(),
            not_after: signer.not_after.unix_timestamp(),
            csr_sha256: None,
            peer: None,
            der: &signer.cert_der,
        })?;
    }
    let https = ReloadCertificate::parse(https_der.clone(), 16)?;
    db.record_infrastructure(&NewCert {
        serial: &https_serial,
        owner: "#https-server",
        purpose: store::PURPOSE_HTTPS,
        node_ids: &[],
        user_name: None,
        not_before: https.not_before,
        not_after: https.not_after,
        csr_sha256: None,
        peer: None,
        der: &https_der,
    })?;
    tracing::info!(overlay = %opts.overlay, dir = %dir.root.display(), "created overlay");
    Ok(InitReport {
        overlay: opts.overlay.clone(),
        enrollment_url,
        ca_sha256: sha256_hex(&ca.cert_der),
        config_signer_sha256: sha256_hex(&config_signer.cert_der),
        config_signer_node_id: config_signer.node_id,
        kind_signer_node_id: kind_signer.node_id,
        sequence,
    })
}

/// The serial number bytes of a DER certificate.
pub fn x509_serial(der: &[u8]) -> Result<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::new(format!("not a certificate: {e}")))?;
    Ok(cert.tbs_certificate.raw_serial().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reload_wire::storage::{DataModel, KindId};

    #[test]
    fn kind_specs_are_read_or_refused_with_the_reason() {
        let k = parse_kind_spec("0xf0000001,single,USER-MATCH,1,4096").unwrap();
        assert_eq!(k.kind_id(), Some(KindId(0xf000_0001)));
        assert_eq!(k.data_model.wire(), Some(DataModel::Single));
        assert_eq!(k.access_control, AccessPolicy::UserMatch);
        assert_eq!((k.max_count, k.max_size), (1, 4096));
        let k = parse_kind_spec(" 4026531842 , Dictionary , user-node-match , 8 , 100").unwrap();
        assert_eq!(k.kind_id(), Some(KindId(0xf000_0002)));
        assert_eq!(k.access_control, AccessPolicy::UserNodeMatch);
        let k = parse_kind_spec("0xf0000003,single,NODE-MULTIPLE,1,64").unwrap();
        assert!(k.max_node_multiple.is_some());
        // A registered name keeps the registry's model and policy.
        let k = parse_kind_spec("SIP-REGISTRATION,single,NODE-MATCH,3,2000").unwrap();
        assert_eq!(k.kind_id(), Some(KindId::SIP_REGISTRATION));
        assert_eq!(k.data_model.wire(), Some(DataModel::Dictionary));
        for (bad, why) in [
            ("0xf0000001,single,USER-MATCH,1", "ID,MODEL"),
            ("0x00000099,single,USER-MATCH,1,1", "private range"),
            ("NO-SUCH-KIND,single,USER-MATCH,1,1", "registered Kind name"),
            ("0xf0000001,list,USER-MATCH,1,1", "data model"),
            ("0xf0000001,single,ANYONE,1,1", "policy"),
            ("0xf0000001,single,USER-MATCH,many,1", "numbers"),
        ] {
            let e = parse_kind_spec(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn extra_kinds_are_in_the_signed_configuration() {
        let root = std::env::temp_dir().join(format!("reload-enroll-kinds-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let dir = DataDir::new(&root);
        let mut opts = InitOptions::new("kinds.example.org");
        opts.key_type = KeyType::P256;
        opts.extra_kinds = vec![
            parse_kind_spec("0xf0000001,array,USER-MATCH,16,512").unwrap(),
            parse_kind_spec("CERTIFICATE_BY_USER,array,USER-MATCH,2,100").unwrap(),
        ];
        init(&dir, &opts).unwrap(); // init checks the document it made (signatures included)
        let doc = ConfigDocument::parse_bytes(&std::fs::read(dir.config()).unwrap()).unwrap();
        let kinds = &doc.configurations[0].config.kinds;
        let find = |id: KindId| kinds.iter().find(|k| k.kind_id() == Some(id)).unwrap();
        let k = find(KindId(0xf000_0001));
        assert_eq!(k.data_model.wire(), Some(DataModel::Array));
        assert!(k.signature.is_some(), "signed by the kind-signer");
        assert_eq!(
            find(KindId::CERTIFICATE_BY_USER).max_count,
            2,
            "replaces the default"
        );
        assert_eq!(
            kinds
                .iter()
                .filter(|k| k.kind_id() == Some(KindId::CERTIFICATE_BY_USER))
                .count(),
            1
        );
        assert!(
            kinds
                .iter()
                .any(|k| k.kind_id() == Some(KindId::SIP_REGISTRATION))
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
