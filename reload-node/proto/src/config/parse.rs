//! The parser: RELAX NG grammar of RFC 6940 §11.1.1 plus the companion RFCs' elements,
//! checked by hand over a `roxmltree` tree.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use roxmltree::{Document, Node, ParsingOptions};

use super::kinds::{self, AccessPolicy, KindDataModel, KindDefinition, KindRef, ParsedKindBlock};
use super::{
    ConfigDocument, ConfigProblem, Configuration, DEFAULT_BOOTSTRAP_PORT, DiagnosticKindAccess,
    ExtensionAttribute, ExtensionElement, Lines, MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_NODES, NS_BASE,
    NS_CHORD, NS_DIAGNOSTICS, NS_REDIR, NS_ROUTE_MODE, NS_SELF_TUNING, NS_SHARE, NS_SIP,
    NamePatterns, OverlayConfig, RouteMode, SelfSignedDigest, SignatureElement, from_hex,
    is_xml_space, xml_trim,
};

const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

pub(crate) fn too_large(len: usize) -> ConfigProblem {
    ConfigProblem::new(
        "document",
        1,
        format!(
            "document is {len} bytes; documents over {MAX_DOCUMENT_BYTES} bytes are refused before parsing"
        ),
    )
}

/// Reads `xml` into a tree with the resource limits, or the one problem that stops it.
fn load(xml: &str) -> Result<Document<'_>, Vec<ConfigProblem>> {
    if xml.len() > MAX_DOCUMENT_BYTES {
        return Err(vec![too_large(xml.len())]);
    }
    let opts = ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(xml, opts).map_err(|e| {
        vec![ConfigProblem::new(
            "document",
            e.pos().row,
            format!("not well-formed XML (RFC 6940 §11.1 requires it; DTDs are refused): {e}"),
        )]
    })?;
    // Depth, without recursion: parents come before children in document order.
    let mut depth = vec![0usize; doc.descendants().count() + 1];
    for n in doc.descendants() {
        let d = n
            .parent()
            .and_then(|p| depth.get(p.id().get_usize()).copied())
            .map_or(0, |d| d + 1);
        if let Some(slot) = depth.get_mut(n.id().get_usize()) {
            *slot = d;
        }
        if d > MAX_DEPTH {
            return Err(vec![ConfigProblem::new(
                "document",
                doc.text_pos_at(n.range().start).row,
                format!("elements nest deeper than {MAX_DEPTH}; refused"),
            )]);
        }
    }
    Ok(doc)
}

pub(crate) fn parse_document(xml: &str) -> Result<ConfigDocument, Vec<ConfigProblem>> {
    let doc = load(xml)?;
    let mut p = Parser {
        src: xml,
        errors: Vec::new(),
        deferred: Vec::new(),
        assume_base: false,
        newlines: newlines(xml),
    };
    let mut doc_deferred = Vec::new();
    check_encoding_declaration(xml, &mut doc_deferred);
    let root = doc.root_element();
    let mut configurations: Vec<Configuration> = Vec::new();
    let mut stray_signatures = Vec::new();
    if !(root.tag_name().namespace() == Some(NS_BASE) && root.tag_name().name() == "overlay") {
        let line = p.line(root);
        p.errors.push(ConfigProblem::new(
            p.qname(root),
            line,
            format!("the document element must be <overlay> in namespace {NS_BASE} (§11.1.1)"),
        ));
    } else {
        p.no_attributes(root, &[]);
        for child in root.children() {
            if p.skip_non_element(child, root) {
                continue;
            }
            match p.ns(child) {
                Ns::Base if child.tag_name().name() == "configuration" => {
                    let c = p.configuration(child);
                    configurations.push(c);
                }
                Ns::Base if child.tag_name().name() == "signature" => {
                    let s = p.signature(child);
                    match configurations.last_mut() {
                        Some(c) => c.signatures.push(s),
                        None => stray_signatures.push(s),
                    }
                }
                _ => p.unexpected(
                    child,
                    "<overlay> holds only <configuration> and <signature>",
                ),
            }
        }
        if configurations.is_empty() && p.errors.is_empty() {
            let line = p.line(root);
            p.errors.push(ConfigProblem::new(
                "overlay",
                line,
                "contains no <configuration> (§11.1.1: one or more)",
            ));
        }
    }
    if !p.errors.is_empty() {
        return Err(cap_errors(p.errors));
    }
    doc_deferred.append(&mut p.deferred);
    Ok(ConfigDocument {
        source: xml.to_string(),
        configurations,
        stray_signatures,
        deferred: doc_deferred,
    })
}

pub(crate) fn parse_kind_block(xml: &str) -> Result<ParsedKindBlock, Vec<ConfigProblem>> {
    let doc = load(xml)?;
    let mut p = Parser {
        src: xml,
        errors: Vec::new(),
        deferred: Vec::new(),
        assume_base: true,
        newlines: newlines(xml),
    };
    let root = doc.root_element();
    let kind = if p.ns(root) == Ns::Base && root.tag_name().name() == "kind-block" {
        p.kind_block(root)
    } else {
        let line = p.line(root);
        p.errors.push(ConfigProblem::new(
            p.qname(root),
            line,
            "expected a <kind-block> (§6.5.4.1, §11.1.1)",
        ));
        None
    };
    match kind {
        Some(kind) if p.errors.is_empty() => {
            let mut problems = p.deferred;
            super::semantic::check_kind(&kind, &mut problems);
            problems.sort_by_key(|x| x.line);
            Ok(ParsedKindBlock {
                source: xml.to_string(),
                kind,
                problems,
            })
        }
        _ => Err(cap_errors(p.errors)),
    }
}

