//! Writing configuration documents: `OverlayConfig::to_xml`, `KindDefinition::to_xml`,
//! `ConfigDocument::assemble`.
//!
//! Only non-default values are written. Values are written trimmed of nothing, but the
//! parser trims XML white space, so a value with leading or trailing white space (or a
//! character XML 1.0 cannot carry, such as U+0000) does not survive a round trip.

use std::fmt::Write as _;

use base64::Engine as _;

use super::kinds::{KindDefinition, KindRef};
use super::{
    DEFAULT_BOOTSTRAP_PORT, DEFAULT_CHORD_PING_INTERVAL, DEFAULT_CHORD_UPDATE_INTERVAL,
    DEFAULT_INITIAL_TTL, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_NODE_ID_LENGTH,
    DEFAULT_OVERLAY_LINK_PROTOCOL, DEFAULT_OVERLAY_RELIABILITY_TIMER, DEFAULT_TOPOLOGY_PLUGIN,
    DEFAULT_TURN_DENSITY, NS_BASE, NS_CHORD, NS_DIAGNOSTICS, NS_REDIR, NS_ROUTE_MODE,
    NS_SELF_TUNING, NS_SHARE, NS_SIP, NamePatterns, OverlayConfig, SignatureElement,
    format_datetime, to_hex,
};

const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

pub(crate) fn escape_text(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '\r' => o.push_str("&#xD;"),
            c => o.push(c),
        }
    }
    o
}

pub(crate) fn escape_attr(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\t' => o.push_str("&#x9;"),
            '\n' => o.push_str("&#xA;"),
            '\r' => o.push_str("&#xD;"),
            c => o.push(c),
        }
    }
    o
}

fn element(out: &mut String, indent: &str, name: &str, value: &str) {
    let _ = writeln!(out, "{indent}<{name}>{}</{name}>", escape_text(value));
}

fn patterns(out: &mut String, indent: &str, name: &str, prefix: &str, p: &NamePatterns) {
    let _ = write!(out, "{indent}<{prefix}:{name} enable=\"{}\"", p.enable);
    if p.patterns.is_empty() {
        out.push_str("/>\n");
        return;
    }
    out.push_str(">\n");
    for pat in &p.patterns {
        element(
            out,
            &format!("{indent}  "),
            &format!("{prefix}:pattern"),
            pat,
        );
    }
    let _ = writeln!(out, "{indent}</{prefix}:{name}>");
}

fn signature(out: &mut String, indent: &str, name: &str, s: &SignatureElement) {
    let _ = write!(out, "{indent}<{name}");
    if let Some(a) = &s.algorithm {
        let _ = write!(out, " algorithm=\"{}\"", escape_attr(a));
    }
    let _ = writeln!(out, ">{}</{name}>", escape_text(&s.value));
}

