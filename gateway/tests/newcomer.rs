//! Issue 11, "a newcomer": what the README names exists, says how to get `tom` on PATH, its
//! auditor examples use ids the demo creates, and logs carry no ANSI colour codes when stderr
//! is not a terminal.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

const TOM: &str = env!("CARGO_BIN_EXE_tom");

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn readme() -> String {
    std::fs::read_to_string(repo().join("README.md")).unwrap()
}

#[test]
fn every_network_and_scripts_path_the_readme_names_exists() {
    let text = readme();
    let mut missing = Vec::new();
    for start in ["network/", "scripts/"] {
        for (at, _) in text.match_indices(start) {
            // Only paths that start a word (not `…/scripts/` inside a URL).
            if at > 0 && !matches!(text.as_bytes()[at - 1], b'`' | b' ' | b'(' | b'\n' | b'[') {
                continue;
            }
            let path: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_'))
                .collect();
            let path = path.trim_end_matches('.');
            if !repo().join(path).exists() {
                missing.push(path.to_owned());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "README names paths that do not exist: {missing:?}"
    );
}

#[test]
fn the_readme_says_how_to_get_tom_on_path() {
    assert!(readme().contains("cargo install --locked --path gateway"));
}

#[test]
fn auditor_examples_use_ids_the_demo_creates() {
    let text = readme();
    let section = &text[text.find("## For auditors").unwrap()..];
    let block = &section[section.find("```sh").unwrap()..];
    let block = &block[..block[5..].find("```").unwrap()];
    let demo = std::fs::read_to_string(repo().join("gateway/src/demo.rs")).unwrap()
        + &std::fs::read_to_string(
            repo().join("fixtures/scenarios/smart-city-traffic-lights.json"),
        )
        .unwrap();
    for line in block.lines().filter(|l| l.starts_with("tom audit ")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if matches!(
            words[2],
            "entity" | "history" | "lineage" | "prov" | "report" | "evidence"
        ) {
            let id = words[3];
            assert!(
                demo.contains(&format!("\"{id}\"")),
                "README's `{line}` uses {id}, which the demo does not create"
            );
        }
    }
}

#[test]
fn logs_have_no_colour_codes_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(TOM)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(Ok(line)) = lines.next() {
        if line.starts_with("TOM gateway listening on ") {
            break;
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let _ = child.wait();
    assert!(!stderr.is_empty(), "tom serve logs at info");
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI escape in a piped log: {stderr:?}"
    );
}
