//! Channel names and the permission patterns of SERVICE.md: an exact name,
//! or a prefix ending in `*` (`orders.42.*`); `*` alone is every channel.
//! `user:…` and `role:…` rooms are never channels.

use crate::service::settings::ChannelSettings;

/// Why a channel was refused (the `reason` of a `refused` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No pattern grants it, or it is a user or role room.
    Forbidden,
    /// Not a channel name: empty, too long, with a wildcard, whitespace or a
    /// control character.
    Invalid,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Forbidden => "forbidden",
            Refused::Invalid => "invalid channel",
        }
    }
}

/// Whether `pattern` grants `channel`.
pub fn matches(pattern: &str, channel: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => channel.starts_with(prefix),
        None => pattern == channel,
    }
}

/// Whether `room` is one the service manages itself (never subscribable).
pub fn is_reserved(room: &str) -> bool {
    room.starts_with("user:") || room.starts_with("role:")
}

/// Check that `channel` is a channel name.
pub fn check_name(channel: &str, max_bytes: usize) -> Result<(), Refused> {
    if channel.is_empty()
        || channel.len() > max_bytes
        || channel
            .chars()
            .any(|c| c == '*' || c == '>' || c.is_whitespace() || c.is_control())
    {
        return Err(Refused::Invalid);
    }
    Ok(())
}

/// May a socket whose token grants `granted` subscribe to `channel`?
pub fn may_subscribe(
    settings: &ChannelSettings,
    granted: &[String],
    channel: &str,
) -> Result<(), Refused> {
    check_name(channel, settings.max_name_bytes)?;
    if is_reserved(channel) {
        return Err(Refused::Forbidden);
    }
    let allowed = settings
        .public
        .iter()
        .chain(granted)
        .any(|p| matches(p, channel));
    if allowed {
        Ok(())
    } else {
        Err(Refused::Forbidden)
    }
}

/// May a client publish to `channel` (it must also be subscribed)?
pub fn may_publish(settings: &ChannelSettings, channel: &str) -> bool {
    check_name(channel, settings.max_name_bytes).is_ok()
        && !is_reserved(channel)
        && settings.client_publish.iter().any(|p| matches(p, channel))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(public: &[&str], publish: &[&str]) -> ChannelSettings {
        ChannelSettings {
            public: public.iter().map(|s| s.to_string()).collect(),
            client_publish: publish.iter().map(|s| s.to_string()).collect(),
            max_name_bytes: 20,
            max_per_request: 10,
        }
    }

    #[test]
    fn patterns() {
        assert!(matches("news", "news"));
        assert!(!matches("news", "news.eu"));
        assert!(matches("orders.42.*", "orders.42.shipped"));
        assert!(!matches("orders.42.*", "orders.43.shipped"));
        assert!(matches("*", "anything"));
    }

    #[test]
    fn subscribe_rules() {
        let s = settings(&["news", "alerts.*"], &[]);
        let granted = vec!["orders.42.*".to_string()];
        assert_eq!(may_subscribe(&s, &granted, "news"), Ok(()));
        assert_eq!(may_subscribe(&s, &granted, "alerts.eu"), Ok(()));
        assert_eq!(may_subscribe(&s, &granted, "orders.42.x"), Ok(()));
        assert_eq!(
            may_subscribe(&s, &granted, "orders.43.x"),
            Err(Refused::Forbidden)
        );
        let all = settings(&["*"], &[]);
        assert_eq!(
            may_subscribe(&all, &[], "user:42"),
            Err(Refused::Forbidden),
            "user rooms are never subscribable, whatever grants"
        );
        assert_eq!(
            may_subscribe(&all, &[], "role:admin"),
            Err(Refused::Forbidden)
        );
        for bad in ["", "a*", "a.>", "a b", "x\u{1}", "012345678901234567890"] {
            assert_eq!(
                may_subscribe(&all, &[], bad),
                Err(Refused::Invalid),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn publish_rules() {
        let s = settings(&["*"], &["chat.*"]);
        assert!(may_publish(&s, "chat.lobby"));
        assert!(!may_publish(&s, "news"));
        assert!(!may_publish(&settings(&[], &["*"]), "user:1"));
    }
}
