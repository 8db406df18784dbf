//! Defects that need no cryptography (RFC 6940 §11.1 and the companion RFCs).

use std::collections::{BTreeMap, HashMap};

use reload_wire::storage::KindId;
use time::OffsetDateTime;

use super::kinds::{self, AccessPolicy, KindDataModel, KindDefinition, KindRef};
use super::{
    ConfigDocument, ConfigProblem, DEFAULT_OVERLAY_LINK_PROTOCOL, Lines,
    MIN_OVERLAY_RELIABILITY_TIMER, NS_DIAGNOSTICS, NS_REDIR, NS_ROUTE_MODE, NS_SELF_TUNING,
    OverlayConfig, RouteMode, SUPPORTED_NAMESPACES, SelfSignedDigest, SignatureElement,
    format_datetime, to_hex,
};

/// Size of the fixed forwarding header (§6.3.2): no message is smaller.
const FORWARDING_HEADER_LEN: u32 = 38;

pub(crate) fn document_problems(doc: &ConfigDocument, now: OffsetDateTime) -> Vec<ConfigProblem> {
    let mut out = doc.deferred.clone();
    for s in &doc.stray_signatures {
        out.push(ConfigProblem::new(
            "signature",
            s.line,
            "precedes every <configuration>: a signature follows the configuration it signs (§11.1); it signs nothing",
        ));
    }
    let mut names: HashMap<&str, u32> = HashMap::new();
    for c in &doc.configurations {
        out.extend(c.deferred.iter().cloned());
        check_config(&c.config, &c.lines, c.line, now, &mut out);
        if c.signatures.is_empty() {
            out.push(ConfigProblem::new(
                "configuration",
                c.line,
                format!(
                    "configuration '{}' is not followed by a <signature>: it MUST be signed by a configuration-signer of the previous configuration (§11.1)",
                    c.config.instance_name
                ),
            ));
        }
        for s in &c.signatures {
            signature_problem("signature", s, &mut out);
        }
        if let Some(first) = names.insert(&c.config.instance_name, c.line) {
            out.push(ConfigProblem::new(
                "configuration",
                c.line,
                format!(
                    "a second configuration for '{}' (the first is at line {first}); each configuration element is for a different overlay (§11.1)",
                    c.config.instance_name
                ),
            ));
        }
    }
    out.sort_by_key(|p| p.line);
    out
}

fn signature_problem(element: &str, s: &SignatureElement, out: &mut Vec<ConfigProblem>) {
    if let Err(e) = &s.security_block {
        out.push(ConfigProblem::new(
            element,
            s.line,
            format!("{e}: §11.1 requires a base64 SecurityBlock here"),
        ));
    }
}

fn node_id_checks(
    what: &'static str,
    ids: &[Vec<u8>],
    len: usize,
    lines: &Lines,
    fallback: u32,
    out: &mut Vec<ConfigProblem>,
) {
    for (i, id) in ids.iter().enumerate() {
        let line = lines.get(what, i).unwrap_or(fallback);
        if id.len() != len {
            out.push(ConfigProblem::new(
                what,
                line,
                format!(
                    "Node-ID {} is {} bytes; node-id-length is {len} (§11.1, §6.3.1.1)",
                    to_hex(id),
                    id.len()
                ),
            ));
        } else if id.iter().all(|b| *b == 0) {
            out.push(ConfigProblem::new(
                what,
                line,
                "the all-zero Node-ID is invalid (§3)",
            ));
        } else if id.iter().all(|b| *b == 0xff) {
            out.push(ConfigProblem::new(
                what,
                line,
                "the all-one Node-ID is the wildcard, not a node (§3)",
            ));
        }
    }
}

/// Every check of one configuration's values; `lines` locate them, `line` is the
/// configuration's own. The checks run one element family after the other, in the order
/// the problems have always been reported in (problems on one line keep that order).
pub(crate) fn check_config(
    c: &OverlayConfig,
    lines: &Lines,
    line: u32,
    now: OffsetDateTime,
    out: &mut Vec<ConfigProblem>,
) {
    let mut k = ConfigChecks {
        c,
        lines,
        line,
        now,
        out,
    };
    k.overlay_parameters();
    k.topology_and_node_ids();
    k.root_certs();
    k.enrollment();
    k.addresses();
    k.limits();
    k.extension_namespaces();
    k.extension_parameters();
    k.diagnostic_kinds();
    k.sip_domain_restriction();
    k.kinds();
}

