//! Property tests: `decode(encode(x)) == x` for every RFC 6940 structure, and
//! `encoded_len` agrees with what `encode` writes.

mod strategies;

use proptest::prelude::*;
use reload_wire::Wire;
use reload_wire::body::MessageBody;
use reload_wire::header::ForwardingHeader;
use strategies::*;

macro_rules! round_trip_tests {
    ($( $name:ident: $strategy:expr ),* $(,)?) => {
        proptest! {
            $(
                #[test]
                fn $name(x in $strategy) {
                    round_trip(&x);
                }
            )*
        }
    };
}

round_trip_tests! {
    node_id_rt: node_id(),
    resource_id_rt: resource_id(),
    ip_address_port_rt: ip_address_port(),
    destination_rt: destination(),
    forwarding_option_rt: forwarding_option(),
    forwarding_header_rt: forwarding_header(),
    message_extension_rt: message_extension(),
    message_contents_rt: message_contents(),
    error_response_rt: error_response(),
    signer_identity_rt: signer_identity(),
    signature_rt: signature(),
    generic_certificate_rt: generic_certificate(),
    security_block_rt: security_block(),
    message_rt: message(),
    join_req_rt: join_req(),
    leave_req_rt: leave_req(),
    route_query_req_rt: route_query_req(),
    probe_req_rt: probe_req(),
    probe_information_rt: probe_information(),
    probe_ans_rt: probe_ans(),
    ice_extension_rt: ice_extension(),
    ice_candidate_rt: ice_candidate(),
    attach_req_ans_rt: attach_req_ans(),
    app_attach_rt: app_attach(),
    config_update_req_rt: config_update_req(),
    framed_message_rt: framed_message(),
    data_value_rt: data_value(),
    store_kind_data_rt: store_kind_data(),
    store_req_rt: store_req(),
    store_kind_response_rt: store_kind_response(),
    store_ans_rt: store_ans(),
    stored_data_specifier_rt: stored_data_specifier(),
    fetch_req_rt: fetch_req(),
    stat_req_rt: stat_req(),
    fetch_kind_response_rt: fetch_kind_response(),
    fetch_ans_rt: fetch_ans(),
    meta_data_rt: meta_data(),
    stat_kind_response_rt: stat_kind_response(),
    stat_ans_rt: stat_ans(),
    find_req_rt: find_req(),
    find_ans_rt: find_ans(),
    turn_server_rt: turn_server(),
    unknown_kinds_rt: unknown_kinds(),
    chord_update_rt: chord_update(),
    chord_leave_data_rt: chord_leave_data(),
    chord_route_query_ans_rt: chord_route_query_ans(),
    diagnostics_request_rt: diagnostics_request(),
    diagnostics_response_rt: diagnostics_response(),
}

proptest! {
    /// Every typed body survives encode → decode by its message code.
    #[test]
    fn message_body_rt(body in message_body()) {
        let bytes = body.to_bytes().unwrap();
        prop_assert_eq!(bytes.len(), body.encoded_len());
        let back = MessageBody::decode(body.code(), &bytes, &opts()).unwrap();
        prop_assert_eq!(back, body);
    }

    /// A message carrying a typed body decodes back to the same body.
    #[test]
    fn message_with_typed_body_rt(mut m in message(), body in message_body()) {
        m.contents = reload_wire::MessageContents::from_body(&body).unwrap();
        m.header.length = m.encoded_len() as u32;
        round_trip(&m);
        let bytes = m.to_bytes().unwrap();
        let back = reload_wire::Message::decode(&bytes, &opts()).unwrap();
        prop_assert_eq!(back.contents.body(&opts()).unwrap(), body);
    }

    /// `peek` reads exactly the forwarding header and reports where the contents start.
    #[test]
    fn peek_reads_header_only(m in message()) {
        let bytes = m.to_bytes().unwrap();
        let (h, len) = ForwardingHeader::peek(&bytes, &opts()).unwrap();
        prop_assert_eq!(&h, &m.header);
        prop_assert_eq!(len, m.header.encoded_len());
    }
}
