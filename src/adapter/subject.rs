//! The one place that maps a [`Topic`] to a NATS subject or a Redis channel
//! (the same string serves both):
//!
//! | topic | subject |
//! | --- | --- |
//! | `Namespace { ns }` | `<prefix>.ns.<token(ns)>` |
//! | `Room { ns, room }` | `<prefix>.room.<token(ns)>.<token(room)>` |
//! | `Node(id)` | `<prefix>.node.<id>` |
//! | `Nodes` | `<prefix>.nodes` |
//!
//! Namespace and room names are client-chosen strings of any characters, so
//! [`token`] escapes them: bytes of `[A-Za-z0-9_-]` stay as they are (room
//! names stay readable in the NATS monitor), every other byte becomes `%HH`
//! (uppercase hex), and the empty string becomes `=` (which no escaped name
//! can be, `=` itself being escaped). That is injective and yields only
//! characters NATS allows in a token: no `.`, `*`, `>`, whitespace or
//! control character, printable ASCII only.
//!
//! A NATS subject is bounded by the server's control line (4 KiB by
//! default; a longer one makes the server close the connection), and a room
//! name is client input of any length. So an escaped token longer than
//! [`MAX_TOKEN_LEN`] is replaced by `~` and the SHA-256 of the name (first 16
//! bytes, hex): `~` is escaped in short tokens, so hashed and escaped tokens
//! never meet, and two hashed tokens meet only on a 128-bit collision. Even
//! then nothing is misdelivered: receivers match the room names carried in
//! the envelope, a collision only costs traffic.
//!
//! The prefix is validated by the configuration (`[A-Za-z0-9_-]+`), and a
//! [`NodeId`](super::NodeId) is `[a-z0-9]{12}`: both are valid tokens as is.

use std::fmt::Write;

use super::Topic;

/// Longest token kept readable; longer names are hashed (see the module doc).
pub const MAX_TOKEN_LEN: usize = 128;

/// The subject (NATS) or channel (Redis) of `topic` under `prefix`.
pub fn subject(prefix: &str, topic: &Topic) -> String {
    match topic {
        Topic::Namespace { ns } => format!("{prefix}.ns.{}", token(ns)),
        Topic::Room { ns, room } => format!("{prefix}.room.{}.{}", token(ns), token(room)),
        Topic::Node(id) => format!("{prefix}.node.{id}"),
        Topic::Nodes => format!("{prefix}.nodes"),
    }
}

fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// A name as one subject token: injective, and valid in a NATS token.
pub fn token(name: &str) -> String {
    if name.is_empty() {
        return "=".to_owned();
    }
    let escaped_len: usize = name.bytes().map(|b| if is_plain(b) { 1 } else { 3 }).sum();
    if escaped_len > MAX_TOKEN_LEN {
        return hashed(name);
    }
    let mut out = String::with_capacity(escaped_len);
    for b in name.bytes() {
        if is_plain(b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn hashed(name: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(name.as_bytes());
    let mut out = String::with_capacity(33);
    out.push('~');
    for b in &digest[..16] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// True if `token` is a valid literal NATS subject token: non-empty,
/// printable ASCII, no `.`, and not a wildcard.
#[cfg(any(test, feature = "internals"))]
pub fn is_valid_token(token: &str) -> bool {
    !token.is_empty()
        && token != "*"
        && token != ">"
        && token.bytes().all(|b| b.is_ascii_graphic() && b != b'.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::NodeId;

    #[test]
    fn subjects() {
        assert_eq!(subject("rt", &Topic::namespace("/")), "rt.ns.%2F");
        assert_eq!(
            subject("rt", &Topic::room("/chat", "lobby")),
            "rt.room.%2Fchat.lobby"
        );
        assert_eq!(subject("rt", &Topic::Nodes), "rt.nodes");
        let id: NodeId = "abcdefghij12".parse().unwrap();
        assert_eq!(subject("rt", &Topic::Node(id)), "rt.node.abcdefghij12");
    }

    #[test]
    fn tokens() {
        assert_eq!(token(""), "=");
        assert_eq!(token("="), "%3D");
        assert_eq!(token("a.b"), "a%2Eb");
        assert_eq!(token("*"), "%2A");
        assert_eq!(token(">"), "%3E");
        assert_eq!(token("a b\t"), "a%20b%09");
        assert_eq!(token("%"), "%25");
        assert_eq!(token("é"), "%C3%A9");
        assert_eq!(token("Room_1-x"), "Room_1-x");
        let long = "x".repeat(MAX_TOKEN_LEN + 1);
        let t = token(&long);
        assert!(t.starts_with('~') && t.len() == 33, "{t}");
        assert_eq!(token(&"x".repeat(MAX_TOKEN_LEN)), "x".repeat(MAX_TOKEN_LEN));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn name() -> impl Strategy<Value = String> {
            prop_oneof![
                ".{0,12}",
                "[a-z.%=~*> ]{0,8}",
                any::<String>(),
                "[a-z]{100,200}",
                ".{40,80}",
            ]
        }

        proptest! {
            #[test]
            fn tokens_are_valid(n in name()) {
                let t = token(&n);
                prop_assert!(is_valid_token(&t), "{:?} -> {:?}", n, t);
                prop_assert!(t.len() <= MAX_TOKEN_LEN);
            }

            #[test]
            fn tokens_are_injective(a in name(), b in name()) {
                prop_assume!(a != b);
                prop_assert_ne!(token(&a), token(&b));
            }

            #[test]
            fn room_subjects_are_injective(
                (n1, r1) in (name(), name()),
                (n2, r2) in (name(), name()),
            ) {
                prop_assume!((&n1, &r1) != (&n2, &r2));
                prop_assert_ne!(
                    subject("p", &Topic::room(n1, r1)),
                    subject("p", &Topic::room(n2, r2))
                );
            }
        }
    }
}
