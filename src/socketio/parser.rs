//! Which wire format a server speaks (`socketio.parser`): the default JSON
//! text packets with binary attachments in messages of their own
//! (`socket.io-parser`), or one MessagePack binary message per packet
//! (`socket.io-msgpack-parser`). Everything above this layer handles the
//! same [`Packet`]s and [`Payload`](super::payload::Payload)s either way.

use bytes::Bytes;

use super::encode::{encode_packet, Encoded};
use super::msgpack;
use super::packet::{DecodeError, Decoder as JsonDecoder, Packet};
use crate::engineio::{Frame, FrameRef};

/// A server's packet format, set for the whole server (every client of a
/// server uses the same parser, as with the reference's `parser` option).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum Parser {
    /// `socket.io-parser`, the clients' default.
    #[default]
    Json,
    /// `socket.io-msgpack-parser` (npm), python-socketio's
    /// `serializer="msgpack"`.
    Msgpack,
}

named_enum!(Parser, "parser", {
    Json => "json",
    Msgpack => "msgpack",
});

impl Parser {
    /// The decoder of one session's packets.
    pub fn decoder(self, max_attachments: usize) -> Decoder {
        match self {
            Parser::Json => Decoder::Json(JsonDecoder::new(max_attachments)),
            Parser::Msgpack => Decoder::Msgpack { max_attachments },
        }
    }

    /// The parser whose encoding `frames` are: the JSON parser's start
    /// with a text message, the msgpack parser's are one binary message.
    pub fn of(frames: &[Frame]) -> Option<Parser> {
        match frames {
            [first, ..] if first.as_str().is_some() => Some(Parser::Json),
            [_] => Some(Parser::Msgpack),
            _ => None,
        }
    }

    /// `frames` (encoded by this node or another, by either parser) in
    /// this parser's encoding: as they are when they already are (a
    /// cluster whose nodes agree, the usual case, pays nothing), decoded
    /// and encoded again otherwise. `None` if they do not decode.
    pub fn adopt(self, frames: Encoded) -> Option<Encoded> {
        let from = Parser::of(&frames)?;
        if from == self {
            return Some(frames);
        }
        Some(encode_packet(self, &decode_frames(&frames)?))
    }
}

/// The packet encoded frames carry, whichever parser encoded them.
pub fn decode_frames(frames: &[Frame]) -> Option<Packet> {
    match Parser::of(frames)? {
        Parser::Json => {
            // Every attachment is there already: the count cannot exceed it.
            let mut d = JsonDecoder::new(frames.len() - 1);
            // The text is an Engine.IO message: `4`, then the packet.
            let text = frames[0].as_str()?.strip_prefix('4')?;
            let mut packet = d.decode_text(text).ok()?;
            for f in &frames[1..] {
                let FrameRef::Binary(b) = f.view() else {
                    return None;
                };
                packet = d.decode_binary(Bytes::copy_from_slice(b)).ok()?;
            }
            packet
        }
        Parser::Msgpack => {
            let FrameRef::Binary(b) = frames[0].view() else {
                return None;
            };
            msgpack::decode(&Bytes::copy_from_slice(b), usize::MAX).ok()
        }
    }
}

/// One session's packet decoder, for the server's parser.
#[derive(Debug)]
pub enum Decoder {
    /// Stateful: a binary packet's attachments follow its text.
    Json(JsonDecoder),
    /// Each message is a whole packet.
    Msgpack { max_attachments: usize },
}

impl Decoder {
    /// A text Engine.IO message. `Ok(None)`: a packet awaits attachments.
    pub fn decode_text(&mut self, s: &str) -> Result<Option<Packet>, DecodeError> {
        match self {
            Decoder::Json(d) => d.decode_text(s),
            // Most likely a client left on the default parser.
            Decoder::Msgpack { .. } => Err(DecodeError::TextOnMsgpack),
        }
    }