/// One configuration being checked: its values, where they were written, and the problems
/// found so far.
struct ConfigChecks<'a> {
    c: &'a OverlayConfig,
    lines: &'a Lines,
    /// The `<configuration>` element's line: where a value without a line of its own is
    /// reported.
    line: u32,
    now: OffsetDateTime,
    out: &'a mut Vec<ConfigProblem>,
}

impl ConfigChecks<'_> {
    /// Line of the `i`th `key` element, else the configuration's.
    fn at(&self, key: &'static str, i: usize) -> u32 {
        self.lines.get(key, i).unwrap_or(self.line)
    }

    fn p(&mut self, element: &str, line: u32, msg: impl Into<String>) {
        self.out.push(ConfigProblem::new(element, line, msg));
    }

    /// The `<configuration>` element's attributes: instance-name, expiration, sequence
    /// (§11.1, §6.3.2.1).
    fn overlay_parameters(&mut self) {
        let (c, line, now) = (self.c, self.line, self.now);
        if c.instance_name.is_empty() {
            self.p(
                "configuration",
                line,
                "instance-name is empty: it is the overlay name (§11.1)",
            );
        }
        if let Some(e) = c.expiration {
            if e <= now {
                self.p(
                    "configuration",
                    line,
                    format!(
                        "expired at {} (expiration, §11.1); now is {}",
                        format_datetime(e),
                        format_datetime(now)
                    ),
                );
            }
            if !e.offset().is_utc() {
                self.p(
                    "configuration",
                    line,
                    format!(
                        "expiration {} is not in UTC; times MUST be given in UTC (§11.1)",
                        format_datetime(e)
                    ),
                );
            }
        }
        if c.sequence == u16::MAX {
            self.p(
                "configuration",
                line,
                "sequence 65535 is reserved: a sequence is between 0 and 2^16-2, after 65534 comes 0 (§11.1, §6.3.2.1)",
            );
        }
    }

    /// topology-plugin, node-id-length, and the Node-IDs of kind-signer,
    /// configuration-signer and bad-node (§11.1, §6.3.1.1, §10).
    fn topology_and_node_ids(&mut self) {
        let c = self.c;
        let tl = self.at("topology-plugin", 0);
        if !c.is_chord() {
            self.p(
                "topology-plugin",
                tl,
                format!(
                    "topology plug-in '{}' is not supported (CHORD-RELOAD, CHORD-SELF-TUNING); a node that cannot support it MUST exit the overlay (§11.1)",
                    c.topology_plugin
                ),
            );
        }
        let nl = self.at("node-id-length", 0);
        if !(16..=20).contains(&c.node_id_length) {
            self.p(
                "node-id-length",
                nl,
                format!(
                    "node-id-length {} is outside 16 to 20 bytes (§11.1 MUST, §6.3.1.1)",
                    c.node_id_length
                ),
            );
        } else if c.is_chord() && c.node_id_length != 16 {
            self.p(
                "node-id-length",
                nl,
                format!(
                    "node-id-length {} is refused: {} uses 128-bit (16-byte) Node-IDs (§10, §10.2); only other topology plug-ins may use 17 to 20",
                    c.node_id_length, c.topology_plugin
                ),
            );
        }
        for (what, ids) in [
            ("kind-signer", &c.kind_signers),
            ("configuration-signer", &c.configuration_signers),
            ("bad-node", &c.bad_nodes),
        ] {
            node_id_checks(what, ids, c.node_id_length, self.lines, self.line, self.out);
        }
    }

    /// root-cert: each an X.509v3 CA certificate valid now (§11.1).
    fn root_certs(&mut self) {
        let c = self.c;
        for (i, der) in c.root_certs.iter().enumerate() {
            let l = self.at("root-cert", i);
            match x509_parser::parse_x509_certificate(der) {
                Err(e) => self.p(
                    "root-cert",
                    l,
                    format!(
                        "not an X.509 certificate ({} bytes, {:?}…): {e} (§11.1)",
                        der.len(),
                        String::from_utf8_lossy(der.get(..der.len().min(16)).unwrap_or(&[]))
                    ),
                ),
                Ok((rest, cert)) => {
                    if !rest.is_empty() {
                        self.p(
                            "root-cert",
                            l,
                            format!("{} bytes follow the certificate", rest.len()),
                        );
                    }
                    self.root_cert(l, &cert);
                }
            }
        }
    }

    /// One parsed root-cert: version, CA, validity (§11.1).
    fn root_cert(&mut self, l: u32, cert: &x509_parser::certificate::X509Certificate<'_>) {
        if cert.version() != x509_parser::x509::X509Version::V3 {
            self.p("root-cert", l, "not an X.509v3 certificate (§11.1)");
        }
        if !cert.is_ca() {
            self.p(
                "root-cert",
                l,
                "not a CA certificate (no basicConstraints cA=true): it cannot be the root trust anchor signing the overlay's certificates (§11.1)",
            );
        }
        let v = cert.validity();
        let (nb, na) = (v.not_before.to_datetime(), v.not_after.to_datetime());
        if na < self.now {
            self.p(
                "root-cert",
                l,
                format!("the root certificate expired at {}", format_datetime(na)),
            );
        } else if nb > self.now {
            self.p(
                "root-cert",
                l,
                format!(
                    "the root certificate is not valid before {}",
                    format_datetime(nb)
                ),
            );
        }
    }

    /// How certificates are had and validated: some root-cert or self-signed-permitted,
    /// https enrollment-servers, a supported self-signed digest (§11.1, §11.3, §13.3).
    fn enrollment(&mut self) {
        let c = self.c;
        if c.root_certs.is_empty() && c.self_signed_permitted.is_none() {
            self.p(
                "configuration",
                self.line,
                "no root-cert and self-signed certificates are not permitted: no certificate can be validated (§11.1, §13.3)",
            );
        }
        for (i, e) in c.enrollment_servers.iter().enumerate() {
            let https = e.get(..6).is_some_and(|s| s.eq_ignore_ascii_case("https:"));
            if !https {
                self.p(
                    "enrollment-server",
                    self.at("enrollment-server", i),
                    format!("'{e}' is not an https: URL (§11.1 MUST)"),
                );
            }
        }
        if let Some(SelfSignedDigest::Other(d)) = &c.self_signed_permitted {
            self.p(
                "self-signed-permitted",
                self.at("self-signed-permitted", 0),
                format!("digest '{d}' is not supported (sha1, sha256; §11.1)"),
            );
        }
    }

    /// bootstrap-node addresses and turn-density (§11.1, §11.1.1, §9).
    fn addresses(&mut self) {
        let c = self.c;
        for (i, b) in c.bootstrap_nodes.iter().enumerate() {
            let l = self.at("bootstrap-node", i);
            if b.port() == 0 {
                self.p(
                    "bootstrap-node",
                    l,
                    format!("{b}: port 0 cannot be connected to"),
                );
            }
            if b.ip().is_unspecified() || b.ip().is_multicast() {
                self.p(
                    "bootstrap-node",
                    l,
                    format!("{}: not a unicast address of a node", b.ip()),
                );
            }
        }
        if c.turn_density > 255 {
            self.p(
                "turn-density",
                self.at("turn-density", 0),
                format!(
                    "turn-density {} exceeds xsd:unsignedByte (§11.1.1)",
                    c.turn_density
                ),
            );
        }
        let turn_max = c
            .kind(KindId::TURN_SERVICE)
            .and_then(|k| k.max_node_multiple)
            .or(kinds::registered_max_node_multiple(KindId::TURN_SERVICE))
            .unwrap_or(20);
        if c.turn_density > turn_max {
            self.p(
                "turn-density",
                self.at("turn-density", 0),
                format!(
                    "turn-density {} exceeds the TURN-SERVICE NODE-MULTIPLE maximum {turn_max}: stores for iterations above it would be refused (§9)",
                    c.turn_density
                ),
            );
        }
    }

    /// Timers, sizes and link protocols: overlay-reliability-timer, max-message-size,
    /// initial-ttl, the CHORD-RELOAD intervals, overlay-link-protocol (§11.1, §6.3.2,
    /// §10.7.4).
    fn limits(&mut self) {
        let c = self.c;
        if c.overlay_reliability_timer < MIN_OVERLAY_RELIABILITY_TIMER {
            self.p(
                "overlay-reliability-timer",
                self.at("overlay-reliability-timer", 0),
                format!(
                    "{} ms is below the minimum of 200 ms (§11.1 MUST)",
                    c.overlay_reliability_timer.as_millis()
                ),
            );
        }
        if c.max_message_size < FORWARDING_HEADER_LEN {
            self.p(
                "max-message-size",
                self.at("max-message-size", 0),
                format!(
                    "{} bytes cannot hold even the 38-byte forwarding header (§6.3.2)",
                    c.max_message_size
                ),
            );
        }
        if c.initial_ttl == 0 {
            self.p(
                "initial-ttl",
                self.at("initial-ttl", 0),
                "0: no message could take a single hop (§6.3.2)",
            );
        }
        if c.chord_update_interval.is_zero() {
            self.p(
                "chord:chord-update-interval",
                self.at("chord-update-interval", 0),
                "0 s: Updates would be sent continuously (§10.7.4.1)",
            );
        }
        if c.chord_ping_interval.is_zero() {
            self.p(
                "chord:chord-ping-interval",
                self.at("chord-ping-interval", 0),
                "0 s: finger Pings would be sent continuously (§10.7.4.2)",
            );
        }
        if !c.overlay_link_protocols.is_empty()
            && !c
                .overlay_link_protocols
                .iter()
                .any(|x| x == DEFAULT_OVERLAY_LINK_PROTOCOL)
        {
            self.p(
                "overlay-link-protocol",
                self.at("overlay-link-protocol", 0),
                format!(
                    "none of {:?} is supported (TLS, meaning TLS and DTLS; §11.1, §14.11)",
                    c.overlay_link_protocols
                ),
            );
        }
    }

    /// mandatory-extension: each supported (§11.1), and each extension namespace in use
    /// listed (RFC 7263 §6, RFC 7363 §7, RFC 7374 §8, RFC 7851 §9.6).
    fn extension_namespaces(&mut self) {
        let c = self.c;
        for (i, m) in c.mandatory_extensions.iter().enumerate() {
            if !SUPPORTED_NAMESPACES.contains(&m.as_str()) {
                self.p(
                    "mandatory-extension",
                    self.at("mandatory-extension", i),
                    format!(
                        "extension namespace '{m}' is not supported, and a joining node MUST support it (§11.1)"
                    ),
                );
            }
        }
        let redir_kind = c.kinds.iter().find(|k| k.redir_branching_factor.is_some());
        let uses_redir = c.redir_branching_factor.is_some() || redir_kind.is_some();
        let redir_line = self
            .lines
            .get("redir:branching-factor", 0)
            .or(redir_kind.map(|k| k.line))
            .unwrap_or(self.line);
        for (used, ns, key, rfc) in [
            (
                c.route_mode.is_some(),
                NS_ROUTE_MODE,
                "route-mode:mode",
                "RFC 7263 §6",
            ),
            (
                c.self_tuning_peers_to_probe.is_some(),
                NS_SELF_TUNING,
                "self-tuning:number-of-peers-to-probe",
                "RFC 7363 §7",
            ),
            (
                uses_redir,
                NS_REDIR,
                "redir:branching-factor",
                "RFC 7374 §8",
            ),
            (
                !c.diagnostic_kinds.is_empty(),
                NS_DIAGNOSTICS,
                "diagnostic-kind",
                "RFC 7851 §9.6",
            ),
        ] {
            if used && !c.mandatory_extensions.iter().any(|m| m == ns) {
                let l = if ns == NS_REDIR {
                    redir_line
                } else {
                    self.at(key, 0)
                };
                self.p(
                    key,
                    l,
                    format!(
                        "uses namespace {ns} without listing it in a <mandatory-extension> ({rfc})"
                    ),
                );
            }
        }
    }

    /// The extensions' own parameters: route-mode:mode (RFC 7263 §6),
    /// self-tuning:number-of-peers-to-probe (RFC 7363 §6.5), redir:branching-factor
    /// (RFC 7374 §3).
    fn extension_parameters(&mut self) {
        let c = self.c;
        if let Some(RouteMode::Other(m)) = &c.route_mode {
            self.p(
                "route-mode:mode",
                self.at("route-mode:mode", 0),
                format!("unknown routing mode '{m}' (DRR or RPR; RFC 7263 §6)"),
            );
        }
        if c.self_tuning_peers_to_probe == Some(0) {
            self.p(
                "self-tuning:number-of-peers-to-probe",
                self.at("self-tuning:number-of-peers-to-probe", 0),
                "0: no estimates could be collected (RFC 7363 §6.5)",
            );
        }
        if let Some(b) = c.redir_branching_factor
            && b < 2
        {
            self.p(
                "redir:branching-factor",
                self.at("redir:branching-factor", 0),
                format!("branching factor {b}: a ReDiR tree needs at least 2 (RFC 7374 §3)"),
            );
        }
    }

    /// diagnostic-kind: Kind ID and access-nodes (RFC 7851 §7, §9.2).
    fn diagnostic_kinds(&mut self) {
        let c = self.c;
        for (i, d) in c.diagnostic_kinds.iter().enumerate() {
            let l = self.at("diagnostic-kind", i);
            if d.kind == 0 || d.kind == 0xffff {
                self.p(
                    "diagnostic-kind",
                    l,
                    format!(
                        "diagnostic Kind 0x{:04x} is reserved (RFC 7851 §9.2)",
                        d.kind
                    ),
                );
            }
            if d.access_nodes.is_empty() {
                self.p(
                    "diagnostic-kind",
                    l,
                    format!(
                        "diagnostic Kind 0x{:04x} has no <access-node>; at least one is required (RFC 7851 §7)",
                        d.kind
                    ),
                );
            }
            for n in &d.access_nodes {
                if n.len() != c.node_id_length {
                    self.p(
                        "access-node",
                        l,
                        format!(
                            "Node-ID {} is {} bytes; node-id-length is {} (RFC 7851 §7)",
                            to_hex(n),
                            n.len(),
                            c.node_id_length
                        ),
                    );
                }
            }
        }
    }

    /// sip:domain-restriction (RFC 7904 §3.4).
    fn sip_domain_restriction(&mut self) {
        if let Some(d) = &self.c.sip_domain_restriction {
            let l = self.at("sip:domain-restriction", 0);
            patterns_problems("sip:domain-restriction", l, d, false, self.out);
        }
    }

    /// required-kinds: a kind-signer to sign them, each Kind's own checks, no Kind-ID
    /// defined twice (§11.1).
    fn kinds(&mut self) {
        let c = self.c;
        if !c.kinds.is_empty() && c.kind_signers.is_empty() {
            self.p(
                "required-kinds",
                c.kinds.first().map_or(self.line, |k| k.line),
                "kind-blocks MUST be signed by a node listed as kind-signer, and none is listed (§11.1)",
            );
        }
        let mut ids: BTreeMap<u32, u32> = BTreeMap::new();
        for k in &c.kinds {
            check_kind(k, self.out);
            if let Some(id) = k.kind_id()
                && let Some(first) = ids.insert(id.0, k.line)
            {
                self.p(
                    "kind",
                    k.line,
                    format!(
                        "Kind-ID {} (0x{:x}) is defined twice (first at line {first})",
                        id.0, id.0
                    ),
                );
            }
        }
    }
}

