//! The house's layering, pinned: data flows one way (`src/lib.rs`, `# Layout`),
//! and no module imports a layer above its own. This test reads every
//! `use crate::…` / `crate::…` path in `src/` and fails on the first one that
//! points upward, so a change cannot quietly break the plan. The foundations
//! (`FOUNDATIONS`) sit below every layer: any layer may use them, and they use
//! nothing of the crate.

use std::path::{Path, PathBuf};

/// Layers from the bottom. `socketio` and `adapter` sit side by side: neither
/// may import the other (the adapter carries opaque frames).
const LAYERS: &[(&str, u8)] = &[
    ("engineio", 0),
    ("socketio", 1),
    ("adapter", 1),
    ("node", 2),
    ("api", 3),
    ("service", 4),
];

/// Below every layer: data structures any layer may import, which import
/// nothing of the crate themselves (each is `src/<name>.rs`).
const FOUNDATIONS: &[&str] = &["due_heap"];

fn rank(layer: &str) -> Option<u8> {
    LAYERS.iter().find(|(l, _)| *l == layer).map(|(_, r)| *r)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every layer named by a `crate::<layer>` path in `text` (in `use` lines and
/// in inline paths alike; comments and doc comments are skipped).
fn imported_layers(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.push((n + 1, name));
            rest = after;
        }
    }
    found
}

#[test]
fn no_module_imports_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    let mut checked = 0;
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let Some(layer) = rel.components().next().and_then(|c| c.as_os_str().to_str()) else {
            continue;
        };
        if let Some(base) = layer
            .strip_suffix(".rs")
            .filter(|b| FOUNDATIONS.contains(b))
        {
            let text = std::fs::read_to_string(file).expect("readable source");
            for (line, target) in imported_layers(&text) {
                checked += 1;
                if !target.is_empty() {
                    violations.push(format!(
                        "src/{}:{line}: the foundation `{base}` imports `crate::{target}`",
                        rel.display()
                    ));
                }
            }
            continue;
        }
        // `lib.rs` (the re-exports) and `main.rs` (the binary) sit on top.
        let Some(own) = rank(layer) else { continue };
        let text = std::fs::read_to_string(file).expect("readable source");
        for (line, target) in imported_layers(&text) {
            checked += 1;
            match rank(&target) {
                Some(r) if target != layer && r >= own => violations.push(format!(
                    "src/{}:{line}: `{layer}` imports `crate::{target}`, a layer at or above it",
                    rel.display()
                )),
                None if FOUNDATIONS.contains(&target.as_str()) => {}
                None if !target.is_empty() => {
                    // Root re-exports are the public API, which is above
                    // every layer: reaching for them from inside is upward.
                    violations.push(format!(
                        "src/{}:{line}: `{layer}` imports `crate::{target}` (the crate root)",
                        rel.display()
                    ))
                }
                _ => {}
            }
        }
    }
    assert!(
        checked > 50,
        "the scan found only {checked} crate paths: is it reading src/?"
    );
    assert!(
        violations.is_empty(),
        "layering broken:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_scan_sees_upward_imports() {
    // The detector itself: an upward path is found, comments are not.
    let text = "use crate::api::Namespace;\n// crate::service is fine in a comment\nlet x = crate::node::shared::X;";
    let found: Vec<String> = imported_layers(text).into_iter().map(|(_, l)| l).collect();
    assert_eq!(found, vec!["api".to_string(), "node".to_string()]);
}
