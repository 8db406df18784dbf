//! The storage methods at the node (RFC 6940 §7.4) and what keeps data alive as the
//! overlay changes (§10.4 replication, §10.5 step 6 and §10.7.3 data movement, §6.4.2.3).
//!
//! **Serving.** A Store is checked in the order of §7.4.1.1 — responsibility (or, for a
//! replica, a plausible sender, asked of the topology plug-in), known Kinds, each value's
//! signature, the access policy for each value's signer and, for an original Store, for
//! the request's signer — and then handed to the [`Storage`] engine, which checks
//! generation counters, storage times and limits, and answers only once the change is
//! durable. Fetch, Stat and Find are answered from the engine; a Fetch answer carries the
//! certificates of the signers of the values it returns.
//!
//! **Replication.** The responsible peer copies each change to its replica set (replica
//! numbers 1, 2 …). A *sweep* — after every change of the neighbour set, and every
//! [`SWEEP_INTERVAL`] while something is not yet where it belongs — compares, for each
//! Resource-ID held, our role with who is known to hold our data: as the responsible peer
//! we send what a replica lacks; as a replica we hand the data to the responsible peer when
//! it may not have it (a new peer that joined, §10.5 step 6); outside the replica set we
//! hand it to whoever is responsible and forget it (§6.4.2.3, §10.7.3). A replica Store
//! refused with Error_Data_Too_Old or Error_Generation_Counter_Too_Low makes us fetch the
//! newer data from that peer and merge it (§7.4.1.1). Sends are paced
//! ([`MAX_REPLICATION_IN_FLIGHT`]).
//!
//! **Fetching.** [`Node::fetch`] verifies every value of the answer — signature,
//! certificate validity and the Kind's access policy — and reports the values that fail
//! apart ([`Fetched::rejected`]), as §7.4.2.2 requires of a fetcher.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reload_wire::body::MessageBody;
use reload_wire::message::{ErrorCode, ErrorResponse};
use reload_wire::storage::{
    ArrayRange, DataModel, FetchAns, FetchKindResponse, FetchReq, FindAns, FindKindData, FindReq,
    KindId, KindValues, ModelSpecifier, StatAns, StatReq, StoreAns, StoreKindData,
    StoreKindResponse, StoreReq, StoredData, StoredDataSpecifier, StoredDataValue, UnknownKinds,
};
use reload_wire::{Destination, GenericCertificate, NodeId, ResourceId, SignerIdentity, Wire};

use super::{Event, Node, Purpose, RequestError, unix_ms};
use crate::sign::VerifiedSigner;
use crate::storage::policy::{self, PolicyOf, Signer};
use crate::storage::{ARRAY_END, KindInput, SignedValue, StoreError, StoreMode, owner_of};
use crate::topology::StorageRole;

/// Replica and handover Stores waiting for their answer, at most.
pub const MAX_REPLICATION_IN_FLIGHT: usize = 32;

/// How often data not yet where it belongs is looked at again.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// The first pause before sweeping again after something did not settle.
pub const SWEEP_RETRY_MIN: Duration = Duration::from_secs(1);

/// Expired values removed per timer run (the rest at the next).
const EXPIRY_BUDGET: usize = 4096;

/// The highest d of TURN-SERVICE records (§9: NODE-MULTIPLE with at most 20).
pub const TURN_MAX_ITERATION: u32 = 20;

/// The answer to [`Node::fetch`], its values verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// The peer that answered (the one responsible for the Resource-ID).
    pub responder: NodeId,
    /// One per Kind asked for, holding only the values that verified (and the values the
    /// responder synthesized with `exists = false` for what it does not hold).
    pub kinds: Vec<FetchKindResponse>,
    /// Values dropped, and why (§7.4.2.2: a bad signature, an expired certificate, a
    /// signer the Kind's policy does not allow).
    pub rejected: Vec<(KindId, String)>,
}

/// Fetched values after verification (§7.4.2.2).
struct VerifiedFetch {
    /// Per Kind, the values that verified (and the synthesized ones).
    kinds: Vec<FetchKindResponse>,
    /// Values dropped, and why.
    rejected: Vec<(KindId, String)>,
    /// Per Kind, the signer of each real value kept, in order.
    signers: Vec<Vec<VerifiedSigner>>,
}

/// Replication bookkeeping.
#[derive(Debug, Default)]
pub(super) struct Replication {
    /// Per Resource-ID: the peers known to hold what we hold, and the version of our data
    /// they hold it at.
    holders: HashMap<ResourceId, BTreeSet<NodeId>>,
    /// Bumped at every change of what we hold for a Resource-ID.
    versions: HashMap<ResourceId, u64>,
    /// Stores to send: (Resource-ID, to (None: routed to the Resource-ID), replica number).
    queue: VecDeque<(ResourceId, Option<NodeId>, u8)>,
    queued: HashSet<(ResourceId, Option<NodeId>)>,
    in_flight: usize,
    /// When to sweep next.
    pub(super) next_sweep: Option<Instant>,
    /// The pause before the next sweep while data is not settled: from
    /// [`SWEEP_RETRY_MIN`], doubling up to [`SWEEP_INTERVAL`] (a replica that refused our
    /// Store because it had not yet heard of the failure we reacted to accepts it a
    /// moment later).
    retry: Duration,
    /// When values next expire.
    pub(super) next_expiry: Option<Instant>,
    /// When to look again for our certificate in the overlay (§8).
    pub(super) cert_retry: Option<Instant>,
    /// The pause before the next look, doubling from [`SWEEP_RETRY_MIN`] to
    /// [`SWEEP_INTERVAL`] while lookups go unanswered (the ring is settling).
    cert_backoff: Duration,
    /// NODE-MULTIPLE Resource-IDs of recent signers (§7.3.4).
    node_multiple: policy::NodeMultipleCache,
}

