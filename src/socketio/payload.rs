//! What an event or an ack carries: JSON arguments and binary attachments,
//! and the one way a payload is written for another node and read back.

use bytes::Bytes;
use serde_json::Value;

/// The arguments of an event or ack: JSON values, with binary attachments
/// referenced from them by `{"_placeholder": true, "num": i}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payload {
    pub args: Vec<Value>,
    pub binary: Vec<Bytes>,
}

impl Payload {
    pub fn new(args: Vec<Value>) -> Payload {
        Payload {
            args,
            binary: Vec::new(),
        }
    }

    /// Adds a binary attachment and returns the placeholder to put where the
    /// bytes belong (as an argument, or nested in one).
    pub fn attach(&mut self, bytes: impl Into<Bytes>) -> Value {
        let num = self.binary.len();
        self.binary.push(bytes.into());
        serde_json::json!({"_placeholder": true, "num": num})
    }
}

impl From<Vec<Value>> for Payload {
    fn from(args: Vec<Value>) -> Payload {
        Payload::new(args)
    }
}

impl From<Value> for Payload {
    /// One argument.
    fn from(v: Value) -> Payload {
        Payload::new(vec![v])
    }
}

impl From<()> for Payload {
    fn from(_: ()) -> Payload {
        Payload::default()
    }
}

/// Ack arguments from another node (a JSON array text).
pub fn payload_from_json(args: &str) -> Payload {
    match serde_json::from_str(args) {
        Ok(Value::Array(args)) => Payload::new(args),
        Ok(other) => Payload::new(vec![other]),
        Err(_) => Payload::default(),
    }
}

/// Ack arguments for another node: JSON only.
pub fn payload_to_json(payload: &Payload) -> String {
    Value::Array(payload.args.clone()).to_string()
}

/// A payload as it crosses nodes: its arguments as a JSON array text and
/// its attachments.
pub fn payload_to_wire(payload: &Payload) -> (String, Vec<Vec<u8>>) {
    (
        payload_to_json(payload),
        payload.binary.iter().map(|b| b.to_vec()).collect(),
    )
}

/// [`payload_to_wire`] undone.
pub fn payload_from_wire(args_json: &str, binary: Vec<Vec<u8>>) -> Payload {
    let mut payload = payload_from_json(args_json);
    payload.binary = binary.into_iter().map(Into::into).collect();
    payload
}

/// What an emit or an ack reply takes as its arguments: a [`Payload`] as it
/// is (several arguments, binary attachments), `()` for none, or any
/// `Serialize` value as one argument.
///
/// ```
/// use riptide::{IntoArgs, Payload};
/// #[derive(serde::Serialize)]
/// struct Said { from: String, text: String }
///
/// let p = Said { from: "ann".into(), text: "hi".into() }.into_args().unwrap();
/// assert_eq!(p.args, vec![serde_json::json!({"from": "ann", "text": "hi"})]);
/// assert!(().into_args().unwrap().args.is_empty());
/// ```
pub trait IntoArgs {
    /// Fails only when `Serialize` does (a map with non-string keys, say).
    fn into_args(self) -> Result<Payload, serde_json::Error>;
}

impl IntoArgs for Payload {
    fn into_args(self) -> Result<Payload, serde_json::Error> {
        Ok(self)
    }
}

impl<T: serde::Serialize + 'static> IntoArgs for T {
    fn into_args(self) -> Result<Payload, serde_json::Error> {
        // `()` means "no argument", as an empty `emit("x")` in JavaScript,
        // not one `null`.
        if std::any::TypeId::of::<T>() == std::any::TypeId::of::<()>() {
            return Ok(Payload::default());
        }
        Ok(Payload::new(vec![serde_json::to_value(self)?]))
    }
}

/// Several arguments from one `Serialize` value: a tuple (or anything that
/// serializes to an array) is spread into one argument per element, as
/// `emit("move", x, y)` in JavaScript; anything else is one argument.
///
/// ```
/// use riptide::{Args, IntoArgs};
///
/// let p = Args((3, "north")).into_args().unwrap();
/// assert_eq!(p.args, vec![serde_json::json!(3), serde_json::json!("north")]);
/// // Without `Args`, a tuple is one argument: an array.
/// assert_eq!((3, "north").into_args().unwrap().args.len(), 1);
/// ```
pub struct Args<T>(pub T);

impl<T: serde::Serialize> IntoArgs for Args<T> {
    fn into_args(self) -> Result<Payload, serde_json::Error> {
        Ok(match serde_json::to_value(self.0)? {
            serde_json::Value::Array(args) => Payload::new(args),
            one => Payload::new(vec![one]),
        })
    }
}

/// Arguments that did not have the shape a listener asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid arguments: {0}")]
pub struct ArgsError(pub String);

impl Payload {
    /// The arguments as a `T`: a single argument as itself, none as `null`
    /// (so `Option<_>` and `()` accept an empty event), several as an array
    /// (take them as a tuple: `(String, u32)`). Binary attachments stay
    /// placeholders here; read them from [`Payload::binary`].
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, ArgsError> {
        let value = match self.args.as_slice() {
            [] => Value::Null,
            [one] => return T::deserialize(one).map_err(|e| ArgsError(e.to_string())),
            many => Value::Array(many.to_vec()),
        };
        T::deserialize(value).map_err(|e| ArgsError(e.to_string()))
    }
}