/// §11.1: "it SHOULD contain an encoding declaration … MUST use the UTF-8 character
/// encoding". The text is UTF-8 already; a declaration naming another encoding is wrong.
fn check_encoding_declaration(xml: &str, out: &mut Vec<ConfigProblem>) {
    let Some(decl) = xml
        .strip_prefix("<?xml")
        .and_then(|r| r.find("?>").map(|e| r.get(..e).unwrap_or("")))
    else {
        return;
    };
    if let Some(pos) = decl.find("encoding") {
        let rest = decl.get(pos + "encoding".len()..).unwrap_or("");
        let rest = rest
            .trim_start_matches(is_xml_space)
            .trim_start_matches('=');
        let rest = rest.trim_start_matches(is_xml_space);
        let quote = rest.chars().next().unwrap_or('"');
        let value = rest
            .get(quote.len_utf8()..)
            .and_then(|r| r.split(quote).next())
            .unwrap_or("");
        if !value.eq_ignore_ascii_case("UTF-8") {
            out.push(ConfigProblem::new(
                "document",
                1,
                format!(
                    "the XML declaration names encoding '{value}'; the file MUST use UTF-8 (§11.1)"
                ),
            ));
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ns {
    Base,
    Chord,
    Sip,
    Share,
    RouteMode,
    SelfTuning,
    Redir,
    Diagnostics,
    /// No namespace (`local:*`): not allowed by the grammar.
    Local,
    Foreign,
}

#[derive(Clone, Copy)]
enum Xsd {
    Int,
    UnsignedInt,
    UnsignedByte,
    Long,
}

impl Xsd {
    fn name(self) -> &'static str {
        match self {
            Xsd::Int => "xsd:int",
            Xsd::UnsignedInt => "xsd:unsignedInt",
            Xsd::UnsignedByte => "xsd:unsignedByte",
            Xsd::Long => "xsd:long",
        }
    }

    fn range(self) -> (i128, i128) {
        match self {
            Xsd::Int => (i128::from(i32::MIN), i128::from(i32::MAX)),
            Xsd::UnsignedInt => (0, i128::from(u32::MAX)),
            Xsd::UnsignedByte => (0, 255),
            Xsd::Long => (i128::from(i64::MIN), i128::from(i64::MAX)),
        }
    }
}

struct Parser<'input> {
    src: &'input str,
    errors: Vec<ConfigProblem>,
    deferred: Vec<ConfigProblem>,
    /// Read elements without a namespace as base elements (kind blocks of ConfigUpdate).
    assume_base: bool,
    /// Offsets of every `\n`, to turn byte offsets into lines in O(log n).
    newlines: Vec<usize>,
}

fn newlines(src: &str) -> Vec<usize> {
    src.bytes()
        .enumerate()
        .filter(|(_, b)| *b == b'\n')
        .map(|(i, _)| i)
        .collect()
}

/// Most grammar errors reported; past it one more says how many were left out.
const MAX_ERRORS: usize = 1000;

fn cap_errors(mut e: Vec<ConfigProblem>) -> Vec<ConfigProblem> {
    e.sort_by_key(|x| x.line);
    if e.len() > MAX_ERRORS {
        let left = e.len() - MAX_ERRORS;
        e.truncate(MAX_ERRORS);
        let line = e.last().map_or(0, |x| x.line);
        e.push(ConfigProblem::new(
            "document",
            line,
            format!("{left} more errors not listed"),
        ));
    }
    e
}

type N<'a, 'input> = Node<'a, 'input>;

/// What a `<configuration>`'s children have given so far.
#[derive(Default)]
struct ConfigBuilder {
    c: OverlayConfig,
    /// Where each value was written.
    lines: Lines,
    /// The `?` elements already seen (see [`Parser::once`]).
    seen: HashSet<String>,
    /// The overlay-link-protocol values; none given keeps the default.
    link_protocols: Vec<String>,
}

impl<'input> Parser<'input> {
    fn line(&self, n: N<'_, '_>) -> u32 {
        let pos = n.range().start;
        let row = self.newlines.partition_point(|&nl| nl < pos) + 1;
        u32::try_from(row).unwrap_or(u32::MAX)
    }

    /// The element's name as written (`chord:chord-ping-interval`).
    fn qname(&self, n: N<'_, '_>) -> String {
        start_tag_qname(self.src, n.range().start)
            .unwrap_or(n.tag_name().name())
            .to_string()
    }

    fn ns(&self, n: N<'_, '_>) -> Ns {
        match n.tag_name().namespace() {
            None | Some("") if self.assume_base => Ns::Base,
            None | Some("") => Ns::Local,
            Some(NS_BASE) => Ns::Base,
            Some(NS_CHORD) => Ns::Chord,
            Some(NS_SIP) => Ns::Sip,
            Some(NS_SHARE) => Ns::Share,
            Some(NS_ROUTE_MODE) => Ns::RouteMode,
            Some(NS_SELF_TUNING) => Ns::SelfTuning,
            Some(NS_REDIR) => Ns::Redir,
            Some(NS_DIAGNOSTICS) => Ns::Diagnostics,
            Some(_) => Ns::Foreign,
        }
    }

    fn err(&mut self, n: N<'_, '_>, msg: impl Into<String>) {
        let line = self.line(n);
        let e = ConfigProblem::new(self.qname(n), line, msg);
        self.errors.push(e);
    }

    fn defer(&mut self, n: N<'_, '_>, msg: impl Into<String>) {
        let line = self.line(n);
        let e = ConfigProblem::new(self.qname(n), line, msg);
        self.deferred.push(e);
    }

    fn unexpected(&mut self, n: N<'_, '_>, why: &str) {
        let ns = n
            .tag_name()
            .namespace()
            .filter(|u| !u.is_empty())
            .unwrap_or("none");
        self.err(n, format!("unexpected element (namespace {ns}): {why}"));
    }

    /// Comments, processing instructions and white space are skipped (true); other text
    /// inside `parent` is an error.
    fn skip_non_element(&mut self, n: N<'_, '_>, parent: N<'_, '_>) -> bool {
        if n.is_element() {
            return false;
        }
        let text = n.text().unwrap_or("");
        if n.is_text() && !text.chars().all(is_xml_space) {
            let lead = text.len() - text.trim_start_matches(is_xml_space).len();
            let pos = n.range().start + lead;
            let line = self.newlines.partition_point(|&nl| nl < pos) + 1;
            let e = ConfigProblem::new(
                self.qname(parent),
                u32::try_from(line).unwrap_or(u32::MAX),
                "text is not allowed here, only elements (§11.1.1)",
            );
            self.errors.push(e);
        }
        true
    }

    /// Attributes other than the allowed unqualified ones are errors.
    fn no_attributes(&mut self, n: N<'_, '_>, allowed: &[&str]) {
        for a in n.attributes() {
            if a.namespace().is_none() && allowed.contains(&a.name()) {
                continue;
            }
            let name = self
                .src
                .get(a.range_qname())
                .unwrap_or(a.name())
                .to_string();
            self.err(n, format!("unexpected attribute '{name}' (§11.1.1)"));
        }
    }

    /// The text content of a simple element; element children are errors.
    fn text(&mut self, n: N<'_, '_>) -> Option<String> {
        let mut s = String::new();
        let mut ok = true;
        for c in n.children() {
            if c.is_text() {
                s.push_str(c.text().unwrap_or(""));
            } else if c.is_element() {
                let q = self.qname(c);
                self.err(n, format!("must contain text only, found <{q}>"));
                ok = false;
            }
        }
        ok.then_some(s)
    }

    fn simple_text(&mut self, n: N<'_, '_>) -> Option<String> {
        self.no_attributes(n, &[]);
        self.text(n).map(|t| xml_trim(&t).to_string())
    }

    /// Marks a `?` element as seen; a second one is an error.
    fn once(&mut self, seen: &mut HashSet<String>, n: N<'_, '_>) -> bool {
        let key = format!(
            "{}|{}",
            n.tag_name().namespace().unwrap_or(""),
            n.tag_name().name()
        );
        if seen.insert(key) {
            true
        } else {
            self.err(n, "may appear at most once (§11.1.1)");
            false
        }
    }

    fn integer(&mut self, n: N<'_, '_>, text: &str, xsd: Xsd) -> Option<i128> {
        let t = xml_trim(text);
        let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
        let signed_ok = !t.starts_with('-')
            || matches!(xsd, Xsd::Int | Xsd::Long)
            || digits.bytes().all(|b| b == b'0');
        if digits.is_empty()
            || digits.len() > 40
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || !signed_ok
        {
            self.err(n, format!("'{t}' is not an {}", xsd.name()));
            return None;
        }
        let v: i128 = match t.parse() {
            Ok(v) => v,
            Err(_) => {
                self.err(n, format!("'{t}' is out of range of {}", xsd.name()));
                return None;
            }
        };
        let (lo, hi) = xsd.range();
        if v < lo || v > hi {
            self.err(n, format!("'{t}' is out of range of {}", xsd.name()));
            return None;
        }
        Some(v)
    }

    /// An integer element read into a narrower field type.
    fn int_field<T: TryFrom<i128>>(&mut self, n: N<'_, '_>, xsd: Xsd, field: &str) -> Option<T> {
        let t = self.simple_text(n)?;
        self.int_value(n, &t, xsd, field)
    }

    fn int_value<T: TryFrom<i128>>(
        &mut self,
        n: N<'_, '_>,
        t: &str,
        xsd: Xsd,
        field: &str,
    ) -> Option<T> {
        let v = self.integer(n, t, xsd)?;
        match T::try_from(v) {
            Ok(v) => Some(v),
            Err(_) => {
                self.err(n, format!("{v} does not fit: {field}"));
                None
            }
        }
    }

    fn boolean_value(&mut self, n: N<'_, '_>, t: &str) -> Option<bool> {
        match xml_trim(t) {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            other => {
                self.err(
                    n,
                    format!("'{other}' is not an xsd:boolean (true, false, 1 or 0; §11.1)"),
                );
                None
            }
        }
    }

    fn boolean(&mut self, n: N<'_, '_>) -> Option<bool> {
        let t = self.simple_text(n)?;
        self.boolean_value(n, &t)
    }

    /// A Node-ID in hex (kind-signer, configuration-signer, bad-node, access-node): the
    /// grammar types it xsd:string, so bad hex is a semantic problem, not a parse error.
    fn node_id_hex(&mut self, n: N<'_, '_>) -> Option<Vec<u8>> {
        let t = self.simple_text(n)?;
        match from_hex(&t) {
            Ok(b) => Some(b),
            Err(e) => {
                self.defer(
                    n,
                    format!("{e}: a Node-ID in hexadecimal is expected (§11.1); ignored"),
                );
                None
            }
        }
    }

    fn base64(&mut self, n: N<'_, '_>) -> Option<Vec<u8>> {
        let t = self.simple_text(n)?;
        let compact: String = t.chars().filter(|c| !is_xml_space(*c)).collect();
        match base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()) {
            Ok(b) => Some(b),
            Err(e) => {
                self.err(n, format!("not xsd:base64Binary: {e}"));
                None
            }
        }
    }

    fn signature(&mut self, n: N<'_, '_>) -> SignatureElement {
        self.no_attributes(n, &["algorithm"]);
        let algorithm = n.attribute("algorithm").map(|a| xml_trim(a).to_string());
        let text = self.text(n).unwrap_or_default();
        let mut s = SignatureElement::from_base64(&text, algorithm);
        s.line = self.line(n);
        s
    }

    /// A `<configuration>` element (§11.1.1): its attributes, then each child by element
    /// family.
    fn configuration(&mut self, node: N<'_, '_>) -> Configuration {
        let line = self.line(node);
        let deferred_before = self.deferred.len();
        let mut b = ConfigBuilder::default();
        let sequence_given = self.configuration_attributes(node, &mut b.c);

        for n in node.children() {
            if self.skip_non_element(n, node) {
                continue;
            }
            let l = self.line(n);
            match self.ns(n) {
                Ns::Base => {
                    let known = self.overlay_parameter(n, l, &mut b)
                        || self.trust_element(n, l, &mut b)
                        || self.bootstrap_or_link(n, l, &mut b);
                    if !known {
                        self.unexpected(n, "not an element of the configuration grammar (§11.1.1)");
                    }
                }
                Ns::Chord => {
                    if !self.chord_parameter(n, l, &mut b) {
                        self.unexpected(n, "not a CHORD-RELOAD element (§11.1.1)");
                    }
                }
                Ns::Local => self.unexpected(
                    n,
                    "elements without a namespace are not allowed (§11.1.1 foreign-elements excludes local:*)",
                ),
                _ => {
                    if !self.extension_parameter(n, l, &mut b) {
                        let e = self.extension(n);
                        b.c.extensions.push(e);
                    }
                }
            }
        }
        let ConfigBuilder {
            mut c,
            lines,
            link_protocols,
            ..
        } = b;
        if !link_protocols.is_empty() {
            c.overlay_link_protocols = link_protocols;
        }
        let deferred = self
            .deferred
            .split_off(deferred_before.min(self.deferred.len()));
        Configuration {
            config: c,
            signed_region: node.range(),
            signatures: Vec::new(),
            line,
            sequence_given,
            lines,
            deferred,
        }
    }

    /// The `<configuration>` attributes: instance-name (required), expiration, sequence,
    /// and foreign attributes (§11.1, §11.1.1). Whether a sequence was given.
    fn configuration_attributes(&mut self, node: N<'_, '_>, c: &mut OverlayConfig) -> bool {
        let mut sequence_given = false;
        let mut have_name = false;
        for a in node.attributes() {
            match (a.namespace(), a.name()) {
                (None, "instance-name") => {
                    c.instance_name = xml_trim(a.value()).to_string();
                    have_name = true;
                }
                (None, "expiration") => match super::parse_datetime(xml_trim(a.value())) {
                    Ok((t, zoned)) => {
                        c.expiration = Some(t);
                        if !zoned {
                            self.defer(
                                node,
                                "expiration has no time zone; RFC 3339 requires one and §11.1 requires UTC; read as UTC",
                            );
                        }
                    }
                    Err(e) => self.err(node, format!("expiration: {e} (§11.1, xsd:dateTime)")),
                },
                (None, "sequence") => {
                    if let Some(v) = self.int_value::<u16>(
                        node,
                        a.value(),
                        Xsd::Long,
                        "sequence must be between 0 and 2^16-2 (§11.1)",
                    ) {
                        c.sequence = v;
                        sequence_given = true;
                    }
                }
                (Some(ns), name) if ns != NS_BASE && ns != NS_CHORD => {
                    c.extension_attributes.push(ExtensionAttribute {
                        namespace: ns.to_string(),
                        name: name.to_string(),
                        value: a.value().to_string(),
                    })
                }
                _ => {
                    let q = self
                        .src
                        .get(a.range_qname())
                        .unwrap_or(a.name())
                        .to_string();
                    self.err(node, format!("unexpected attribute '{q}' (§11.1.1)"));
                }
            }
        }
        if !have_name {
            self.err(node, "the instance-name attribute is required (§11.1.1)");
        }
        if !sequence_given {
            self.defer(
                node,
                "no sequence attribute: each version of the configuration MUST contain a sequence number (§6.3.2.1); read as 0",
            );
        }
        sequence_given
    }

    /// The overlay's parameters in the base namespace (§11.1): topology-plugin,
    /// node-id-length, max-message-size, initial-ttl, overlay-reliability-timer,
    /// clients-permitted, turn-density, mandatory-extension. False: not one of them.
    fn overlay_parameter(&mut self, n: N<'_, '_>, l: u32, b: &mut ConfigBuilder) -> bool {
        let c = &mut b.c;
        match n.tag_name().name() {
            "topology-plugin" | "topology-plug-in" => {
                if self.once(&mut b.seen, n)
                    && let Some(t) = self.simple_text(n)
                {
                    c.topology_plugin = t;
                    b.lines.push("topology-plugin", l);
                }
            }
            "node-id-length" => {
                if self.once(&mut b.seen, n)
                    && let Some(v) =
                        self.int_field(n, Xsd::Int, "node-id-length must not be negative")
                {
                    c.node_id_length = v;
                    b.lines.push("node-id-length", l);
                }
            }
            "max-message-size" => {
                if self.once(&mut b.seen, n)
                    && let Some(v) = self.int_field(n, Xsd::UnsignedInt, "max-message-size")
                {
                    c.max_message_size = v;
                    b.lines.push("max-message-size", l);
                }
            }
            "initial-ttl" => {
                if self.once(&mut b.seen, n)
                    && let Some(v) = self.int_field(
                        n,
                        Xsd::Int,
                        "initial-ttl must be 0 to 255, the header's ttl is 8 bits (§6.3.2)",
                    )
                {
                    c.initial_ttl = v;
                    b.lines.push("initial-ttl", l);
                }
            }
            "overlay-reliability-timer" => {
                if self.once(&mut b.seen, n)
                    && let Some(v) =
                        self.int_field::<u32>(n, Xsd::UnsignedInt, "overlay-reliability-timer")
                {
                    c.overlay_reliability_timer = Duration::from_millis(u64::from(v));
                    b.lines.push("overlay-reliability-timer", l);
                }
            }
            "clients-permitted" => {
                if self.once(&mut b.seen, n)
                    && let Some(v) = self.boolean(n)
                {
                    c.clients_permitted = v;
                }
            }
            "turn-density" => {
                if self.once(&mut b.seen, n)
                    && let Some(v) = self.int_field(n, Xsd::UnsignedByte, "turn-density")
                {
                    c.turn_density = v;
                    b.lines.push("turn-density", l);
                }
            }
            "mandatory-extension" => {
                if let Some(t) = self.simple_text(n) {
                    c.mandatory_extensions.push(t);
                    b.lines.push("mandatory-extension", l);
                }
            }
            _ => return false,
        }
        true
    }

    /// Certificates and who signs what, in the base namespace (§11.1): root-cert,
    /// enrollment-server, self-signed-permitted, kind-signer, configuration-signer,
    /// bad-node, required-kinds. False: not one of them.
    fn trust_element(&mut self, n: N<'_, '_>, l: u32, b: &mut ConfigBuilder) -> bool {
        let c = &mut b.c;
        match n.tag_name().name() {
            "root-cert" => {
                if let Some(v) = self.base64(n) {
                    c.root_certs.push(Bytes::from(v));
                    b.lines.push("root-cert", l);
                }
            }
            "enrollment-server" => {
                self.no_attributes(n, &[]);
                // §11.1 text: the URL is "in a url element"; the grammar and example
                // put it directly in the element. Both are read.
                let url_child = n.children().find(|u| {
                    u.is_element() && self.ns(*u) == Ns::Base && u.tag_name().name() == "url"
                });
                let t = match url_child {
                    Some(u) => self.simple_text(u),
                    None => self.text(n).map(|t| xml_trim(&t).to_string()),
                };
                if let Some(t) = t {
                    c.enrollment_servers.push(t);
                    b.lines.push("enrollment-server", l);
                }
            }
            "self-signed-permitted" => {
                if self.once(&mut b.seen, n) {
                    self.no_attributes(n, &["digest"]);
                    let digest = n.attribute("digest").map(|d| xml_trim(d).to_string());
                    if digest.is_none() {
                        self.err(n, "the digest attribute is required (§11.1.1)");
                    }
                    let v = self.text(n).and_then(|t| self.boolean_value(n, &t));
                    if let (Some(d), Some(true)) = (digest, v) {
                        c.self_signed_permitted = Some(SelfSignedDigest::from_config_name(&d));
                        b.lines.push("self-signed-permitted", l);
                    }
                }
            }
            "kind-signer" => {
                if let Some(v) = self.node_id_hex(n) {
                    c.kind_signers.push(v);
                    b.lines.push("kind-signer", l);
                }
            }
            "configuration-signer" => {
                if let Some(v) = self.node_id_hex(n) {
                    c.configuration_signers.push(v);
                    b.lines.push("configuration-signer", l);
                }
            }
            "bad-node" => {
                if let Some(v) = self.node_id_hex(n) {
                    c.bad_nodes.push(v);
                    b.lines.push("bad-node", l);
                }
            }
            "required-kinds" => {
                if self.once(&mut b.seen, n) {
                    self.required_kinds(n, c);
                }
            }
            _ => return false,
        }
        true
    }

    /// `<required-kinds>`: its `<kind-block>`s (§11.1.1).
    fn required_kinds(&mut self, n: N<'_, '_>, c: &mut OverlayConfig) {
        self.no_attributes(n, &[]);
        for k in n.children() {
            if self.skip_non_element(k, n) {
                continue;
            }
            if self.ns(k) == Ns::Base && k.tag_name().name() == "kind-block" {
                if let Some(kd) = self.kind_block(k) {
                    c.kinds.push(kd);
                }
            } else {
                self.unexpected(k, "<required-kinds> holds only <kind-block> elements");
            }
        }
    }

    /// How nodes reach one another, in the base namespace (§11.1): bootstrap-node,
    /// overlay-link-protocol, no-ice, shared-secret. False: not one of them.
    fn bootstrap_or_link(&mut self, n: N<'_, '_>, l: u32, b: &mut ConfigBuilder) -> bool {
        let c = &mut b.c;
        match n.tag_name().name() {
            "bootstrap-node" => {
                if let Some(a) = self.bootstrap_node(n) {
                    c.bootstrap_nodes.push(a);
                    b.lines.push("bootstrap-node", l);
                }
            }
            "overlay-link-protocol" => {
                if let Some(t) = self.simple_text(n) {
                    b.link_protocols.push(t);
                    b.lines.push("overlay-link-protocol", l);
                }
            }
            "no-ice" => {
                if self.once(&mut b.seen, n)
                    && let Some(v) = self.boolean(n)
                {
                    c.no_ice = v;
                }
            }
            "shared-secret" => {
                if self.once(&mut b.seen, n)
                    && let Some(t) = self.simple_text(n)
                {
                    c.shared_secret = Some(t);
                    b.lines.push("shared-secret", l);
                }
            }
            _ => return false,
        }
        true
    }

    /// A `<bootstrap-node>` (§11.1): empty, an address and a port (default
    /// [`DEFAULT_BOOTSTRAP_PORT`]). A bad address or port is deferred, and ignored.
    fn bootstrap_node(&mut self, n: N<'_, '_>) -> Option<SocketAddr> {
        self.no_attributes(n, &["address", "port"]);
        if let Some(t) = self.text(n)
            && !xml_trim(&t).is_empty()
        {
            self.err(n, "must be empty (§11.1.1)");
        }
        let port = match n.attribute("port") {
            Some(p) => self.int_value::<i64>(n, p, Xsd::Int, "port"),
            None => Some(i64::from(DEFAULT_BOOTSTRAP_PORT)),
        };
        let Some(a) = n.attribute("address") else {
            self.err(n, "the address attribute is required (§11.1.1)");
            return None;
        };
        let a = xml_trim(a);
        let ip = a.parse::<IpAddr>();
        match (ip, port) {
            (_, None) => None,
            (Err(_), Some(_)) => {
                self.defer(
                    n,
                    format!("address '{a}' is not an IPv4 or IPv6 address (§11.1); ignored"),
                );
                None
            }
            (Ok(ip), Some(p)) => match u16::try_from(p) {
                Ok(p) => Some(SocketAddr::new(ip, p)),
                Err(_) => {
                    self.defer(
                        n,
                        format!("port {p} is not a port number (0 to 65535); ignored"),
                    );
                    None
                }
            },
        }
    }

    /// The CHORD-RELOAD parameters (§10.7.4): chord-ping-interval, chord-update-interval,
    /// chord-reactive. False: not one of them.
    fn chord_parameter(&mut self, n: N<'_, '_>, l: u32, b: &mut ConfigBuilder) -> bool {
        let c = &mut b.c;
        match n.tag_name().name() {
            "chord-ping-interval" => {
                if self.once(&mut b.seen, n)
                    && let Some(v) = self.int_field::<u32>(
                        n,
                        Xsd::Int,
                        "chord-ping-interval must not be negative",
                    )
                {
                    c.chord_ping_interval = Duration::from_secs(u64::from(v));
                    b.lines.push("chord-ping-interval", l);
                }
            }
            "chord-update-interval" => {
                if self.once(&mut b.seen, n)
                    && let Some(v) = self.int_field::<u32>(
                        n,
                        Xsd::Int,
                        "chord-update-interval must not be negative",
                    )
                {
                    c.chord_update_interval = Duration::from_secs(u64::from(v));
                    b.lines.push("chord-update-interval", l);
                }
            }
            "chord-reactive" => {
                if self.once(&mut b.seen, n)
                    && let Some(v) = self.boolean(n)
                {
                    c.chord_reactive = v;
                }
            }
            _ => return false,
        }
        true
    }

    /// The companion RFCs' configuration elements: sip:domain-restriction (RFC 7904),
    /// route-mode:mode (RFC 7263), self-tuning:number-of-peers-to-probe (RFC 7363),
    /// redir:branching-factor (RFC 7374), diag:diagnostic-kind (RFC 7851). False: another
    /// element, kept as an extension.
    fn extension_parameter(&mut self, n: N<'_, '_>, l: u32, b: &mut ConfigBuilder) -> bool {
        let c = &mut b.c;
        match (self.ns(n), n.tag_name().name()) {
            (Ns::Sip, "domain-restriction" | "domain-restrictions") => {
                if self.once(&mut b.seen, n)
                    && let Some(p) = self.patterns(n, NS_SIP)
                {
                    c.sip_domain_restriction = Some(p);
                    b.lines.push("sip:domain-restriction", l);
                }
            }
            (Ns::RouteMode, "mode") => {
                if self.once(&mut b.seen, n)
                    && let Some(t) = self.simple_text(n)
                {
                    c.route_mode = Some(RouteMode::from_config_name(&t));
                    b.lines.push("route-mode:mode", l);
                }
            }
            (Ns::SelfTuning, "number-of-peers-to-probe") => {
                if self.once(&mut b.seen, n)
                    && let Some(v) = self.int_field(n, Xsd::UnsignedInt, "number-of-peers-to-probe")
                {
                    c.self_tuning_peers_to_probe = Some(v);
                    b.lines.push("self-tuning:number-of-peers-to-probe", l);
                }
            }
            (Ns::Redir, "branching-factor") => {
                if self.once(&mut b.seen, n)
                    && let Some(v) = self.int_field(n, Xsd::UnsignedInt, "branching-factor")
                {
                    c.redir_branching_factor = Some(v);
                    b.lines.push("redir:branching-factor", l);
                }
            }
            (Ns::Diagnostics, "diagnostic-kind") => {
                if let Some(d) = self.diagnostic_kind(n) {
                    c.diagnostic_kinds.push(d);
                    b.lines.push("diagnostic-kind", l);
                }
            }
            _ => return false,
        }
        true
    }

    /// `sip:domain-restriction` / `share:variable-resource-names`: an `enable` attribute
    /// and `pattern` children in the same namespace.
    fn patterns(&mut self, n: N<'_, '_>, ns: &str) -> Option<NamePatterns> {
        self.no_attributes(n, &["enable"]);
        let enable = match n.attribute("enable") {
            Some(v) => self.boolean_value(n, v)?,
            None => false,
        };
        let mut patterns = Vec::new();
        for p in n.children() {
            if self.skip_non_element(p, n) {
                continue;
            }
            if p.tag_name().namespace() == Some(ns) && p.tag_name().name() == "pattern" {
                if let Some(t) = self.simple_text(p) {
                    patterns.push(t);
                }
            } else {
                self.unexpected(p, "only <pattern> elements are allowed here");
            }
        }
        Some(NamePatterns { enable, patterns })
    }

    fn diagnostic_kind(&mut self, n: N<'_, '_>) -> Option<DiagnosticKindAccess> {
        self.no_attributes(n, &["kind"]);
        let Some(k) = n.attribute("kind") else {
            self.err(n, "the kind attribute is required (RFC 7851 §7)");
            return None;
        };
        let k = xml_trim(k);
        let hex = k
            .strip_prefix("0x")
            .or_else(|| k.strip_prefix("0X"))
            .unwrap_or(k);
        let kind = match u16::from_str_radix(hex, 16) {
            Ok(v) if !hex.starts_with('+') => v,
            _ => {
                self.defer(
                    n,
                    format!("kind '{k}' is not a 16-bit hexadecimal diagnostic Kind ID (RFC 7851 §7, §9.2); ignored"),
                );
                return None;
            }
        };
        let mut access_nodes = Vec::new();
        for a in n.children() {
            if self.skip_non_element(a, n) {
                continue;
            }
            if self.ns(a) == Ns::Diagnostics && a.tag_name().name() == "access-node" {
                if let Some(b) = self.node_id_hex(a) {
                    access_nodes.push(b);
                }
            } else {
                self.unexpected(
                    a,
                    "<diagnostic-kind> holds only <access-node> elements (RFC 7851 §7)",
                );
            }
        }
        Some(DiagnosticKindAccess { kind, access_nodes })
    }

    fn kind_block(&mut self, n: N<'_, '_>) -> Option<KindDefinition> {
        self.no_attributes(n, &[]);
        let mut kind_node = None;
        let mut signature = None;
        for c in n.children() {
            if self.skip_non_element(c, n) {
                continue;
            }
            match (self.ns(c), c.tag_name().name()) {
                (Ns::Base, "kind") => {
                    if kind_node.is_some() {
                        self.err(c, "a kind-block holds exactly one <kind> (§11.1.1)");
                    } else {
                        kind_node = Some(c);
                    }
                }
                (Ns::Base, "kind-signature") => {
                    if signature.is_some() {
                        self.err(
                            c,
                            "a kind-block holds at most one <kind-signature> (§11.1.1)",
                        );
                    } else {
                        signature = Some(self.signature(c));
                    }
                }
                _ => self.unexpected(c, "a kind-block holds only <kind> and <kind-signature>"),
            }
        }
        let Some(k) = kind_node else {
            self.err(n, "a kind-block must contain a <kind> (§11.1.1)");
            return None;
        };
        let mut kd = self.kind(k)?;
        kd.signature = signature;
        Some(kd)
    }

    fn kind(&mut self, n: N<'_, '_>) -> Option<KindDefinition> {
        let line = self.line(n);
        self.no_attributes(n, &["name", "id"]);
        let id = match (n.attribute("name"), n.attribute("id")) {
            (Some(_), Some(_)) => {
                self.err(
                    n,
                    "has both a name and an id attribute; exactly one is allowed (§11.1)",
                );
                None
            }
            (None, None) => {
                self.err(n, "needs a name or an id attribute (§11.1)");
                None
            }
            (Some(name), None) => Some(KindRef::Name(xml_trim(name).to_string())),
            (None, Some(id)) => self
                .int_value::<u32>(n, id, Xsd::UnsignedInt, "Kind-ID")
                .map(KindRef::from),
        };
        let mut seen = HashSet::new();
        let mut data_model = None;
        let mut access = None;
        let mut max_count = None;
        let mut max_size = None;
        let mut max_node_multiple = None;
        let mut domain_restriction = None;
        let mut variable_resource_names = None;
        let mut branching = None;
        let mut extensions = Vec::new();
        let mut model_node = None;
        let mut access_node = None;
        let (mut have_count, mut have_size) = (false, false);
        for c in n.children() {
            if self.skip_non_element(c, n) {
                continue;
            }
            let name = c.tag_name().name();
            match (self.ns(c), name) {
                (Ns::Base, "max-count") => {
                    have_count = true;
                    if self.once(&mut seen, c) {
                        max_count =
                            self.int_field::<u32>(c, Xsd::Int, "max-count must not be negative");
                    }
                }
                (Ns::Base, "max-size") => {
                    have_size = true;
                    if self.once(&mut seen, c) {
                        max_size =
                            self.int_field::<u32>(c, Xsd::Int, "max-size must not be negative");
                    }
                }
                (Ns::Base, "max-node-multiple") => {
                    if self.once(&mut seen, c) {
                        max_node_multiple = self.int_field::<u32>(
                            c,
                            Xsd::Int,
                            "max-node-multiple MUST be an integer greater than 0 (§11.1)",
                        );
                    }
                }
                (Ns::Base, "data-model") => {
                    if self.once(&mut seen, c) {
                        data_model = self
                            .simple_text(c)
                            .map(|t| KindDataModel::from_config_name(&t));
                        model_node = Some(c);
                    }
                }
                (Ns::Base, "access-control") => {
                    if self.once(&mut seen, c) {
                        access = self
                            .simple_text(c)
                            .map(|t| AccessPolicy::from_config_name(&t));
                        access_node = Some(c);
                    }
                }
                (Ns::Base | Ns::Chord | Ns::Local, _) => {
                    self.unexpected(c, "not a kind parameter (§11.1.1)")
                }
                (Ns::Sip, "domain-restriction" | "domain-restrictions") => {
                    if self.once(&mut seen, c) {
                        domain_restriction = self.patterns(c, NS_SIP);
                    }
                }
                (Ns::Share, "variable-resource-names") => {
                    if self.once(&mut seen, c) {
                        variable_resource_names = self.patterns(c, NS_SHARE);
                    }
                }
                (Ns::Redir, "branching-factor") => {
                    if self.once(&mut seen, c) {
                        branching = self.int_field::<u32>(c, Xsd::UnsignedInt, "branching-factor");
                    }
                }
                _ => {
                    let e = self.extension(c);
                    extensions.push(e);
                }
            }
        }
        for (have, what) in [
            (model_node.is_some(), "data-model"),
            (access_node.is_some(), "access-control"),
            (have_count, "max-count"),
            (have_size, "max-size"),
        ] {
            if !have {
                self.err(n, format!("the <{what}> element is required (§11.1)"));
            }
        }
        let (id, mut data_model, mut access, max_count, max_size) =
            (id?, data_model?, access?, max_count?, max_size?);
        if let Some(r) = kinds::lookup(&id) {
            let model: KindDataModel = r.model.into();
            if data_model != model {
                if let Some(m) = model_node {
                    self.defer(
                        m,
                        format!(
                            "Kind {} (0x{:x}) is registered with data model {} ({}); the document says {}: it MUST match, and the registry's {} is used (§11.1)",
                            r.name,
                            r.id.0,
                            model.config_name(),
                            r.source,
                            data_model.config_name(),
                            model.config_name()
                        ),
                    );
                }
                data_model = model;
            }
            if access != r.policy {
                if let Some(a) = access_node {
                    self.defer(
                        a,
                        format!(
                            "Kind {} (0x{:x}) is registered with access control {} ({}); the document says {}: it MUST match, and the registry's {} is used (§11.1)",
                            r.name,
                            r.id.0,
                            r.policy.config_name(),
                            r.source,
                            access.config_name(),
                            r.policy.config_name()
                        ),
                    );
                }
                access = r.policy;
            }
        }
        Some(KindDefinition {
            id,
            data_model,
            access_control: access,
            max_count,
            max_size,
            max_node_multiple,
            domain_restriction,
            variable_resource_names,
            redir_branching_factor: branching,
            extensions,
            signature: None,
            signed_region: n.range(),
            line,
        })
    }

    /// A foreign element, made self-contained (see [`ExtensionElement::xml`]).
    fn extension(&mut self, n: N<'_, '_>) -> ExtensionElement {
        ExtensionElement {
            namespace: n.tag_name().namespace().unwrap_or("").to_string(),
            name: n.tag_name().name().to_string(),
            xml: self_contained(self.src, n),
        }
    }
}