impl Replication {
    fn version(&self, r: &ResourceId) -> u64 {
        self.versions.get(r).copied().unwrap_or(0)
    }

    fn changed(&mut self, r: &ResourceId) {
        *self.versions.entry(r.clone()).or_default() += 1;
        self.holders.remove(r);
    }

    fn enqueue(&mut self, r: ResourceId, to: Option<NodeId>, replica_number: u8) {
        if self.queued.insert((r.clone(), to)) {
            self.queue.push_back((r, to, replica_number));
        }
    }
}

fn err(code: ErrorCode, why: impl Into<String>) -> ErrorResponse {
    ErrorResponse::new(code, why.into())
}

/// The error answer for an engine refusal (§7.4.1.2).
fn store_error(e: StoreError) -> ErrorResponse {
    match e {
        StoreError::GenerationTooLow(current) => {
            // error_info: a StoreAns with the current counters and no replicas.
            let ans = StoreAns {
                kind_responses: current
                    .into_iter()
                    .map(|(kind, generation_counter)| StoreKindResponse {
                        kind,
                        generation_counter,
                        replicas: Vec::new(),
                    })
                    .collect(),
            };
            let info = ans.to_bytes().unwrap_or_default();
            ErrorResponse::new(ErrorCode::GENERATION_COUNTER_TOO_LOW, info)
        }
        StoreError::DataTooOld(why) => err(ErrorCode::DATA_TOO_OLD, why),
        StoreError::TooLarge(why) => err(ErrorCode::DATA_TOO_LARGE, why),
        StoreError::Invalid(why) => err(ErrorCode::INVALID_MESSAGE, why),
        StoreError::Unavailable(why) => err(ErrorCode::REQUEST_TIMEOUT, why),
    }
}

/// A specifier that selects everything of a Kind (wildcards, §7.4.2.1).
pub fn everything(kind: KindId, model: DataModel) -> StoredDataSpecifier {
    StoredDataSpecifier {
        kind,
        generation: 0,
        model_specifier: match model {
            DataModel::Single => ModelSpecifier::Single,
            DataModel::Array => ModelSpecifier::Array(vec![ArrayRange {
                first: 0,
                last: ARRAY_END,
            }]),
            DataModel::Dictionary => ModelSpecifier::Dictionary(Vec::new()),
        },
    }
}

/// Whether a fetched value is one the responder synthesized for what it does not hold
/// (§7.4.2.2): no signature, `exists = false`.
fn synthesized(d: &StoredData) -> bool {
    let exists = match &d.value {
        StoredDataValue::Single(v) => v.exists,
        StoredDataValue::Array(e) => e.value.exists,
        StoredDataValue::Dictionary(e) => e.value.exists,
    };
    d.signature.identity == SignerIdentity::None && !exists
}

impl Node {
    pub(super) fn wall_ms(&self, now: Instant) -> u64 {
        unix_ms(self.wall(now))
    }

    /// The instant at which the wall clock reads `ms`.
    fn instant_at_wall(&self, now: Instant, ms: u64) -> Instant {
        let wall = self.wall_ms(now);
        now + Duration::from_millis(ms.saturating_sub(wall))
    }

    /// The data this node holds.
    pub fn storage(&self) -> &crate::storage::Storage {
        &self.storage
    }

    // ---------------------------------------------------------------- serving (§7.4)

    /// Checks a value's signer against its Kind's policy (§7.3).
    fn authorized(
        &mut self,
        kind: KindId,
        resource: &ResourceId,
        value: &StoredData,
        signer: &VerifiedSigner,
    ) -> Result<(), String> {
        let Some((def, _)) = self.overlay.kind(kind) else {
            return Err(format!("unknown Kind {kind}"));
        };
        // RFC 7904 §3.3: the AOR (the signer's one user name) must be admitted by the
        // overlay's domain restriction — checked first, it is cheap (§8.1).
        if kind == KindId::SIP_REGISTRATION {
            let aor = signer.cert.user_name.as_deref().unwrap_or("");
            self.overlay.sip_domains().admits(aor).map_err(|d| d.0)?;
        }
        let topo = &self.topo;
        let hash = |name: &[u8]| topo.resource_id(name);
        let multiple = &mut self.replication.node_multiple;
        policy::check(
            PolicyOf {
                policy: &def.access_control,
                max_node_multiple: def.max_node_multiple,
            },
            resource,
            value,
            Signer {
                cert: &signer.cert,
                node_id: &signer.node_id,
            },
            &hash,
            multiple,
        )
        .map_err(|d| d.0)
    }