fn patterns_problems(
    element: &str,
    line: u32,
    p: &super::NamePatterns,
    share: bool,
    out: &mut Vec<ConfigProblem>,
) {
    if share && p.enable && p.patterns.is_empty() {
        out.push(ConfigProblem::new(
            element,
            line,
            "enable is true but no <pattern> is given; one MUST be present (RFC 8076 §5.3)",
        ));
    }
    if !p.enable && !p.patterns.is_empty() && !share {
        out.push(ConfigProblem::new(
            element,
            line,
            "patterns are given but enable is not true: they are ignored and only AORs of the overlay's domain are accepted (RFC 7904 §3.4)",
        ));
    }
    if !share {
        for pat in &p.patterns {
            if let Err(e) = regex::Regex::new(&format!("^(?:{pat})$")) {
                out.push(ConfigProblem::new(
                    element,
                    line,
                    format!("pattern '{pat}' is not a regular expression this node can use, so it admits no domain: {e}"),
                ));
            }
        }
    }
    if share {
        for pat in &p.patterns {
            if !(pat.contains("$USER") && pat.contains("$DOMAIN")) {
                out.push(ConfigProblem::new(
                    element,
                    line,
                    format!("pattern '{pat}' lacks $USER or $DOMAIN; both MUST be present (RFC 8076 §5.3)"),
                ));
            }
        }
    }
}