/// The qualified name of the start tag at `start` (which points at its `<`).
fn start_tag_qname(src: &str, start: usize) -> Option<&str> {
    let rest = src.get(start..)?.strip_prefix('<')?;
    let end = rest
        .find(|c: char| is_xml_space(c) || c == '/' || c == '>')
        .unwrap_or(rest.len());
    rest.get(..end)
}

/// Prefixes declared (`xmlns` = `None`, `xmlns:p` = `Some(p)`) in the start tag at
/// `start`. The tree is well-formed, so a simple scan of `name = "value"` pairs suffices.
fn start_tag_declarations(src: &str, start: usize) -> Vec<Option<String>> {
    let mut out = Vec::new();
    let Some(q) = start_tag_qname(src, start) else {
        return out;
    };
    let b = src.as_bytes();
    let mut i = start + 1 + q.len();
    loop {
        while b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
            i += 1;
        }
        match b.get(i) {
            None | Some(b'/' | b'>') => break,
            _ => {}
        }
        let name_start = i;
        while b
            .get(i)
            .is_some_and(|c| *c != b'=' && !c.is_ascii_whitespace())
        {
            i += 1;
        }
        let name = src.get(name_start..i).unwrap_or("");
        while b
            .get(i)
            .is_some_and(|c| c.is_ascii_whitespace() || *c == b'=')
        {
            i += 1;
        }
        let Some(&quote) = b.get(i) else { break };
        i += 1;
        while b.get(i).is_some_and(|c| *c != quote) {
            i += 1;
        }
        i += 1;
        if name == "xmlns" {
            out.push(None);
        } else if let Some(p) = name.strip_prefix("xmlns:") {
            out.push(Some(p.to_string()));
        }
        if i > b.len() {
            break;
        }
    }
    out
}

