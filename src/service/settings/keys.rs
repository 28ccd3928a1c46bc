//! The keys `config/default.toml` defines, which are exactly the keys
//! [`Settings`](super::Settings) accepts: every field of every section has its
//! default there (`Settings::default()` deserializes that file alone, and serde
//! refuses a missing field), and the file has no other key (every section
//! denies unknown fields). So whether a key is known, and which keys its
//! section has, is read off the compiled-in file, not off serde's messages.
//!
//! The exception is a map-valued setting (`log.modules`): its keys are the
//! user's, its table in the file is empty, and every key inside it is known.

use super::load::embedded_defaults;

/// Tables whose keys are the user's (map-valued settings), not field names.
const OPEN_TABLES: &[&str] = &["log.modules"];

/// The first key of a path that `config/default.toml` does not define.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Unknown {
    /// Its index in the path: 0 for a section, 1 for a key of a section.
    pub(super) depth: usize,
    /// The keys the table holding it does define, sorted.
    pub(super) expected: Vec<String>,
}

/// The first key of `path` (keys from the root) that `config/default.toml`
/// does not define; `None` when it defines every one, or the path goes on
/// into a value or a map-valued setting.
pub(super) fn first_unknown(path: &[&str]) -> Option<Unknown> {
    let defaults = config::Source::collect(&embedded_defaults())
        .expect("config/default.toml parses (Settings::default() relies on it too)");
    let mut table = &defaults;
    for (depth, key) in path.iter().enumerate() {
        if OPEN_TABLES.contains(&path[..depth].join(".").as_str()) {
            return None;
        }
        let Some(value) = table.get(*key) else {
            let mut expected: Vec<String> = table.keys().cloned().collect();
            expected.sort();
            return Some(Unknown { depth, expected });
        };
        match &value.kind {
            config::ValueKind::Table(inner) => table = inner,
            _ => return None,
        }
    }
    None
}

/// The key of `candidates` nearest to a misspelt `key`, when it is near
/// enough to be what was meant: at most one edit per three characters (and
/// at least one), where an edit is a character inserted, removed, replaced,
/// or swapped with its neighbour (`prot` -> `port`), case aside.
pub(super) fn nearest<'a>(key: &str, candidates: &'a [String]) -> Option<&'a str> {
    let key = key.to_lowercase();
    let limit = (key.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|candidate| (edit_distance(&key, &candidate.to_lowercase()), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate.as_str())
}

/// Optimal string alignment distance (Levenshtein plus swaps of neighbours).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j]: distance between a[..i] and b[..j].
    let mut rows = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn every_key_of_the_defaults_is_known() {
        let defaults = config::Source::collect(&embedded_defaults()).unwrap();
        for (section, value) in &defaults {
            assert_eq!(first_unknown(&[section.as_str()]), None, "{section}");
            let config::ValueKind::Table(keys) = &value.kind else {
                panic!("{section} is a table");
            };
            for key in keys.keys() {
                assert_eq!(
                    first_unknown(&[section.as_str(), key.as_str()]),
                    None,
                    "{section}.{key}"
                );
            }
        }
        for open in OPEN_TABLES {
            let path: Vec<&str> = open.split('.').collect();
            assert_eq!(first_unknown(&path), None, "{open} is in the defaults");
        }
    }

    #[test]
    fn unknown_keys_are_found_with_their_siblings() {
        let unknown = first_unknown(&["server", "prot"]).unwrap();
        assert_eq!(unknown.depth, 1);
        assert_eq!(
            unknown.expected,
            strings(&[
                "demo",
                "drain_rate_per_s",
                "host",
                "max_connections",
                "path",
                "port",
                "shutdown_timeout_ms",
                "tls",
                "trusted_proxies",
                "workers"
            ])
        );
        let unknown = first_unknown(&["servr", "port"]).unwrap();
        assert_eq!(unknown.depth, 0);
        assert!(unknown.expected.contains(&"server".to_string()));
        assert_eq!(unknown.expected.len(), 15);
    }

    #[test]
    fn map_valued_settings_and_values_have_no_unknown_keys() {
        assert_eq!(first_unknown(&["log", "modules", "riptide::room"]), None);
        assert_eq!(first_unknown(&["engine", "transports", "x"]), None);
        assert_eq!(first_unknown(&[]), None);
    }

    #[test]
    fn nearest_suggests_only_what_is_near() {
        let keys = strings(&["host", "port", "path", "ping_interval_ms"]);
        assert_eq!(nearest("prot", &keys), Some("port"));
        assert_eq!(nearest("PORT", &keys), Some("port"));
        assert_eq!(nearest("ping_interval", &keys), Some("ping_interval_ms"));
        assert_eq!(nearest("hosts", &keys), Some("host"));
        assert_eq!(nearest("address", &keys), None);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("ab", "ba"), 1);
    }
}