    /// Store (§7.4.1).
    pub(super) fn on_store(
        &mut self,
        now: Instant,
        signer: &VerifiedSigner,
        certificates: &[GenericCertificate],
        req: StoreReq,
    ) -> Result<MessageBody, ErrorResponse> {
        let resource = req.resource.clone();
        let replica = req.replica_number != 0;
        if replica {
            if !self.topo.is_joined() {
                return Err(err(
                    ErrorCode::NOT_FOUND,
                    "this node is not in the overlay (joining, or it has left)",
                ));
            }
            // §7.4.1.1: a replica Store comes from a plausible member of the replica set.
            if !self.topo.accepts_replica_from(&signer.node_id, &resource) {
                return Err(err(
                    ErrorCode::FORBIDDEN,
                    "a replica Store from a node that is not in the replica set of this Resource-ID",
                ));
            }
        } else if self.topo.storage_role(&resource) != StorageRole::Responsible {
            return Err(err(
                ErrorCode::NOT_FOUND,
                "this node is not responsible for the Resource-ID",
            ));
        }
        // Every Kind known and supported (§7.4.1.1), else Error_Unknown_Kind listing them.
        let unknown: Vec<KindId> = req
            .kind_data
            .iter()
            .filter(|k| {
                self.overlay.kind(k.kind).is_none()
                    || matches!(k.values, KindValues::UnknownModel(_))
            })
            .map(|k| k.kind)
            .collect();
        if !unknown.is_empty() {
            let info = UnknownKinds {
                unknown_kinds: unknown,
            };
            return Err(ErrorResponse::new(
                ErrorCode::UNKNOWN_KIND,
                info.to_bytes().unwrap_or_default(),
            ));
        }
        let wall = self.wall(now);
        let mut inputs = Vec::with_capacity(req.kind_data.len());
        for kd in req.kind_data {
            let Some((def, model)) = self.overlay.kind(kd.kind) else {
                continue; // checked above
            };
            let (max_count, max_size) = (def.max_count, def.max_size);
            let values = kd.values.as_slice();
            let verdicts =
                self.verifier
                    .verify_stored_values(&resource, kd.kind, values, certificates, wall);
            let mut signed = Vec::with_capacity(values.len());
            for (value, verdict) in values.iter().zip(verdicts) {
                let vs = verdict.map_err(|e| {
                    err(
                        ErrorCode::FORBIDDEN,
                        format!("a value's signature does not verify: {e}"),
                    )
                })?;
                // §7.3: the value's signer, and for an original Store the request's
                // signer too, must be allowed to write it.
                self.authorized(kd.kind, &resource, value, &vs)
                    .map_err(|why| err(ErrorCode::FORBIDDEN, why))?;
                if !replica {
                    self.authorized(kd.kind, &resource, value, signer)
                        .map_err(|why| {
                            err(ErrorCode::FORBIDDEN, format!("the request's signer: {why}"))
                        })?;
                }
                signed.push(SignedValue {
                    data: value.clone(),
                    cert: vs.cert.der().clone(),
                    owner: owner_of(&vs.cert),
                });
            }
            inputs.push(KindInput {
                kind: kd.kind,
                model,
                generation: kd.generation_counter,
                max_count,
                max_size,
                values: signed,
            });
        }
        let mode = if replica {
            StoreMode::Replica
        } else {
            StoreMode::Original
        };
        let wall_ms = self.wall_ms(now);
        let stored = self
            .storage
            .store(wall_ms, &resource, mode, inputs)
            .map_err(store_error)?;
        self.schedule_expiry(now);
        let replicas = if replica {
            Vec::new()
        } else {
            self.topo.replica_set(&resource)
        };
        let changed: Vec<KindId> = stored
            .iter()
            .filter(|s| s.changed)
            .map(|s| s.kind)
            .collect();
        if replica {
            // What we hold for it is what its sender holds.
            if !changed.is_empty() {
                self.replication.changed(&resource);
            }
            self.replication
                .holders
                .entry(resource.clone())
                .or_default()
                .insert(signer.node_id);
        } else if !changed.is_empty() {
            // §10.4: copy the change to the replica set — all we hold for the Resource-ID
            // to a replica that may lack earlier changes.
            let prior = self
                .replication
                .holders
                .get(&resource)
                .cloned()
                .unwrap_or_default();
            self.replication.changed(&resource);
            for (i, peer) in replicas.iter().enumerate() {
                let only = prior.contains(peer).then_some(changed.as_slice());
                self.send_replica(now, &resource, Some(*peer), (i + 1) as u8, only);
            }
        }
        Ok(MessageBody::StoreAns(StoreAns {
            kind_responses: stored
                .into_iter()
                .map(|s| StoreKindResponse {
                    kind: s.kind,
                    generation_counter: s.generation,
                    replicas: replicas.clone(),
                })
                .collect(),
        }))
    }

    /// Whether we answer Fetch and Stat for `resource`: as its responsible peer, or — when
    /// addressed by our Node-ID — from a replica we hold (how a peer fetches newer data
    /// back from us, §7.4.1.1).
    fn may_serve(&self, resource: &ResourceId, to_us: bool) -> Result<(), ErrorResponse> {
        match self.topo.storage_role(resource) {
            StorageRole::Responsible => Ok(()),
            StorageRole::Replica { .. } if to_us => Ok(()),
            _ => Err(err(
                ErrorCode::NOT_FOUND,
                "this node is not responsible for the Resource-ID",
            )),
        }
    }

