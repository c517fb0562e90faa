//! Tidy: the determinism rules, checked on the source text of the simulated crates
//! (`db`, `disk`, `net`, `sim`), backing up `clippy.toml`'s disallowed methods and types.
//! Time, tasks and randomness go through `db::env::Env`; iteration order never comes from a
//! hasher; every `select!` is `biased;`.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Lines of library code (not tests), with the file and line number.
fn library_lines() -> Vec<(PathBuf, usize, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for krate in ["db", "disk", "net", "sim"] {
        rust_files(&root.join(krate).join("src"), &mut files);
    }
    let mut lines = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            // Unit tests sit at the bottom of a file; nothing after `mod tests` is library code.
            if line.trim_start().starts_with("mod tests") {
                break;
            }
            lines.push((file.clone(), n + 1, line.to_string()));
        }
    }
    lines
}

/// The one place each rule may be broken: the tokio implementation of `Env`.
const EXEMPT: &[&str] = &["db/src/env.rs"];

fn exempt(file: &Path) -> bool {
    let file = file.to_string_lossy();
    EXEMPT.iter().any(|e| file.ends_with(e))
}

#[test]
fn simulated_code_reaches_time_tasks_and_randomness_only_through_env() {
    let forbidden = [
        "Instant::now(",
        "SystemTime::now(",
        "thread_rng(",
        "rand::random",
        "rand::rng(",
        "tokio::spawn(",
        "spawn_blocking(",
        "std::thread::spawn",
        "Uuid::new_v4(",
        "tokio::time::sleep",
        "HashMap",
        "HashSet",
    ];
    let lines = library_lines();
    assert!(lines.len() > 2000, "scanned only {} lines", lines.len());
    let mut found = Vec::new();
    for (file, n, line) in lines {
        let code = line.split("//").next().unwrap_or("");
        for pattern in forbidden {
            if code.contains(pattern) && !exempt(&file) {
                found.push(format!(
                    "{}:{n}: {pattern}: {}",
                    file.display(),
                    line.trim()
                ));
            }
        }
    }
    assert!(found.is_empty(), "determinism leaks:\n{}", found.join("\n"));
}

#[test]
fn every_select_is_biased() {
    let lines = library_lines();
    let mut found = Vec::new();
    for (i, (file, n, line)) in lines.iter().enumerate() {
        if line.contains("select!") && !line.trim_start().starts_with("//") {
            let next: String = lines[i + 1..(i + 3).min(lines.len())]
                .iter()
                .map(|(_, _, l)| l.as_str())
                .collect();
            if !next.contains("biased;") {
                found.push(format!("{}:{n}", file.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "select! without biased;:\n{}",
        found.join("\n")
    );
}