impl OverlayConfig {
    /// One `<configuration>` element in the base namespace (declared on it, with the chord
    /// prefix and those of the companion RFCs it uses), every non-default value written.
    /// The text is what a configuration signer signs; [`super::ConfigDocument::assemble`]
    /// copies it unchanged.
    pub fn to_xml(&self) -> String {
        let mut o = String::new();
        let _ = write!(
            o,
            "<configuration xmlns=\"{NS_BASE}\" xmlns:chord=\"{NS_CHORD}\""
        );
        if self.sip_domain_restriction.is_some() {
            let _ = write!(o, " xmlns:sip=\"{NS_SIP}\"");
        }
        if self.route_mode.is_some() {
            let _ = write!(o, " xmlns:route-mode=\"{NS_ROUTE_MODE}\"");
        }
        if self.self_tuning_peers_to_probe.is_some() {
            let _ = write!(o, " xmlns:self-tuning=\"{NS_SELF_TUNING}\"");
        }
        if self.redir_branching_factor.is_some() {
            let _ = write!(o, " xmlns:redir=\"{NS_REDIR}\"");
        }
        if !self.diagnostic_kinds.is_empty() {
            let _ = write!(o, " xmlns:diag=\"{NS_DIAGNOSTICS}\"");
        }
        let mut attr_prefixes: Vec<(&str, String)> = Vec::new();
        for a in &self.extension_attributes {
            if a.namespace != XML_NS && !attr_prefixes.iter().any(|(ns, _)| *ns == a.namespace) {
                let p = format!("x{}", attr_prefixes.len());
                let _ = write!(o, " xmlns:{p}=\"{}\"", escape_attr(&a.namespace));
                attr_prefixes.push((&a.namespace, p));
            }
        }
        let _ = write!(
            o,
            "\n    instance-name=\"{}\" sequence=\"{}\"",
            escape_attr(&self.instance_name),
            self.sequence
        );
        if let Some(e) = self.expiration {
            let _ = write!(o, " expiration=\"{}\"", format_datetime(e));
        }
        for a in &self.extension_attributes {
            let prefix = if a.namespace == XML_NS {
                "xml"
            } else {
                attr_prefixes
                    .iter()
                    .find(|(ns, _)| *ns == a.namespace)
                    .map_or("xml", |(_, p)| p.as_str())
            };
            let _ = write!(o, " {prefix}:{}=\"{}\"", a.name, escape_attr(&a.value));
        }
        o.push_str(">\n");
        let i = "  ";
        if self.topology_plugin != DEFAULT_TOPOLOGY_PLUGIN {
            element(&mut o, i, "topology-plugin", &self.topology_plugin);
        }
        if self.node_id_length != DEFAULT_NODE_ID_LENGTH {
            element(
                &mut o,
                i,
                "node-id-length",
                &self.node_id_length.to_string(),
            );
        }
        for c in &self.root_certs {
            let b64 = base64::engine::general_purpose::STANDARD.encode(c);
            let _ = writeln!(o, "{i}<root-cert>");
            for line in b64.as_bytes().chunks(64) {
                let _ = writeln!(o, "{i}  {}", String::from_utf8_lossy(line));
            }
            let _ = writeln!(o, "{i}</root-cert>");
        }
        for e in &self.enrollment_servers {
            element(&mut o, i, "enrollment-server", e);
        }
        if let Some(d) = &self.self_signed_permitted {
            let _ = writeln!(
                o,
                "{i}<self-signed-permitted digest=\"{}\">true</self-signed-permitted>",
                escape_attr(d.config_name())
            );
        }
        for b in &self.bootstrap_nodes {
            let _ = write!(o, "{i}<bootstrap-node address=\"{}\"", b.ip());
            if b.port() != DEFAULT_BOOTSTRAP_PORT {
                let _ = write!(o, " port=\"{}\"", b.port());
            }
            o.push_str("/>\n");
        }
        if self.turn_density != DEFAULT_TURN_DENSITY {
            element(&mut o, i, "turn-density", &self.turn_density.to_string());
        }
        if !self.clients_permitted {
            element(&mut o, i, "clients-permitted", "false");
        }
        if self.no_ice {
            element(&mut o, i, "no-ice", "true");
        }
        if self.chord_update_interval != DEFAULT_CHORD_UPDATE_INTERVAL {
            let v = self.chord_update_interval.as_secs().to_string();
            element(&mut o, i, "chord:chord-update-interval", &v);
        }
        if self.chord_ping_interval != DEFAULT_CHORD_PING_INTERVAL {
            let v = self.chord_ping_interval.as_secs().to_string();
            element(&mut o, i, "chord:chord-ping-interval", &v);
        }
        if !self.chord_reactive {
            element(&mut o, i, "chord:chord-reactive", "false");
        }
        if let Some(s) = &self.shared_secret {
            element(&mut o, i, "shared-secret", s);
        }
        if self.max_message_size != DEFAULT_MAX_MESSAGE_SIZE {
            element(
                &mut o,
                i,
                "max-message-size",
                &self.max_message_size.to_string(),
            );
        }
        if self.initial_ttl != DEFAULT_INITIAL_TTL {
            element(&mut o, i, "initial-ttl", &self.initial_ttl.to_string());
        }
        if self.overlay_reliability_timer != DEFAULT_OVERLAY_RELIABILITY_TIMER {
            let v = self.overlay_reliability_timer.as_millis().to_string();
            element(&mut o, i, "overlay-reliability-timer", &v);
        }
        if self.overlay_link_protocols != [DEFAULT_OVERLAY_LINK_PROTOCOL] {
            for p in &self.overlay_link_protocols {
                element(&mut o, i, "overlay-link-protocol", p);
            }
        }
        for s in &self.configuration_signers {
            element(&mut o, i, "configuration-signer", &to_hex(s));
        }
        for s in &self.kind_signers {
            element(&mut o, i, "kind-signer", &to_hex(s));
        }
        for s in &self.bad_nodes {
            element(&mut o, i, "bad-node", &to_hex(s));
        }
        if let Some(p) = &self.sip_domain_restriction {
            patterns(&mut o, i, "domain-restriction", "sip", p);
        }
        if let Some(m) = &self.route_mode {
            element(&mut o, i, "route-mode:mode", m.config_name());
        }
        if let Some(n) = self.self_tuning_peers_to_probe {
            element(
                &mut o,
                i,
                "self-tuning:number-of-peers-to-probe",
                &n.to_string(),
            );
        }
        if let Some(b) = self.redir_branching_factor {
            element(&mut o, i, "redir:branching-factor", &b.to_string());
        }
        for d in &self.diagnostic_kinds {
            let _ = write!(o, "{i}<diag:diagnostic-kind kind=\"0x{:04x}\"", d.kind);
            if d.access_nodes.is_empty() {
                o.push_str("/>\n");
            } else {
                o.push_str(">\n");
                for n in &d.access_nodes {
                    element(&mut o, &format!("{i}  "), "diag:access-node", &to_hex(n));
                }
                let _ = writeln!(o, "{i}</diag:diagnostic-kind>");
            }
        }
        for e in &self.extensions {
            let _ = writeln!(o, "{i}{}", e.xml);
        }
        for m in &self.mandatory_extensions {
            element(&mut o, i, "mandatory-extension", m);
        }
        if !self.kinds.is_empty() {
            let _ = writeln!(o, "{i}<required-kinds>");
            for k in &self.kinds {
                o.push_str(&k.to_block_xml());
            }
            let _ = writeln!(o, "{i}</required-kinds>");
        }
        o.push_str("</configuration>");
        o
    }
}