    /// A binary Engine.IO message.
    pub fn decode_binary(&mut self, b: Bytes) -> Result<Option<Packet>, DecodeError> {
        match self {
            Decoder::Json(d) => d.decode_binary(b),
            Decoder::Msgpack { max_attachments } => msgpack::decode(&b, *max_attachments).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socketio::encode::{encode_event, with_last_arg};
    use crate::socketio::packet::placeholder;
    use crate::socketio::payload::Payload;
    use serde_json::json;

    fn binary_payload() -> Payload {
        let mut p = Payload::new(vec![json!("a")]);
        let ph = p.attach(Bytes::from_static(&[1, 2]));
        p.args.push(json!({ "file": ph }));
        p
    }

    #[test]
    fn frames_say_which_parser_made_them() {
        let p = binary_payload();
        let json = encode_event(Parser::Json, "/", "ev", &p, None).unwrap();
        let mp = encode_event(Parser::Msgpack, "/", "ev", &p, None).unwrap();
        assert_eq!(json.len(), 2, "text + one attachment");
        assert_eq!(mp.len(), 1, "one binary message");
        assert_eq!(Parser::of(&json), Some(Parser::Json));
        assert_eq!(Parser::of(&mp), Some(Parser::Msgpack));
        assert_eq!(Parser::of(&[]), None);
        assert_eq!(decode_frames(&json), decode_frames(&mp));
        let expected = Packet::binary_event(
            "/",
            "ev",
            vec![json!("a"), json!({ "file": placeholder(0) })],
            vec![Bytes::from_static(&[1, 2])],
        );
        assert_eq!(decode_frames(&mp), Some(expected));
    }

    #[test]
    fn adopting_keeps_frames_of_the_same_parser_and_transcodes_others() {
        let p = binary_payload();
        for (from, to) in [
            (Parser::Json, Parser::Msgpack),
            (Parser::Msgpack, Parser::Json),
        ] {
            let frames = encode_event(from, "/ns", "ev", &p, Some(4)).unwrap();
            let same = from.adopt(frames.clone()).unwrap();
            assert!(std::sync::Arc::ptr_eq(&same, &frames), "untouched");
            let other = to.adopt(frames).unwrap();
            assert_eq!(other, encode_event(to, "/ns", "ev", &p, Some(4)).unwrap());
        }
        let garbage: Encoded = vec![Frame::message("2not json")].into();
        assert_eq!(Parser::Msgpack.adopt(garbage), None);
    }

    #[test]
    fn a_last_argument_is_added_in_either_encoding() {
        for parser in [Parser::Json, Parser::Msgpack] {
            let frames = encode_event(parser, "/", "ev", &binary_payload(), None).unwrap();
            let with = with_last_arg(&frames, "0000abcd-1").unwrap();
            let mut p = binary_payload();
            p.args.push(json!("0000abcd-1"));
            assert_eq!(
                with,
                encode_event(parser, "/", "ev", &p, None).unwrap(),
                "{parser}"
            );
            let empty = encode_event(parser, "/", "ev", &Payload::default(), None).unwrap();
            assert_eq!(
                decode_frames(&with_last_arg(&empty, "o").unwrap()),
                Some(Packet::event("/", "ev", vec![json!("o")]))
            );
        }
    }

    #[test]
    fn a_msgpack_session_refuses_text() {
        let mut d = Parser::Msgpack.decoder(10);
        assert_eq!(d.decode_text("40"), Err(DecodeError::TextOnMsgpack));
        let frames = encode_event(Parser::Msgpack, "/", "ev", &Payload::default(), None).unwrap();
        let FrameRef::Binary(b) = frames[0].view() else {
            panic!("binary")
        };
        assert_eq!(
            d.decode_binary(Bytes::copy_from_slice(b)),
            Ok(Some(Packet::event("/", "ev", vec![])))
        );
        assert_eq!("MsgPack".parse::<Parser>(), Ok(Parser::Msgpack));
        assert!("protobuf".parse::<Parser>().is_err());
    }
}