    /// The data model of each Kind asked for, or Error_Unknown_Kind (§7.4.2.1 SHOULD).
    fn models(&self, specs: &[StoredDataSpecifier]) -> Result<Vec<DataModel>, ErrorResponse> {
        let mut unknown = Vec::new();
        let mut models = Vec::with_capacity(specs.len());
        for s in specs {
            match self.overlay.kind(s.kind) {
                Some((_, m)) if !matches!(s.model_specifier, ModelSpecifier::UnknownModel(_)) => {
                    models.push(m)
                }
                _ => unknown.push(s.kind),
            }
        }
        if unknown.is_empty() {
            Ok(models)
        } else {
            Err(ErrorResponse::new(
                ErrorCode::UNKNOWN_KIND,
                UnknownKinds {
                    unknown_kinds: unknown,
                }
                .to_bytes()
                .unwrap_or_default(),
            ))
        }
    }

    /// Fetch (§7.4.2): the answer and the certificates it must carry.
    pub(super) fn on_fetch(
        &mut self,
        now: Instant,
        to_us: bool,
        req: FetchReq,
    ) -> Result<(MessageBody, Vec<GenericCertificate>), ErrorResponse> {
        self.may_serve(&req.resource, to_us)?;
        let models = self.models(&req.specifiers)?;
        let wall_ms = self.wall_ms(now);
        let mut kind_responses = Vec::with_capacity(req.specifiers.len());
        let mut certs: Vec<GenericCertificate> = Vec::new();
        for (spec, model) in req.specifiers.iter().zip(models) {
            let (ans, used) = self
                .storage
                .fetch(wall_ms, &req.resource, spec, model)
                .map_err(store_error)?;
            for c in used {
                if !certs.iter().any(|g| g.certificate == c.der) {
                    certs.push(GenericCertificate::x509(c.der.clone()));
                }
            }
            kind_responses.push(ans);
        }
        Ok((MessageBody::FetchAns(FetchAns { kind_responses }), certs))
    }

    /// Stat (§7.4.3).
    pub(super) fn on_stat(
        &mut self,
        now: Instant,
        to_us: bool,
        req: StatReq,
    ) -> Result<MessageBody, ErrorResponse> {
        self.may_serve(&req.resource, to_us)?;
        let models = self.models(&req.specifiers)?;
        let wall_ms = self.wall_ms(now);
        let mut kind_responses = Vec::with_capacity(req.specifiers.len());
        for (spec, model) in req.specifiers.iter().zip(models) {
            kind_responses.push(
                self.storage
                    .stat(wall_ms, &req.resource, spec, model)
                    .map_err(store_error)?,
            );
        }
        Ok(MessageBody::StatAns(StatAns { kind_responses }))
    }

    /// Find (§7.4.4): for each Kind, the Resource-ID we are responsible for that holds
    /// values of it and comes first clockwise from the one asked; 0 when none, or when the
    /// Kind is unknown.
    pub(super) fn on_find(
        &mut self,
        now: Instant,
        req: FindReq,
    ) -> Result<MessageBody, ErrorResponse> {
        if self.topo.storage_role(&req.resource) != StorageRole::Responsible {
            return Err(err(
                ErrorCode::NOT_FOUND,
                "this node is not responsible for the Resource-ID",
            ));
        }
        let mut seen = HashSet::new();
        if !req.kinds.iter().all(|k| seen.insert(*k)) {
            return Err(err(
                ErrorCode::INVALID_MESSAGE,
                "a Kind appears twice in the Find (§7.4.4.1)",
            ));
        }
        let zero = ResourceId::new(Bytes::from(vec![0u8; self.overlay.node_id_len()]));
        let wall_ms = self.wall_ms(now);
        let topo = &self.topo;
        let ours = |r: &ResourceId| topo.storage_role(r) == StorageRole::Responsible;
        let results = req
            .kinds
            .iter()
            .map(|&kind| {
                let closest = if self.overlay.kind(kind).is_some() {
                    self.storage.find(wall_ms, kind, &req.resource, &ours)
                } else {
                    None
                };
                FindKindData {
                    kind,
                    closest: closest.unwrap_or_else(|| zero.clone()),
                }
            })
            .collect();
        Ok(MessageBody::FindAns(FindAns { results }))
    }

    // ------------------------------------------------------------ replication (§10.4)

    /// Sends a replica Store of what we hold at `resource` (only the Kinds `only`, if
    /// given) to `to` (None: routed to the Resource-ID), paced.
    fn send_replica(
        &mut self,
        now: Instant,
        resource: &ResourceId,
        to: Option<NodeId>,
        replica_number: u8,
        only: Option<&[KindId]>,
    ) {
        if self.replication.in_flight >= MAX_REPLICATION_IN_FLIGHT {
            self.replication
                .enqueue(resource.clone(), to, replica_number);
            return;
        }
        let wall_ms = self.wall_ms(now);
        let exports = self.storage.export(wall_ms, resource);
        let mut certs: Vec<GenericCertificate> = Vec::new();
        let mut kind_data = Vec::new();
        for e in exports {
            if only.is_some_and(|o| !o.contains(&e.kind)) {
                continue;
            }
            for c in &e.certs {
                if !certs.iter().any(|g| g.certificate == c.der) {
                    certs.push(GenericCertificate::x509(c.der.clone()));
                }
            }
            kind_data.push(StoreKindData {
                kind: e.kind,
                generation_counter: e.generation,
                values: KindValues::Decoded(e.values),
            });
        }
        if kind_data.is_empty() {
            return;
        }
        let body = MessageBody::StoreReq(StoreReq {
            resource: resource.clone(),
            replica_number: replica_number.max(1),
            kind_data,
        });
        let destination = match to {
            Some(peer) => vec![Destination::Node(peer)],
            None => vec![Destination::Resource(resource.clone())],
        };
        let purpose = Purpose::Replicate {
            resource: resource.clone(),
            to,
            version: self.replication.version(resource),
        };
        match self.request_carrying(now, destination, body, purpose, certs) {
            Ok(_) => self.replication.in_flight += 1,
            Err(e) => tracing::debug!("replica Store not sent: {e}"),
        }
    }