impl KindDefinition {
    /// The `<kind>` element alone: what a kind signer signs (§11.1). It declares the
    /// namespaces of the companion-RFC parameters it uses and relies on the base namespace
    /// being the default (as in a configuration, and as §6.5.4.1 assumes for ConfigUpdate).
    pub fn to_xml(&self) -> String {
        let mut o = String::from("<kind");
        match &self.id {
            KindRef::Id(id) => {
                let _ = write!(o, " id=\"{}\"", id.0);
            }
            KindRef::Name(n) => {
                let _ = write!(o, " name=\"{}\"", escape_attr(n));
            }
        }
        if self.domain_restriction.is_some() {
            let _ = write!(o, " xmlns:sip=\"{NS_SIP}\"");
        }
        if self.variable_resource_names.is_some() {
            let _ = write!(o, " xmlns:share=\"{NS_SHARE}\"");
        }
        if self.redir_branching_factor.is_some() {
            let _ = write!(o, " xmlns:redir=\"{NS_REDIR}\"");
        }
        o.push_str(">\n");
        let i = "        ";
        element(&mut o, i, "data-model", self.data_model.config_name());
        element(
            &mut o,
            i,
            "access-control",
            self.access_control.config_name(),
        );
        element(&mut o, i, "max-count", &self.max_count.to_string());
        element(&mut o, i, "max-size", &self.max_size.to_string());
        if let Some(m) = self.max_node_multiple {
            element(&mut o, i, "max-node-multiple", &m.to_string());
        }
        if let Some(p) = &self.domain_restriction {
            patterns(&mut o, i, "domain-restriction", "sip", p);
        }
        if let Some(p) = &self.variable_resource_names {
            patterns(&mut o, i, "variable-resource-names", "share", p);
        }
        if let Some(b) = self.redir_branching_factor {
            element(&mut o, i, "redir:branching-factor", &b.to_string());
        }
        for e in &self.extensions {
            let _ = writeln!(o, "{i}{}", e.xml);
        }
        o.push_str("      </kind>");
        o
    }

    /// The whole `<kind-block>`: [`KindDefinition::to_xml`] followed by the
    /// `kind-signature` when [`KindDefinition::signature`] is set.
    pub fn to_block_xml(&self) -> String {
        let mut o = String::from("    <kind-block>\n      ");
        o.push_str(&self.to_xml());
        o.push('\n');
        if let Some(s) = &self.signature {
            signature(&mut o, "      ", "kind-signature", s);
        }
        o.push_str("    </kind-block>\n");
        o
    }

    /// A self-contained `<kind-block>` for a ConfigUpdate of type `kind` (§6.5.4.1):
    /// `kind_text` is the kind element exactly as it was signed (its bytes in the
    /// document it came from), followed by this definition's `kind-signature`. The
    /// element's namespace prefixes must not depend on declarations of the enclosing
    /// document (the base namespace is assumed by the receiver).
    pub fn block_xml_for_update(&self, kind_text: &str) -> Option<String> {
        let s = self.signature.as_ref()?;
        let mut o = String::from("<kind-block>\n");
        o.push_str(kind_text);
        o.push('\n');
        signature(&mut o, "", "kind-signature", s);
        o.push_str("</kind-block>");
        Some(o)
    }

    /// A `<kind-block>` around a kind element text (as signed) and its base64 signature.
    pub fn block_xml(kind_xml: &str, signature_b64: &str) -> String {
        format!(
            "<kind-block>\n{kind_xml}\n<kind-signature>{}</kind-signature>\n</kind-block>",
            escape_text(signature_b64)
        )
    }
}

pub(crate) fn assemble(parts: &[(String, Vec<String>)]) -> String {
    let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        o,
        "<overlay xmlns=\"{NS_BASE}\" xmlns:chord=\"{NS_CHORD}\">"
    );
    for (config, signatures) in parts {
        o.push_str(config);
        o.push('\n');
        for s in signatures {
            let _ = writeln!(o, "<signature>{}</signature>", escape_text(s));
        }
    }
    o.push_str("</overlay>\n");
    o
}
