//! The process logger, built from `[log]` settings.
//!
//! Records are filtered by module on the calling thread, then handed to
//! slog-async, whose single thread formats them to stderr: an actix worker
//! never waits on a terminal or a pipe.
//!
//! Keep the returned [`Logger`] (or a clone) alive for as long as the process
//! logs, and let the last clone drop before the process ends: dropping it stops
//! the async thread after writing what is queued. Records still queued are lost
//! if the process ends without that drop (`std::process::exit`, a logger parked
//! in a `static`).
//!
//! slog also filters at compile time: without its `max_level_*` /
//! `release_max_level_*` cargo features, `trace!` is compiled out of debug
//! builds and `debug!` and `trace!` out of release builds, whatever the
//! configuration says.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use slog::{o, Drain, FnValue, Level, Logger, OwnedKVList, PushFnValue, Record};

use super::settings::{LogFormat, LogLevel, LogSettings};

/// Records that can wait for the writer thread. A burst (a reconnect storm logs
/// per connection) fits; beyond it records are dropped and the drop is counted
/// in a later record, because blocking an actix worker on logging would stall
/// every connection it serves.
const ASYNC_CHANNEL_SIZE: usize = 8192;

/// Builds the logger described by `settings`. See the module docs for why the
/// caller must keep it alive and drop it before exit.
pub fn build_logger(settings: &LogSettings) -> Logger {
    let levels = ModuleLevels::new(settings);
    match settings.format {
        LogFormat::Term => {
            let decorator = slog_term::TermDecorator::new().stderr().build();
            // A failed write to stderr must not take the server down, so the
            // error is dropped rather than `fuse()`d into a panic.
            let drain = slog_term::FullFormat::new(decorator).build().ignore_res();
            finish(drain, levels)
        }
        LogFormat::Json => finish(json_drain(io::stderr()).ignore_res(), levels),
    }
}

fn finish<D>(drain: D, levels: ModuleLevels) -> Logger
where
    D: Drain<Ok = (), Err = slog::Never> + Send + 'static,
{
    let drain = slog_async::Async::new(drain)
        .chan_size(ASYNC_CHANNEL_SIZE)
        .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
        .thread_name("riptide-log".to_owned())
        .build();
    // The filter sits in front of the channel: slog-async serializes a
    // record's key-values on the caller's thread, so a filtered-out record
    // should never reach it.
    Logger::root(ModuleFilter { drain, levels }.ignore_res(), o!())
}

/// One JSON object per line: `ts`, `level`, `msg`, `module`, then the
/// logger's and the record's key-values.
fn json_drain<W: Write>(writer: W) -> slog_json::Json<io::LineWriter<W>> {
    // The line buffer turns serde_json's many small writes into one write per
    // record, so concurrent writers to the same pipe cannot interleave a line.
    slog_json::Json::new(io::LineWriter::new(writer))
        .set_newlines(true)
        // slog serializes a key-value list last to first: listed in reverse so
        // lines read ts, level, msg, module.
        .add_key_value(o!(
            "module" => FnValue(|record: &Record| record.module()),
            "msg" => PushFnValue(|record: &Record, ser| ser.emit(record.msg())),
            "level" => FnValue(|record: &Record| level_name(record.level())),
            "ts" => FnValue(|_: &Record| rfc3339_utc(SystemTime::now())),
        ))
        .build()
}

/// The configuration's names, so a level reads the same in `default.toml`
/// and in the logs.
fn level_name(level: Level) -> &'static str {
    from_slog(level).as_str()
}

fn from_slog(level: Level) -> LogLevel {
    match level {
        Level::Critical => LogLevel::Critical,
        Level::Error => LogLevel::Error,
        Level::Warning => LogLevel::Warning,
        Level::Info => LogLevel::Info,
        Level::Debug => LogLevel::Debug,
        Level::Trace => LogLevel::Trace,
    }
}

/// Which level applies to which module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleLevels {
    default: LogLevel,
    /// Longest prefix first, so the first match is the most specific one.
    prefixes: Vec<(String, LogLevel)>,
    /// The most verbose level anywhere, for the cheap `is_enabled` check.
    most_verbose: LogLevel,
}

impl ModuleLevels {
    pub fn new(settings: &LogSettings) -> Self {
        let mut prefixes: Vec<(String, LogLevel)> = settings
            .modules
            .iter()
            .map(|(module, level)| (module.clone(), *level))
            .collect();
        prefixes.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        let most_verbose = prefixes
            .iter()
            .map(|(_, level)| *level)
            .fold(settings.level, Ord::max);
        Self {
            default: settings.level,
            prefixes,
            most_verbose,
        }
    }

    /// The level for `module`: the longest configured prefix that matches on a
    /// `::` boundary (so `riptide::engine` does not cover `riptide::engineio`),
    /// else the global level.
    pub fn level_for(&self, module: &str) -> LogLevel {
        self.prefixes
            .iter()
            .find(|(prefix, _)| {
                module
                    .strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
            })
            .map_or(self.default, |(_, level)| *level)
    }

