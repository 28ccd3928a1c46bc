//! Socket.IO v5 on top of Engine.IO: packets, and what they carry.
//!
//! - `packet`: the JSON parser's packet codec (decoding assembles binary
//!   attachments), the packet types both parsers share.
//! - `msgpack`: the msgpack parser's codec (`socket.io-msgpack-parser`).
//! - `parser`: the server's parser (`socketio.parser`), its session
//!   decoder, frames from either parser made this one's.
//! - `encode`: events and acks as Engine.IO frames, encoded once per emit.
//! - `payload`: arguments and attachments; typed conversion both ways.

pub mod encode;
pub mod msgpack;
pub mod packet;
pub mod parser;
pub mod payload;
