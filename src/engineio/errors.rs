//! The HTTP errors of the Engine.IO protocol, answered as
//! `{"code": N, "message": "..."}` like the reference server.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("Transport unknown")]
    UnknownTransport,
    #[error("Session ID unknown")]
    UnknownSid,
    #[error("Bad handshake method")]
    BadHandshakeMethod,
    #[error("Bad request")]
    BadRequest,
    #[error("Unsupported protocol version")]
    UnsupportedProtocolVersion,
    /// A polling body over `max_payload`: answered 413 and the session closed.
    #[error("Payload too large")]
    PayloadTooLarge,
    /// The node is at `max_connections`; the client retries with backoff.
    #[error("Server at capacity")]
    ServerFull,
    /// The node is stopping; the client retries (reaching another node, or
    /// this one's successor).
    #[error("Server shutting down")]
    ShuttingDown,
    /// Too many concurrent sessions from the client's address.
    #[error("Too many connections from this address")]
    TooManyConnectionsFromIp,
    /// New sessions from the client's address come too fast.
    #[error("Connection rate limit exceeded")]
    ConnectionRateLimited,
    /// Engine.IO v3 JSONP polling (`j=`), which this server does not serve.
    #[error("JSONP polling is not supported")]
    JsonpUnsupported,
}

impl EngineError {
    /// The protocol's numeric code (the reference server's `Server.errors`).
    pub fn code(self) -> u8 {
        match self {
            EngineError::UnknownTransport => 0,
            EngineError::UnknownSid => 1,
            EngineError::BadHandshakeMethod => 2,
            EngineError::BadRequest | EngineError::JsonpUnsupported => 3,
            EngineError::UnsupportedProtocolVersion => 5,
            EngineError::PayloadTooLarge => 3,
            EngineError::ServerFull | EngineError::ShuttingDown => 4,
            EngineError::TooManyConnectionsFromIp | EngineError::ConnectionRateLimited => 4,
        }
    }

    /// The label under which the error is counted in `riptide_bad_input_total`.
    pub fn metric_kind(self) -> &'static str {
        match self {
            EngineError::UnknownTransport => "unknown_transport",
            EngineError::UnknownSid => "unknown_sid",
            EngineError::BadHandshakeMethod => "bad_handshake_method",
            EngineError::BadRequest => "bad_request",
            EngineError::UnsupportedProtocolVersion => "unsupported_protocol_version",
            EngineError::PayloadTooLarge => "oversized",
            EngineError::ServerFull => "server_full",
            EngineError::ShuttingDown => "shutting_down",
            EngineError::TooManyConnectionsFromIp => "ip_concurrency",
            EngineError::ConnectionRateLimited => "ip_rate",
            EngineError::JsonpUnsupported => "jsonp",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            EngineError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            EngineError::ServerFull | EngineError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::TooManyConnectionsFromIp | EngineError::ConnectionRateLimited => {
                StatusCode::TOO_MANY_REQUESTS
            }
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub fn response(self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status());
        if self == EngineError::ShuttingDown {
            // No keep-alive: the stopping node waits for its connections.
            response.force_close();
        }
        response.json(serde_json::json!({
            "code": self.code(),
            "message": self.to_string(),
        }))
    }
}
