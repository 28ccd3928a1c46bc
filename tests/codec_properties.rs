//! Property tests for the Engine.IO and Socket.IO codecs (both parsers):
//! hostile input never panics, and everything we encode decodes back to the
//! same packet.

use bytes::Bytes;
use proptest::prelude::*;
use riptide::engineio::packet as eio;
use riptide::socketio::msgpack;
use riptide::socketio::packet as sio;
use serde_json::Value;

const MAX_ATTACHMENTS: usize = 8;

// ---------- strategies ----------

/// Floats are multiples of 1/8 so their decimal form parses back exactly
/// (serde_json's default float parsing is not guaranteed to round-trip).
/// Keys are too short to spell "_placeholder", so no stray placeholders.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-10_000i32..10_000).prop_map(|n| Value::from(f64::from(n) / 8.0)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{0,6}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-z]{0,6}", arb_json(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// Any namespace the decoder can produce: "/" or '/' followed by anything but ','.
fn arb_ns() -> impl Strategy<Value = String> {
    prop_oneof![Just("/".to_owned()), "/[^,]{0,12}"]
}

fn arb_args() -> impl Strategy<Value = Vec<Value>> {
    prop::collection::vec(arb_json(), 0..4)
}

fn arb_attachments() -> impl Strategy<Value = Vec<Bytes>> {
    prop::collection::vec(
        prop::collection::vec(any::<u8>(), 0..32).prop_map(Bytes::from),
        0..=MAX_ATTACHMENTS,
    )
}

/// Args followed by one placeholder per attachment, in a nested spot for the
/// odd ones so the placeholder walk is exercised below the top level.
fn with_placeholders(mut args: Vec<Value>, n: usize) -> Vec<Value> {
    for i in 0..n {
        let ph = sio::placeholder(i);
        args.push(if i % 2 == 1 {
            serde_json::json!({ "bin": [ph] })
        } else {
            ph
        });
    }
    args
}

fn arb_sio_packet() -> impl Strategy<Value = sio::Packet> {
    prop_oneof![
        (arb_ns(), prop::option::of(arb_object())).prop_map(|(ns, d)| sio::Packet::connect(ns, d)),
        arb_ns().prop_map(sio::Packet::disconnect),
        (
            arb_ns(),
            ".{0,10}",
            arb_args(),
            prop::option::of(any::<u64>())
        )
            .prop_map(|(ns, name, args, id)| {
                let p = sio::Packet::event(ns, name, args);
                match id {
                    Some(id) => p.with_ack_id(id),
                    None => p,
                }
            }),
        (arb_ns(), any::<u64>(), arb_args())
            .prop_map(|(ns, id, args)| sio::Packet::ack(ns, id, args)),
        (arb_ns(), ".{0,10}", prop::option::of(arb_json()))
            .prop_map(|(ns, msg, d)| sio::Packet::connect_error(ns, msg, d)),
        (arb_ns(), ".{0,10}").prop_map(|(ns, msg)| sio::Packet {
            ns,
            data: sio::PacketData::ConnectError(Value::String(msg)),
        }),
        (
            arb_ns(),
            ".{0,10}",
            arb_args(),
            prop::option::of(any::<u64>()),
            arb_attachments()
        )
            .prop_map(|(ns, name, args, id, atts)| {
                let args = with_placeholders(args, atts.len());
                let p = sio::Packet::binary_event(ns, name, args, atts);
                match id {
                    Some(id) => p.with_ack_id(id),
                    None => p,
                }
            }),
        (arb_ns(), any::<u64>(), arb_args(), arb_attachments()).prop_map(|(ns, id, args, atts)| {
            let args = with_placeholders(args, atts.len());
            sio::Packet::binary_ack(ns, id, args, atts)
        }),
    ]
}

