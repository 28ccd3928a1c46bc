//! The node: the actors that hold Socket.IO state, and the state they share.
//!
//! - `connection`: the Socket.IO state of one Engine.IO session (its
//!   namespaces' sockets, their rooms and pending acks), running inside the
//!   session actor; `socket` is the handle to one of its sockets.
//! - `interest`: the one owner of record of who is interested in what
//!   (room members, a namespace's sockets, a user's sockets, and through
//!   its hook the node's cluster interest).
//! - `room`, `user`: one actor per room (and per namespace) and per
//!   authenticated user, each with a working copy of its members.
//! - `supervisor`: how those actors and the handler actors survive panics.
//! - `dispatch`, `namespace`: what connections tell a namespace's handler
//!   actor, and what a namespace is to the node (middleware, handler starter).
//! - `fanout`: emits to many sockets, on this node and across the cluster;
//!   `remote`: what other nodes ask of this one.
//! - `recovery`: connection state recovery: each namespace's log of stored
//!   events, and the sockets connected or parked under a private session id;
//! - `shared`: the node's namespaces, registries and cluster handle;
//!   `metrics`, `limits`: its figures and the per-socket event budget;
//!   `probe`: the actors' mailbox delay, sampled every second;
//!   `observer`: the hook that lets the admin UI watch every socket.

pub mod connection;
pub mod delivery;
pub mod dispatch;
pub mod fanout;
pub mod interest;
pub mod limits;
pub(crate) mod members;
pub mod metrics;
pub mod namespace;
pub mod observer;
pub mod probe;
pub mod recovery;
pub mod remote;
pub mod room;
pub mod shared;
pub mod socket;
pub mod supervisor;
pub mod user;
pub mod vec_map;
