//! `[cluster]`: how the nodes of a cluster serve each other's clients.

use serde::Deserialize;

use super::ConfigError;

/// `[cluster]`: how the nodes of a cluster (`adapter.kind` = `nats` or
/// `redis`) serve each other's clients.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// A request for a session another node owns is forwarded to it over
    /// HTTP, so the load balancer needs no sticky sessions.
    pub forward_polling: bool,
    /// Where the other nodes reach this one (`http://host:port`, plain
    /// HTTP inside the cluster's network); empty:
    /// the address it listens on, which must then not be `0.0.0.0` / `::`.
    pub advertise_url: String,
}

impl ClusterSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let url = &self.advertise_url;
        if url.is_empty() {
            return Ok(());
        }
        // Plain HTTP: nodes talk to each other inside the cluster's network
        // (the forwarding client is built without TLS).
        let rest = url.trim_end_matches('/').strip_prefix("http://");
        match rest {
            Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', ' ']) => Ok(()),
            _ => Err(ConfigError::invalid(
                "cluster.advertise_url",
                format!("{url:?} must be http://host:port, without a path"),
            )),
        }
    }

    /// The address to announce for a node listening on `local` (if known):
    /// the configured one, or `local` itself when it is a concrete address;
    /// `None` when neither is known.
    pub fn advertise(
        &self,
        local: Option<std::net::SocketAddr>,
    ) -> Result<Option<String>, ConfigError> {
        if !self.advertise_url.is_empty() {
            return Ok(Some(self.advertise_url.trim_end_matches('/').to_owned()));
        }
        match local {
            None => Ok(None),
            Some(local) if local.ip().is_unspecified() => Err(ConfigError::invalid(
                "cluster.advertise_url",
                format!(
                    "must be set: the node listens on {local}, which other nodes cannot \
                     reach it at (or set cluster.forward_polling = false)"
                ),
            )),
            Some(local) => Ok(Some(format!("http://{local}"))),
        }
    }
}
