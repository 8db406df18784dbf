//! The echo usage: answers `exp_a_req` (the experimental message code 0x23, RFC 6940
//! §14.8) with an `exp_a_ans` carrying the request's body, prefixed by the signer's user
//! name and a newline — so that a test sees both that the request went through the usage
//! seam and that the usage got the signer's verified certificate. A test and debugging
//! aid: experimental codes are never meant for production overlays.

use reload_node::client::{ClientError, NodeHandle};
use reload_wire::body::MessageBody;
use reload_wire::message::{ErrorCode, ErrorResponse, MessageCode};

pub const NAME: &str = "echo";
pub const ABOUT: &str = "answers exp_a_req (RFC 6940 §14.8 experimental code) with the signer's user name and the request body";

/// The largest body echoed (a request larger than this is refused with
/// Error_Data_Too_Large).
pub const MAX_ECHO: usize = 4096;

/// The answer to one request body from a signer with user name `user`.
pub fn answer(user: Option<&str>, body: &MessageBody) -> Result<MessageBody, ErrorResponse> {
    let MessageBody::Unknown { code, body } = body else {
        return Err(ErrorResponse::new(
            ErrorCode::INVALID_MESSAGE,
            "not exp_a_req",
        ));
    };
    if *code != MessageCode::EXP_A_REQ {
        return Err(ErrorResponse::new(
            ErrorCode::INVALID_MESSAGE,
            "not exp_a_req",
        ));
    }
    if body.len() > MAX_ECHO {
        return Err(ErrorResponse::new(
            ErrorCode::DATA_TOO_LARGE,
            format!("the echo usage echoes at most {MAX_ECHO} bytes"),
        ));
    }
    let mut out = user.unwrap_or("").as_bytes().to_vec();
    out.push(b'\n');
    out.extend_from_slice(body);
    Ok(MessageBody::Unknown {
        code: MessageCode::EXP_A_ANS,
        body: out.into(),
    })
}

/// Serves `exp_a_req` on the node until it stops.
pub async fn start(node: &NodeHandle) -> Result<tokio::task::JoinHandle<()>, ClientError> {
    let mut requests = node.serve(&[MessageCode::EXP_A_REQ]).await?;
    Ok(tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            let user = request.signer().cert.user_name.clone();
            let reply = answer(user.as_deref(), request.body());
            tracing::debug!(from = %request.signer().node_id, "echo");
            request.answer(reply).await;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_with_the_user_name_and_refuses_the_rest() {
        let req = MessageBody::Unknown {
            code: MessageCode::EXP_A_REQ,
            body: bytes::Bytes::from_static(b"hi"),
        };
        assert_eq!(
            answer(Some("alice@example.org"), &req),
            Ok(MessageBody::Unknown {
                code: MessageCode::EXP_A_ANS,
                body: bytes::Bytes::from_static(b"alice@example.org\nhi"),
            })
        );
        let big = MessageBody::Unknown {
            code: MessageCode::EXP_A_REQ,
            body: vec![0; MAX_ECHO + 1].into(),
        };
        assert_eq!(
            answer(None, &big).unwrap_err().error_code,
            ErrorCode::DATA_TOO_LARGE
        );
        let other = MessageBody::Unknown {
            code: MessageCode::EXP_B_REQ,
            body: bytes::Bytes::new(),
        };
        assert!(answer(None, &other).is_err());
    }
}
