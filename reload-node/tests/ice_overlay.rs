//! An ICE overlay (RFC 6940 §6.5.1.3–§6.5.1.10) of real peers in this process, on
//! loopback: every node listens with DTLS-UDP-SR, so each Attach carries ufrag, password
//! and ICE candidates, the two agents run connectivity checks over the peers' overlay
//! UDP sockets (shared with DTLS and the STUN server, RFC 7983), and the DTLS link runs
//! over the selected pair. The ring forms, values are stored and fetched through it, and
//! each link made by an Attach reports the pair it runs on.

#[path = "inproc/mod.rs"]
mod inproc;

use bytes::Bytes;
use reload_nat::ice::CandidateKind;
use reload_proto::identity::chord_resource_id;
use reload_wire::link::OverlayLinkType;
use reload_wire::storage::{
    DataValue, KindId, ModelSpecifier, StoredDataSpecifier, StoredDataValue,
};

const ICE: OverlayLinkType = OverlayLinkType::DTLS_UDP_SR;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ice_overlay_forms_stores_and_fetches_over_selected_pairs() {
    let members = inproc::overlay_over(ICE, 6, 1, None).await;
    // Links made through an Attach run over an ICE pair; only links to the bootstrap
    // peer (opened directly to its address, §11.4) have none.
    let mut ice_links = 0;
    for m in &members {
        let s = m.handle.snapshot().await.unwrap();
        for l in s.links.iter().filter(|l| l.established) {
            if let Some(ice) = &l.ice {
                ice_links += 1;
                assert_eq!(l.link_type, ICE);
                assert_eq!(ice.local.kind, CandidateKind::Host, "{ice:?}");
                assert_eq!(
                    ice.remote.addr, l.remote,
                    "DTLS runs to the selected remote"
                );
            }
        }
        assert_eq!(s.stats.ice_failed, 0, "{}", m.user);
    }
    assert!(ice_links >= 10, "only {ice_links} links over ICE pairs");
    // A value stored by the client is fetched back by another node.
    let user = &members[6];
    let resource = chord_resource_id(user.user.as_bytes());
    let value = StoredDataValue::Single(DataValue {
        exists: true,
        value: Bytes::from_static(b"stored over ICE links"),
    });
    user.handle
        .store(
            KindId(inproc::pki::kinds::SINGLE),
            resource.clone(),
            vec![value.clone()],
            600,
        )
        .await
        .expect("store");
    let got = members[2]
        .handle
        .fetch(
            resource,
            vec![StoredDataSpecifier {
                kind: KindId(inproc::pki::kinds::SINGLE),
                generation: 0,
                model_specifier: ModelSpecifier::Single,
            }],
        )
        .await
        .expect("fetch");
    let reload_wire::storage::KindValues::Decoded(values) = &got.kinds[0].values else {
        panic!("undecoded: {got:?}")
    };
    assert_eq!(values.len(), 1);
    assert_eq!(values[0].value, value);
}
