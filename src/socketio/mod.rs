//! Socket.IO v5 packets: encoding, and decoding with binary attachments.

pub mod packet;
