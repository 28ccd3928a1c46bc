//! Why a session ended.

/// Why a session ended; the strings are the reference server's reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed the transport or sent a close packet.
    TransportClose,
    /// The transport failed (I/O error, oversized frame, bad WebSocket frame).
    TransportError,
    /// The client missed a pong.
    PingTimeout,
    /// The client sent a packet that could not be decoded.
    ParseError,
    /// The server closed it (application or slow consumer).
    ForcedClose,
    /// The node is stopping.
    ServerShutdown,
    /// The client never sent CONNECT within `connect_timeout`.
    ConnectTimeout,
    /// The client did not take its messages fast enough (its outbound queue
    /// stayed full past the grace, or went over the byte cap).
    SlowConsumer,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::TransportClose => "transport close",
            CloseReason::TransportError => "transport error",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ParseError => "parse error",
            CloseReason::ForcedClose => "forced close",
            CloseReason::ServerShutdown => "server shutting down",
            CloseReason::ConnectTimeout => "connect timeout",
            CloseReason::SlowConsumer => "slow consumer",
        }
    }

    /// Whether the client should be told with a close packet (it did not
    /// cause the close itself and may still be listening).
    ///
    /// Like the reference server: a close the client or its transport caused
    /// releases a waiting poll with a noop; a close the server decided (ping
    /// timeout, parse error, forced, shutdown) sends the close packet.
    pub(super) fn notify_client(self) -> bool {
        !matches!(
            self,
            CloseReason::TransportClose | CloseReason::TransportError
        )
    }
}