    pub fn enabled(&self, module: &str, level: Level) -> bool {
        from_slog(level) <= self.level_for(module)
    }
}

/// Drops records below their module's level.
struct ModuleFilter<D> {
    drain: D,
    levels: ModuleLevels,
}

impl<D: Drain> Drain for ModuleFilter<D> {
    type Ok = Option<D::Ok>;
    type Err = D::Err;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<Self::Ok, Self::Err> {
        if self.levels.enabled(record.module(), record.level()) {
            self.drain.log(record, values).map(Some)
        } else {
            Ok(None)
        }
    }

    fn is_enabled(&self, level: Level) -> bool {
        from_slog(level) <= self.levels.most_verbose && self.drain.is_enabled(level)
    }
}

/// `2024-05-01T12:34:56.789Z`. Written by hand because slog-json's own
/// timestamp would need the `time` crate as a direct dependency.
fn rfc3339_utc(now: SystemTime) -> String {
    // A clock before 1970 is broken; the epoch is as good a stamp as any.
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let second_of_day = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    fn levels(default: LogLevel, modules: &[(&str, LogLevel)]) -> ModuleLevels {
        ModuleLevels::new(&LogSettings {
            format: LogFormat::Term,
            level: default,
            modules: modules
                .iter()
                .map(|(m, l)| (m.to_string(), *l))
                .collect::<BTreeMap<_, _>>(),
        })
    }

    #[test]
    fn longest_matching_prefix_wins() {
        let levels = levels(
            LogLevel::Info,
            &[
                ("riptide", LogLevel::Warning),
                ("riptide::engineio", LogLevel::Debug),
                ("riptide::engineio::polling", LogLevel::Trace),
            ],
        );
        assert_eq!(
            levels.level_for("riptide::engineio::polling"),
            LogLevel::Trace
        );
        assert_eq!(
            levels.level_for("riptide::engineio::polling::body"),
            LogLevel::Trace
        );
        assert_eq!(
            levels.level_for("riptide::engineio::websocket"),
            LogLevel::Debug
        );
        assert_eq!(levels.level_for("riptide::engineio"), LogLevel::Debug);
        assert_eq!(levels.level_for("riptide::adapter"), LogLevel::Warning);
        assert_eq!(levels.level_for("actix_server::worker"), LogLevel::Info);
    }

    #[test]
    fn prefixes_match_whole_path_segments() {
        let levels = levels(LogLevel::Info, &[("riptide::engine", LogLevel::Trace)]);
        assert_eq!(levels.level_for("riptide::engineio"), LogLevel::Info);
        assert_eq!(levels.level_for("riptide::engine::x"), LogLevel::Trace);
    }

    #[test]
    fn enabled_compares_record_level_with_module_level() {
        let levels = levels(
            LogLevel::Info,
            &[
                ("riptide::engineio", LogLevel::Debug),
                ("riptide::noisy", LogLevel::Off),
            ],
        );
        assert!(levels.enabled("riptide::engineio", Level::Debug));
        assert!(!levels.enabled("riptide::engineio", Level::Trace));
        assert!(levels.enabled("riptide::room", Level::Info));
        assert!(!levels.enabled("riptide::room", Level::Debug));
        assert!(!levels.enabled("riptide::noisy", Level::Critical));
        assert_eq!(levels.most_verbose, LogLevel::Debug);
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = |secs: u64, millis: u64| UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis);
        assert_eq!(rfc3339_utc(at(0, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_utc(at(951_782_400, 5)), "2000-02-29T00:00:00.005Z");
        assert_eq!(
            rfc3339_utc(at(1_700_000_000, 123)),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            rfc3339_utc(at(4_107_542_399, 999)),
            "2100-02-28T23:59:59.999Z"
        );
    }

    /// A writer the test can read back after the drain wrote to it.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_carry_ts_level_msg_module_and_key_values() {
        let out = Shared::default();
        let drain = std::sync::Mutex::new(json_drain(out.clone())).ignore_res();
        let logger = Logger::root(drain, o!("node" => "a"));
        slog::debug!(logger, "session opened"; "sid" => "abc");
        drop(logger);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let line = text.lines().next().expect("one line");
        assert!(line.starts_with("{\"ts\":\""), "{line}");
        let level_at = line.find("\"level\"").unwrap();
        let msg_at = line.find("\"msg\"").unwrap();
        assert!(level_at < msg_at, "{line}");
        let module = format!("\"module\":\"{}\"", module_path!());
        for field in [
            "\"level\":\"debug\"",
            "\"msg\":\"session opened\"",
            module.as_str(),
            "\"node\":\"a\"",
            "\"sid\":\"abc\"",
        ] {
            assert!(line.contains(field), "{field} missing in {line}");
        }
    }

    #[test]
    fn both_formats_build_and_drop_cleanly() {
        for format in [LogFormat::Term, LogFormat::Json] {
            let logger = build_logger(&LogSettings {
                format,
                level: LogLevel::Critical,
                modules: BTreeMap::new(),
            });
            slog::info!(logger, "filtered out");
            drop(logger);
        }
    }
}