/// Checks of one Kind definition alone.
pub(crate) fn check_kind(k: &KindDefinition, out: &mut Vec<ConfigProblem>) {
    let l = k.line;
    let mut p = |msg: String| out.push(ConfigProblem::new("kind", l, msg));
    let registered = kinds::lookup(&k.id);
    match (&k.id, &registered) {
        (KindRef::Name(n), None) => p(format!(
            "'{n}' is not an IANA-registered Kind name; a Kind defined by the configuration uses an id from the private range 0xF0000001-0xFFFFFFFE (§11.1, §14.6)"
        )),
        (KindRef::Id(id), None) => {
            if id.0 == 0 || id.0 == 0x7fff_ffff || id.0 == 0xffff_fffe {
                p(format!("Kind-ID 0x{:x} is reserved (§14.6)", id.0));
            } else if !id.is_private() {
                p(format!(
                    "Kind-ID {} (0x{:x}) is neither registered nor in the private range 0xF0000001-0xFFFFFFFE that id= Kinds are allocated from (§11.1, §14.6)",
                    id.0, id.0
                ));
            }
        }
        (_, Some(r)) => {
            // Only reachable for Kinds built in code: the parser replaces the document's
            // values with the registry's (and reports the disagreement itself).
            let model: KindDataModel = r.model.into();
            if k.data_model != model || k.access_control != r.policy {
                p(format!(
                    "Kind {} is registered as {} / {} ({}), but this definition says {} / {} (§11.1)",
                    r.name,
                    model.config_name(),
                    r.policy.config_name(),
                    r.source,
                    k.data_model.config_name(),
                    k.access_control.config_name()
                ));
            }
        }
    }
    if let KindDataModel::Other(m) = &k.data_model {
        p(format!(
            "data model '{m}' is not supported (SINGLE, ARRAY, DICTIONARY; §7.2)"
        ));
    }
    if let AccessPolicy::Other(a) = &k.access_control {
        p(format!(
            "access control '{a}' is not supported (§7.3 and the companion RFCs)"
        ));
    }
    if k.access_control == AccessPolicy::NodeMultiple && k.max_node_multiple.is_none() {
        p(
            "the access control is NODE-MULTIPLE, so <max-node-multiple> MUST be included (§11.1)"
                .into(),
        );
    }
    if k.max_node_multiple == Some(0) {
        p("max-node-multiple MUST be an integer greater than 0 (§11.1)".into());
    }
    if let Some(b) = k.redir_branching_factor
        && b < 2
    {
        p(format!(
            "branching factor {b}: a ReDiR tree needs at least 2 (RFC 7374 §3)"
        ));
    }
    match &k.signature {
        None => p("the kind-block has no <kind-signature>; it MUST (§11.1)".into()),
        Some(s) => signature_problem("kind-signature", s, out),
    }
    if let Some(d) = &k.domain_restriction {
        patterns_problems("sip:domain-restriction", l, d, false, out);
    }
    if let Some(v) = &k.variable_resource_names {
        patterns_problems("share:variable-resource-names", l, v, true, out);
    }
}
