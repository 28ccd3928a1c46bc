//! `named_enum!`: the closed sets of names of the settings (transports,
//! log levels, adapter kinds). Declared before the layers, which use it.

/// Closed sets of names (transports, levels, ...) parse case-insensitively, so
/// `DEBUG` from an environment variable works, and a wrong name is reported
/// with the accepted ones.
macro_rules! named_enum {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every accepted name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name),+
                }
            }
        }

        impl std::str::FromStr for $ty {
            type Err = String;

            fn from_str(name: &str) -> Result<Self, String> {
                $(if name.eq_ignore_ascii_case($name) {
                    return Ok(Self::$variant);
                })+
                Err(format!(
                    "unknown {} {name:?}, expected one of {}",
                    $what,
                    Self::NAMES.join(", ")
                ))
            }
        }

        impl TryFrom<String> for $ty {
            type Error = String;

            fn try_from(name: String) -> Result<Self, String> {
                name.parse()
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        // Comparing with the configuration name (`t == "polling"`) reads like
        // the TOML it came from.
        impl PartialEq<str> for $ty {
            fn eq(&self, name: &str) -> bool {
                self.as_str() == name
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, name: &&str) -> bool {
                self.as_str() == *name
            }
        }

        // Loggable as its configuration name (`"adapter" => settings.adapter.kind`).
        impl slog::Value for $ty {
            fn serialize(
                &self,
                _record: &slog::Record<'_>,
                key: slog::Key,
                serializer: &mut dyn slog::Serializer,
            ) -> slog::Result {
                serializer.emit_str(key, self.as_str())
            }
        }
    };
}