    /// The answer to one of our replica or handover Stores.
    pub(super) fn replica_answered(
        &mut self,
        now: Instant,
        resource: ResourceId,
        to: Option<NodeId>,
        version: u64,
        result: Result<NodeId, RequestError>,
    ) {
        self.replication.in_flight = self.replication.in_flight.saturating_sub(1);
        match (&result, to) {
            (Ok(peer), Some(_)) => {
                if self.replication.version(&resource) == version {
                    self.replication
                        .holders
                        .entry(resource.clone())
                        .or_default()
                        .insert(*peer);
                }
            }
            // A handover to whoever is responsible: answered (stored or refused), our copy
            // is no longer needed (§10.7.3 SHOULD delete); a timeout keeps it for later.
            (Ok(_), None) => self.forget(now, &resource),
            (Err(RequestError::Error(_, e)), None)
                if e.error_code != ErrorCode::REQUEST_TIMEOUT =>
            {
                self.forget(now, &resource)
            }
            (Err(RequestError::Error(peer, e)), Some(_))
                if matches!(
                    e.error_code,
                    ErrorCode::DATA_TOO_OLD | ErrorCode::GENERATION_COUNTER_TOO_LOW
                ) =>
            {
                // §7.4.1.1: the peer has newer data; fetch it and replace ours.
                let peer = *peer;
                self.fetch_back(now, &resource, peer);
            }
            (Err(e), _) => {
                tracing::debug!(?to, "replica Store failed: {e}");
                self.replication
                    .next_sweep
                    .get_or_insert(now + SWEEP_INTERVAL);
            }
        }
        self.pump_replication(now);
    }

    fn forget(&mut self, now: Instant, resource: &ResourceId) {
        if self.topo.storage_role(resource) != StorageRole::Outside {
            return; // the ring moved again: it is ours to keep after all
        }
        match self.storage.remove_resource(resource) {
            Ok(n) => {
                tracing::debug!(%n, "values handed over and forgotten");
                self.replication.holders.remove(resource);
                self.replication.versions.remove(resource);
            }
            Err(e) => {
                tracing::warn!("could not forget handed-over values: {e}");
                self.replication
                    .next_sweep
                    .get_or_insert(now + SWEEP_INTERVAL);
            }
        }
    }

    /// Fetches everything `peer` holds at `resource`, to merge the newer values.
    fn fetch_back(&mut self, now: Instant, resource: &ResourceId, peer: NodeId) {
        let specifiers: Vec<StoredDataSpecifier> = self
            .storage
            .kinds_at(resource)
            .into_iter()
            .filter_map(|k| self.overlay.kind(k).map(|(_, m)| everything(k, m)))
            .collect();
        if specifiers.is_empty() {
            return;
        }
        let body = MessageBody::FetchReq(FetchReq {
            resource: resource.clone(),
            specifiers,
        });
        let purpose = Purpose::FetchBack {
            resource: resource.clone(),
        };
        if let Err(e) = self.request(now, vec![Destination::Node(peer)], body, purpose) {
            tracing::debug!("fetch-back not sent: {e}");
        }
    }

    /// Verifies fetched values (§7.4.2.2): signature, certificate, the Kind's policy.
    /// Returns the answer with only the values that passed, and the others with why.
    fn verify_fetched(
        &mut self,
        now: Instant,
        resource: &ResourceId,
        kinds: Vec<FetchKindResponse>,
        certificates: &[GenericCertificate],
    ) -> VerifiedFetch {
        let wall = self.wall(now);
        let mut rejected = Vec::new();
        let mut out = Vec::with_capacity(kinds.len());
        let mut signers = Vec::with_capacity(kinds.len());
        for mut k in kinds {
            let values = match std::mem::take(&mut k.values) {
                KindValues::Decoded(v) => v,
                KindValues::UnknownModel(_) => {
                    rejected.push((k.kind, "a Kind this node does not know".to_string()));
                    Vec::new()
                }
            };
            let (synthetic, real): (Vec<StoredData>, Vec<StoredData>) =
                values.into_iter().partition(synthesized);
            let verdicts =
                self.verifier
                    .verify_stored_values(resource, k.kind, &real, certificates, wall);
            let mut kept = synthetic;
            let mut kept_signers = Vec::new();
            for (v, verdict) in real.into_iter().zip(verdicts) {
                match verdict
                    .map_err(|e| e.to_string())
                    .and_then(|s| self.authorized(k.kind, resource, &v, &s).map(|()| s))
                {
                    Ok(s) => {
                        kept.push(v);
                        kept_signers.push(s);
                    }
                    Err(why) => rejected.push((k.kind, why)),
                }
            }
            k.values = KindValues::Decoded(kept);
            out.push(k);
            signers.push(kept_signers);
        }
        VerifiedFetch {
            kinds: out,
            rejected,
            signers,
        }
    }