/// Strings shaped like Socket.IO packets, so fuzzing reaches past the type byte
/// and into every validation rule.
fn sio_like_text() -> impl Strategy<Value = String> {
    let ty = prop_oneof![9 => "[0-6]", 1 => "[7-9x/]"];
    let att = prop::option::of(prop_oneof![3 => "[0-3]-", 1 => "[0-9]{0,22}-?"]);
    let ns = prop::option::of(prop_oneof!["/[a-z]{0,4},", "/[a-z,]{0,4}"]);
    let id = prop::option::of(prop_oneof![3 => "[0-9]{1,3}", 1 => "[0-9]{0,22}"]);
    let tail = prop_oneof![
        arb_args().prop_map(|a| {
            let mut v = vec![Value::from("ev")];
            v.extend(a);
            Value::Array(v).to_string()
        }),
        arb_json().prop_map(|v| v.to_string()),
        r#"[\[\]{}",:0-9a-z_\-/ ]{0,24}"#,
        Just(r#"[{"_placeholder":true,"num":0}]"#.to_owned()),
        Just(r#"["e",{"_placeholder":true,"num":1}]"#.to_owned()),
        Just(r#"["e",{"_placeholder":true,"num":0},[{"_placeholder":true,"num":2}]]"#.to_owned()),
        Just(String::new()),
    ];
    (ty, att, ns, id, tail).prop_map(|(t, att, ns, id, tail)| {
        let mut s = t;
        for part in [att, ns, id].into_iter().flatten() {
            s.push_str(&part);
        }
        s.push_str(&tail);
        s
    })
}

#[derive(Debug, Clone)]
enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        3 => sio_like_text().prop_map(Frame::Text),
        1 => ".{0,40}".prop_map(Frame::Text),
        3 => prop::collection::vec(any::<u8>(), 0..16).prop_map(Frame::Binary),
    ]
}

/// Engine.IO packets whose text never holds the record separator, as is true
/// of everything the Socket.IO layer emits (JSON escapes control characters).
fn arb_eio_packet() -> impl Strategy<Value = eio::Packet> {
    let text = "[^\x1e]{0,24}";
    prop_oneof![
        text.prop_map(eio::Packet::Open),
        Just(eio::Packet::Close),
        text.prop_map(eio::Packet::Ping),
        text.prop_map(eio::Packet::Pong),
        text.prop_map(eio::Packet::Message),
        prop::collection::vec(any::<u8>(), 0..48).prop_map(|b| eio::Packet::Binary(Bytes::from(b))),
        Just(eio::Packet::Upgrade),
        Just(eio::Packet::Noop),
    ]
}

/// Feeds an encoded packet to a fresh decoder the way a transport would.
fn decode_sio(text: &str, attachments: &[Bytes]) -> Result<Option<sio::Packet>, sio::DecodeError> {
    let mut d = sio::Decoder::new(MAX_ATTACHMENTS);
    let mut out = d.decode_text(text)?;
    for (i, a) in attachments.iter().enumerate() {
        assert!(out.is_none(), "packet completed before attachment {i}");
        assert!(d.is_waiting());
        out = d.decode_binary(a.clone())?;
    }
    assert!(!d.is_waiting());
    Ok(out)
}

// ---------- properties ----------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn eio_decode_never_panics(s in ".{0,64}", body in "[0-6b\x1e A-Za-z0-9+/=é]{0,64}") {
        let _ = eio::Packet::decode_text(&s);
        let _ = eio::decode_payload(&s, 4);
        let _ = eio::Packet::decode_text(&body);
        let _ = eio::decode_payload(&body, 4);
    }

    #[test]
    fn eio_decode_never_panics_on_bytes(b in prop::collection::vec(any::<u8>(), 0..64)) {
        let s = String::from_utf8_lossy(&b);
        let _ = eio::Packet::decode_text(&s);
        let _ = eio::decode_payload(&s, 4);
        let bytes = Bytes::from(b);
        prop_assert_eq!(eio::Packet::decode_ws_binary(bytes.clone()), eio::Packet::Binary(bytes));
    }

    #[test]
    fn eio_packet_round_trip(p in arb_eio_packet()) {
        let text = p.to_text();
        prop_assert_eq!(text.len(), p.encoded_text_len());
        prop_assert_eq!(eio::Packet::decode_text(&text), Ok(p.clone()));
        // Over WebSocket a binary packet travels raw (a binary frame), every
        // other packet as its text form.
        match &p {
            eio::Packet::Binary(b) => prop_assert_eq!(eio::Packet::decode_ws_binary(b.clone()), p),
            _ => prop_assert_eq!(eio::Packet::decode_text(&text), Ok(p)),
        }
    }

    #[test]
    fn eio_payload_round_trip(packets in prop::collection::vec(arb_eio_packet(), 1..12)) {
        let body = eio::encode_payload(&packets);
        prop_assert_eq!(eio::decode_payload(&body, packets.len()), Ok(packets.clone()));
        if packets.len() > 1 {
            prop_assert_eq!(
                eio::decode_payload(&body, packets.len() - 1),
                Err(eio::DecodeError::TooManyPackets(packets.len() - 1))
            );
        }
    }

    #[test]
    fn eio_v3_decode_never_panics(
        s in ".{0,64}",
        body in "[0-9:b4 A-Za-z+/=é😀]{0,64}",
        b in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        use eio::Protocol::V3;
        for text in [&s, &body] {
            let _ = eio::Packet::decode_text_in(text, V3);
            let _ = eio::decode_payload_v3(text, 4);
        }
        let bytes = Bytes::from(b);
        let _ = eio::Packet::decode_binary_in(bytes.clone(), V3);
        let _ = eio::decode_payload_v3_binary(&bytes, 4);
    }

    /// What a v3 session's poll body carries decodes back to the same
    /// packets, in both framings, whatever the text (a length prefix, not a
    /// separator, bounds each record).
    #[test]
    fn eio_v3_poll_body_round_trip(
        packets in prop::collection::vec(
            prop_oneof![
                ".{0,24}".prop_map(eio::Packet::Message),
                ".{0,24}".prop_map(eio::Packet::Open),
                Just(eio::Packet::Pong(String::new())),
                Just(eio::Packet::Noop),
                prop::collection::vec(any::<u8>(), 0..48)
                    .prop_map(|b| eio::Packet::Binary(Bytes::from(b))),
            ],
            1..12,
        )
    ) {
        use riptide::engineio::session::{encode_poll_body, Frame as EFrame, PollBody, PollFraming};
        let frames: Vec<EFrame> = packets
            .iter()
            .map(|p| match p {
                eio::Packet::Binary(b) => EFrame::binary(b),
                p => EFrame::text(&p.to_text()),
            })
            .collect();
        for framing in [PollFraming::V3Text, PollFraming::V3Binary] {
            let decoded = match encode_poll_body(&mut frames.clone(), framing) {
                PollBody::Text(t) => eio::decode_payload_v3(&t, packets.len()),
                PollBody::Binary(b) => {
                    eio::decode_payload_v3_binary(&Bytes::from(b), packets.len())
                }
            };
            prop_assert_eq!(decoded, Ok(packets.clone()));
        }
    }

    #[test]
    fn sio_decode_never_panics_on_strings(s in ".{0,64}", t in sio_like_text()) {
        for input in [&s, &t] {
            let mut d = sio::Decoder::new(MAX_ATTACHMENTS);
            match d.decode_text(input) {
                Ok(None) => prop_assert!(d.is_waiting()),
                Ok(Some(_)) | Err(_) => prop_assert!(!d.is_waiting()),
            }
        }
    }

    #[test]
    fn sio_decoder_state_machine_never_panics(frames in prop::collection::vec(arb_frame(), 0..16)) {
        let mut d = sio::Decoder::new(MAX_ATTACHMENTS);
        for f in frames {
            let was_waiting = d.is_waiting();
            let r = match f {
                Frame::Text(s) => {
                    let r = d.decode_text(&s);
                    if was_waiting {
                        prop_assert_eq!(&r, &Err(sio::DecodeError::UnexpectedText));
                    }
                    r
                }
                Frame::Binary(b) => {
                    let r = d.decode_binary(Bytes::from(b));
                    if !was_waiting {
                        prop_assert_eq!(&r, &Err(sio::DecodeError::UnexpectedBinary));
                    }
                    r
                }
            };
            match r {
                Ok(None) => prop_assert!(d.is_waiting()),
                Ok(Some(p)) => {
                    prop_assert!(!d.is_waiting());
                    // Whatever we accept must satisfy the validation rules,
                    // which the encoder's output would then satisfy again.
                    let (text, atts) = p.encode();
                    prop_assert_eq!(decode_sio(&text, &atts), Ok(Some(p)));
                }
                Err(_) => prop_assert!(!d.is_waiting()),
            }
        }
    }

    #[test]
    fn sio_round_trip(p in arb_sio_packet()) {
        let (text, atts) = p.encode();
        prop_assert_eq!(&atts[..], p.attachments());
        let mut buf = String::from("4");
        p.encode_into(&mut buf);
        prop_assert_eq!(&buf[1..], text.as_str());
        prop_assert_eq!(decode_sio(&text, &atts), Ok(Some(p)));
    }

    /// The full stack: Socket.IO packets inside Engine.IO messages inside a
    /// polling body, binary attachments base64-encoded.
    #[test]
    fn sio_over_polling_round_trip(packets in prop::collection::vec(arb_sio_packet(), 1..5)) {
        let mut eio_packets = Vec::new();
        for p in &packets {
            let (text, atts) = p.encode();
            // Only a raw namespace can hold the separator; no real one does.
            prop_assume!(!text.contains(eio::RECORD_SEPARATOR));
            eio_packets.push(eio::Packet::Message(text));
            eio_packets.extend(atts.into_iter().map(eio::Packet::Binary));
        }
        let body = eio::encode_payload(&eio_packets);
        let decoded = eio::decode_payload(&body, eio_packets.len()).unwrap();
        let mut d = sio::Decoder::new(MAX_ATTACHMENTS);
        let mut out = Vec::new();
        for e in decoded {
            let r = match e {
                eio::Packet::Message(s) => d.decode_text(&s),
                eio::Packet::Binary(b) => d.decode_binary(b),
                other => panic!("unexpected {other:?}"),
            };
            out.extend(r.unwrap());
        }
        prop_assert_eq!(out, packets);
    }

    /// The msgpack parser: any bytes, and any damage to a real packet (a
    /// byte changed, the message cut short), are an error or a packet, never
    /// a panic.
    #[test]
    fn msgpack_decode_never_panics(
        b in prop::collection::vec(any::<u8>(), 0..96),
        p in arb_sio_packet(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let _ = msgpack::decode(&Bytes::from(b), MAX_ATTACHMENTS);
        let wire = msgpack::encode(&p);
        let i = at.index(wire.len());
        let mut changed = wire.clone();
        changed[i] = byte;
        let _ = msgpack::decode(&Bytes::from(changed), MAX_ATTACHMENTS);
        let _ = msgpack::decode(&Bytes::copy_from_slice(&wire[..i]), MAX_ATTACHMENTS);
    }

    /// What the msgpack parser encodes decodes to the packet the JSON parser
    /// would give: the same data and attachments (a "binary" packet without
    /// attachments is a plain one, this format has no binary packet types).
    #[test]
    fn msgpack_round_trip(p in arb_sio_packet()) {
        let expected = match p.data.clone() {
            sio::PacketData::BinaryEvent { data, id, attachments } if attachments.is_empty() => {
                sio::Packet { ns: p.ns.clone(), data: sio::PacketData::Event { data, id } }
            }
            sio::PacketData::BinaryAck { data, id, attachments } if attachments.is_empty() => {
                sio::Packet { ns: p.ns.clone(), data: sio::PacketData::Ack { data, id } }
            }
            _ => p.clone(),
        };
        let wire = Bytes::from(msgpack::encode(&p));
        prop_assert_eq!(msgpack::decode(&wire, MAX_ATTACHMENTS), Ok(expected));
    }
}