fn prefix_of(qname: &str) -> Option<&str> {
    qname.split_once(':').map(|(p, _)| p)
}

/// The source of `n` with the namespace declarations it inherits (and uses) added to its
/// start tag. Re-parsing the result gives the same text back: it then declares them
/// itself.
fn self_contained(src: &str, n: N<'_, '_>) -> String {
    let range = n.range();
    let raw = src.get(range.clone()).unwrap_or("");
    let mut needed: Vec<(Option<String>, String)> = Vec::new();
    // Each start tag is scanned once, however many descendants ask about it.
    let mut decls: HashMap<usize, Vec<Option<String>>> = HashMap::new();
    let mut declared_within = |e: N<'_, '_>, p: &Option<String>| -> bool {
        let mut cur = Some(e);
        while let Some(x) = cur {
            let start = x.range().start;
            let d = decls
                .entry(start)
                .or_insert_with(|| start_tag_declarations(src, start));
            if d.contains(p) {
                return true;
            }
            if x == n {
                break;
            }
            cur = x.parent_element();
        }
        false
    };
    for e in n.descendants().filter(|d| d.is_element()) {
        let Some(q) = start_tag_qname(src, e.range().start) else {
            continue;
        };
        let mut uses: Vec<(Option<String>, String)> = Vec::new();
        match prefix_of(q) {
            None => uses.push((None, e.tag_name().namespace().unwrap_or("").to_string())),
            Some(p) => uses.push((
                Some(p.to_string()),
                e.tag_name().namespace().unwrap_or("").to_string(),
            )),
        }
        for a in e.attributes() {
            if let (Some(ns), Some(aq)) = (a.namespace(), src.get(a.range_qname()))
                && let Some(p) = prefix_of(aq)
            {
                uses.push((Some(p.to_string()), ns.to_string()));
            }
        }
        for (p, uri) in uses {
            if p.as_deref() == Some("xml") || uri == XML_NS {
                continue;
            }
            if !declared_within(e, &p) && !needed.iter().any(|(q, _)| *q == p) {
                needed.push((p, uri));
            }
        }
    }
    if needed.is_empty() {
        return raw.to_string();
    }
    let Some(q) = start_tag_qname(src, range.start) else {
        return raw.to_string();
    };
    let head_len = 1 + q.len();
    let (Some(head), Some(tail)) = (raw.get(..head_len), raw.get(head_len..)) else {
        return raw.to_string();
    };
    let mut out = String::with_capacity(raw.len() + 64);
    out.push_str(head);
    for (p, uri) in needed {
        match p {
            None => out.push_str(" xmlns=\""),
            Some(p) => {
                out.push_str(" xmlns:");
                out.push_str(&p);
                out.push_str("=\"");
            }
        }
        out.push_str(&super::write::escape_attr(&uri));
        out.push('"');
    }
    out.push_str(tail);
    out
}
