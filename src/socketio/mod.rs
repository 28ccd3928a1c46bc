//! Socket.IO v5 on top of Engine.IO: packets, and what they carry.
//!
//! - `packet`: the packet codec (decoding assembles binary attachments).
//! - `encode`: events and acks as Engine.IO frames, encoded once per emit.
//! - `payload`: arguments and attachments; typed conversion both ways.

pub mod encode;
pub mod packet;
pub mod payload;