    /// The answer to a fetch-back: newer values replace ours (merge, §7.4.1.1).
    fn merge_fetched(
        &mut self,
        now: Instant,
        resource: &ResourceId,
        kinds: Vec<FetchKindResponse>,
        certificates: &[GenericCertificate],
    ) {
        let VerifiedFetch {
            kinds,
            rejected,
            signers,
        } = self.verify_fetched(now, resource, kinds, certificates);
        if !rejected.is_empty() {
            tracing::debug!(n = rejected.len(), "fetched-back values refused");
        }
        let mut inputs = Vec::new();
        for (k, signers) in kinds.into_iter().zip(signers) {
            let Some((def, model)) = self.overlay.kind(k.kind) else {
                continue;
            };
            let real: Vec<StoredData> = k
                .values
                .as_slice()
                .iter()
                .filter(|v| !synthesized(v))
                .cloned()
                .collect();
            if real.is_empty() || k.generation == 0 {
                continue;
            }
            inputs.push(KindInput {
                kind: k.kind,
                model,
                generation: k.generation,
                max_count: def.max_count,
                max_size: def.max_size,
                values: real
                    .into_iter()
                    .zip(signers)
                    .map(|(data, s)| SignedValue {
                        data,
                        cert: s.cert.der().clone(),
                        owner: owner_of(&s.cert),
                    })
                    .collect(),
            });
        }
        if inputs.is_empty() {
            return;
        }
        let wall_ms = self.wall_ms(now);
        match self
            .storage
            .store(wall_ms, resource, StoreMode::Merge, inputs)
        {
            Ok(s) if s.iter().any(|s| s.changed) => {
                self.replication.changed(resource);
                self.schedule_expiry(now);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("merging fetched values failed: {e}"),
        }
        self.replication.next_sweep.get_or_insert(now);
    }

    /// Looks at everything held (see the module documentation).
    pub(super) fn sweep_storage(&mut self, now: Instant) {
        self.replication.next_sweep = None;
        if !self.topo.is_joined() {
            return; // nothing moves while we are not in the ring
        }
        let mut unsettled = false;
        let resources = self.storage.resources();
        let held: HashSet<&ResourceId> = resources.iter().collect();
        self.replication.holders.retain(|r, _| held.contains(r));
        self.replication.versions.retain(|r, _| held.contains(r));
        for r in &resources {
            let holders = self.replication.holders.get(r).cloned().unwrap_or_default();
            let lacks = |p: &NodeId| !holders.contains(p);
            match self.topo.storage_role(r) {
                StorageRole::Responsible => {
                    for (i, peer) in self.topo.replica_set(r).into_iter().enumerate() {
                        if lacks(&peer) {
                            self.replication
                                .enqueue(r.clone(), Some(peer), (i + 1) as u8);
                            unsettled = true;
                        }
                    }
                }
                StorageRole::Replica { responsible } => {
                    if lacks(&responsible) {
                        self.replication.enqueue(r.clone(), Some(responsible), 1);
                        unsettled = true;
                    }
                }
                StorageRole::Outside => {
                    self.replication.enqueue(r.clone(), None, 1);
                    unsettled = true;
                }
            }
        }
        self.pump_replication(now);
        if unsettled {
            self.sweep_again(now);
        } else {
            self.replication.retry = SWEEP_RETRY_MIN;
        }
    }

    /// Schedules a sweep after the current retry pause (unless one comes sooner), and
    /// lengthens the pause.
    fn sweep_again(&mut self, now: Instant) {
        let r = &mut self.replication;
        r.retry = r.retry.clamp(SWEEP_RETRY_MIN, SWEEP_INTERVAL);
        let at = now + r.retry;
        r.next_sweep = Some(r.next_sweep.map_or(at, |t| t.min(at)));
        r.retry = (r.retry * 2).min(SWEEP_INTERVAL);
    }

    /// Sends queued replica Stores while there is room.
    fn pump_replication(&mut self, now: Instant) {
        while self.replication.in_flight < MAX_REPLICATION_IN_FLIGHT {
            let Some((r, to, n)) = self.replication.queue.pop_front() else {
                break;
            };
            self.replication.queued.remove(&(r.clone(), to));
            let before = self.replication.in_flight;
            self.send_replica(now, &r, to, n, None);
            if self.replication.in_flight == before {
                continue; // nothing to send for it any more
            }
        }
    }

    /// Something changed the neighbour set: look at what we hold again, now.
    pub(super) fn storage_topology_changed(&mut self, now: Instant) {
        if !self.storage.is_empty() {
            self.replication.next_sweep = Some(now);
            self.replication.retry = SWEEP_RETRY_MIN;
        }
    }

    pub(super) fn schedule_expiry(&mut self, now: Instant) {
        self.replication.next_expiry = self
            .storage
            .next_expiry()
            .map(|ms| self.instant_at_wall(now, ms));
    }

    /// Storage timers: expiry and sweeps.
    pub(super) fn storage_timers(&mut self, now: Instant) {
        if self.replication.next_expiry.is_some_and(|t| t <= now) {
            let wall_ms = self.wall_ms(now);
            match self.storage.expire(wall_ms, EXPIRY_BUDGET) {
                Ok(n) if n > 0 => tracing::trace!(%n, "values expired"),
                Ok(_) => {}
                Err(e) => tracing::warn!("could not remove expired values: {e}"),
            }
            self.schedule_expiry(now);
            if self.replication.next_expiry.is_some_and(|t| t <= now) {
                // More due than one run removes (or the backend failed): again in a moment.
                self.replication.next_expiry = Some(now + Duration::from_millis(100));
            }
        }
        if self.replication.next_sweep.is_some_and(|t| t <= now) {
            self.sweep_storage(now);
        }
        if self.replication.cert_retry.is_some_and(|t| t <= now) {
            self.replication.cert_retry = None;
            self.publish_certificate(now);
        }
    }

    // ------------------------------------------------- certificates (§8), TURN (§9)

    /// §8: a node MUST store its certificate at the Resource-IDs of its Node-ID
    /// (CERTIFICATE_BY_NODE) and of its user name (CERTIFICATE_BY_USER), at the end of
    /// the array. For each Kind the overlay defines, we fetch the array first and append
    /// our certificate only if it is not there yet (a restart does not add a copy).
    pub(super) fn publish_certificate(&mut self, now: Instant) {
        let node_name = self.creds.node_id.as_bytes().to_vec();
        let user_name = self.creds.cert.user_name.clone();
        let targets = [
            (KindId::CERTIFICATE_BY_NODE, Some(node_name)),
            (
                KindId::CERTIFICATE_BY_USER,
                user_name.map(|u| u.into_bytes()),
            ),
        ];
        for (kind, name) in targets {
            let (Some(name), Some((_, model))) = (name, self.overlay.kind(kind)) else {
                continue;
            };
            let resource = self.topo.resource_id(&name);
            let body = MessageBody::FetchReq(FetchReq {
                resource: resource.clone(),
                specifiers: vec![everything(kind, model)],
            });
            let purpose = Purpose::PublishCert {
                kind,
                resource: resource.clone(),
            };
            let dest = vec![Destination::Resource(resource)];
            if let Err(e) = self.request(now, dest, body, purpose) {
                tracing::debug!("certificate lookup not sent: {e}");
                self.cert_retry_later(now);
            }
        }
    }

    /// Looks for our certificate again after the current pause, and lengthens it.
    fn cert_retry_later(&mut self, now: Instant) {
        let r = &mut self.replication;
        r.cert_backoff = r.cert_backoff.clamp(SWEEP_RETRY_MIN, SWEEP_INTERVAL);
        let at = now + r.cert_backoff;
        r.cert_retry = Some(r.cert_retry.map_or(at, |t| t.min(at)));
        r.cert_backoff = (r.cert_backoff * 2).min(SWEEP_INTERVAL);
    }

    /// Appends our certificate to the array of `kind` at `resource` (§8), for as long as
    /// it is valid.
    fn store_certificate(&mut self, now: Instant, kind: KindId, resource: ResourceId) {
        let wall_s = (self.wall_ms(now) / 1000) as i64;
        let left = (self.creds.cert.not_after - wall_s).clamp(0, u32::MAX as i64) as u32;
        if left == 0 {
            return;
        }
        let value = StoredDataValue::Array(reload_wire::storage::ArrayEntry {
            index: ARRAY_END,
            value: reload_wire::storage::DataValue {
                exists: true,
                value: self.creds.cert.der().clone(),
            },
        });
        let signed = match self.sign_value(now, &resource, kind, value, left) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("could not sign our certificate for §8 storage: {e}");
                return;
            }
        };
        let body = MessageBody::StoreReq(StoreReq {
            resource: resource.clone(),
            replica_number: 0,
            kind_data: vec![StoreKindData {
                kind,
                generation_counter: 0,
                values: KindValues::Decoded(vec![signed]),
            }],
        });
        let dest = vec![Destination::Resource(resource)];
        if let Err(e) = self.request(now, dest, body, Purpose::Notification) {
            tracing::debug!("certificate store not sent: {e}");
        }
    }

    /// §9: advertises this peer as a TURN server reachable at `server`: a TurnServer
    /// value at H(Node-ID ‖ d) for each d from 1 to the configuration's `turn-density`
    /// (TURN-SERVICE, NODE-MULTIPLE). Returns the transaction IDs of the Stores (their
    /// answers are [`Event::Response`]s). Nothing when the overlay does not define
    /// TURN-SERVICE or its turn-density is 0.
    pub fn advertise_turn(
        &mut self,
        now: Instant,
        server: std::net::SocketAddr,
        lifetime: u32,
    ) -> Result<Vec<u64>, RequestError> {
        let kind = KindId::TURN_SERVICE;
        if self.overlay.kind(kind).is_none() {
            return Ok(Vec::new());
        }
        // §9: TURN-SERVICE is NODE-MULTIPLE "with a maximum iteration of counter 20";
        // records beyond would be refused.
        let density = self.overlay.config().turn_density.min(TURN_MAX_ITERATION);
        let mut txs = Vec::new();
        for d in 1..=density {
            let name = policy::node_multiple_name(&self.creds.node_id, d);
            let resource = self.topo.resource_id(&name);
            let server_value = reload_wire::storage::TurnServer {
                iteration: d as u8,
                server_address: reload_wire::IpAddressPort::from(server),
            };
            let bytes = server_value
                .to_bytes()
                .map_err(|e| RequestError::Unsendable(e.to_string()))?;
            let value = StoredDataValue::Single(reload_wire::storage::DataValue {
                exists: true,
                value: bytes,
            });
            let signed = self.sign_value(now, &resource, kind, value, lifetime)?;
            let kind_data = vec![StoreKindData {
                kind,
                generation_counter: 0,
                values: KindValues::Decoded(vec![signed]),
            }];
            txs.push(self.store(now, resource, kind_data)?);
        }
        Ok(txs)
    }

    // ------------------------------------------------------------- the client side

    /// Signs a value to store at `resource` under `kind` (§7.1) with our credentials.
    /// `storage_time` is our wall clock in milliseconds, made to increase across calls
    /// (§7: a later store must carry a later time).
    pub fn sign_value(
        &mut self,
        now: Instant,
        resource: &ResourceId,
        kind: KindId,
        value: StoredDataValue,
        lifetime: u32,
    ) -> Result<StoredData, RequestError> {
        let t = self.wall_ms(now).max(self.last_storage_time + 1);
        self.last_storage_time = t;
        let mut data = StoredData {
            storage_time: t,
            lifetime,
            value,
            signature: reload_wire::Signature::none(),
        };
        self.creds
            .sign_stored_data(resource, kind, &mut data)
            .map_err(|e| RequestError::Unsendable(e.to_string()))?;
        Ok(data)
    }

    /// Sends a Store (replica number 0) of signed values to the peer responsible for
    /// `resource` (§7.4.1); the answer is an [`Event::Response`] with a StoreAns.
    pub fn store(
        &mut self,
        now: Instant,
        resource: ResourceId,
        kind_data: Vec<StoreKindData>,
    ) -> Result<u64, RequestError> {
        let body = MessageBody::StoreReq(StoreReq {
            resource: resource.clone(),
            replica_number: 0,
            kind_data,
        });
        let tx = self.request(
            now,
            vec![Destination::Resource(resource)],
            body,
            Purpose::Application,
        );
        self.drain_topology(now);
        tx
    }

    /// Sends a Fetch (§7.4.2) to the peer responsible for `resource`; the answer is an
    /// [`Event::Fetched`] whose values were verified.
    pub fn fetch(
        &mut self,
        now: Instant,
        resource: ResourceId,
        specifiers: Vec<StoredDataSpecifier>,
    ) -> Result<u64, RequestError> {
        let body = MessageBody::FetchReq(FetchReq {
            resource: resource.clone(),
            specifiers,
        });
        let purpose = Purpose::Fetch {
            resource: resource.clone(),
        };
        let tx = self.request(now, vec![Destination::Resource(resource)], body, purpose);
        self.drain_topology(now);
        tx
    }

    /// The answer to a storage request of the core: a fetch for the application
    /// (verified), a replica Store, a fetch-back.
    pub(super) fn storage_answer(
        &mut self,
        now: Instant,
        txid: u64,
        purpose: Purpose,
        result: Result<(NodeId, MessageBody), RequestError>,
        certificates: &[GenericCertificate],
    ) {
        match purpose {
            Purpose::Fetch { resource } => {
                let result = match result {
                    Ok((responder, MessageBody::FetchAns(a))) => {
                        let VerifiedFetch {
                            kinds, rejected, ..
                        } = self.verify_fetched(now, &resource, a.kind_responses, certificates);
                        Ok(Fetched {
                            responder,
                            kinds,
                            rejected,
                        })
                    }
                    Ok((responder, _)) => Err(RequestError::Error(
                        responder,
                        err(ErrorCode::INVALID_MESSAGE, "not a FetchAns"),
                    )),
                    Err(e) => Err(e),
                };
                self.events.push_back(Event::Fetched {
                    transaction_id: txid,
                    result,
                });
            }
            Purpose::Replicate {
                resource,
                to,
                version,
            } => {
                let r = match result {
                    Ok((peer, MessageBody::StoreAns(_))) => Ok(peer),
                    Ok((peer, _)) => Err(RequestError::Error(
                        peer,
                        err(ErrorCode::INVALID_MESSAGE, "not a StoreAns"),
                    )),
                    Err(e) => Err(e),
                };
                self.replica_answered(now, resource, to, version, r);
            }
            Purpose::FetchBack { resource } => {
                if let Ok((_, MessageBody::FetchAns(a))) = result {
                    self.merge_fetched(now, &resource, a.kind_responses, certificates);
                }
            }
            Purpose::PublishCert { kind, resource } => {
                let present = match &result {
                    Ok((_, MessageBody::FetchAns(a))) => Some(a.kind_responses.iter().any(|k| {
                        k.values.as_slice().iter().any(|v| {
                            matches!(&v.value, StoredDataValue::Array(e)
                                if e.value.exists && e.value.value == *self.creds.cert.der())
                        })
                    })),
                    _ => None,
                };
                if present.is_some() {
                    self.replication.cert_backoff = SWEEP_RETRY_MIN;
                }
                match present {
                    Some(true) => {}
                    Some(false) => {
                        // Stored, then looked for again: a Store lost while the ring
                        // settles is made again at the next look.
                        self.store_certificate(now, kind, resource);
                        self.cert_retry_later(now);
                    }
                    None => {
                        // Not answered (the ring is still settling): try again soon.
                        self.cert_retry_later(now);
                    }
                }
            }
            _ => {}
        }
    }
}
