//! `tom demo install` and the demo PKI: by default every installation issues its own demo
//! organisations (fresh keys, nothing shared with the repository or another installation); the
//! committed fixture PKI, whose private keys are public, goes in only when the operator says
//! `--insecure-public-demo-keys`, and then with a warning.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const TOM: &str = env!("CARGO_BIN_EXE_tom");

fn tom(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(TOM)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fixture_pki() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/pki")
        .to_str()
        .unwrap()
        .to_owned()
}

fn credentials(data: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(data.join("demo-credentials.json")).unwrap()).unwrap()
}

fn ca_of(pki_dir: &Path) -> String {
    std::fs::read_to_string(pki_dir.join("org1/ca.pem")).unwrap()
}

#[test]
fn default_install_issues_a_fresh_demo_pki_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for data in [&a, &b] {
        let (ok, out, err) = tom(&["demo", "install", "--data-dir", data.to_str().unwrap()]);
        assert!(ok, "{out}{err}");
        assert!(
            !err.contains("WARNING"),
            "a fresh PKI needs no warning: {err}"
        );
    }
    let pki_a = Path::new(credentials(&a)["pki"].as_str().unwrap()).to_path_buf();
    assert_eq!(pki_a, a.join("demo-pki").canonicalize().unwrap());
    let ca_a = ca_of(&pki_a);
    assert_ne!(ca_a, ca_of(&b.join("demo-pki")), "two installs share a CA");
    assert_ne!(
        ca_a,
        ca_of(Path::new(&fixture_pki())),
        "the default install uses the public fixture CA"
    );
    // A second install into the same directory keeps its PKI (the stored identities need it).
    let (ok, out, err) = tom(&["demo", "install", "--data-dir", a.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert_eq!(ca_of(&pki_a), ca_a);
}

#[test]
fn the_public_fixture_pki_needs_the_explicit_flag_and_is_announced() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let pki = fixture_pki();
    let data_arg = data.to_str().unwrap();
    let (ok, out, err) = tom(&[
        "demo",
        "install",
        "--data-dir",
        data_arg,
        "--fixture-pki",
        &pki,
    ]);
    assert!(!ok, "installed public keys without the flag: {out}");
    assert!(
        err.contains("refusing") && err.contains("--insecure-public-demo-keys"),
        "{err}"
    );
    assert!(
        !data.join("demo-credentials.json").exists() && !data.join("identities").exists(),
        "a refused install wrote to the data directory"
    );

    let (ok, out, err) = tom(&[
        "demo",
        "install",
        "--data-dir",
        data_arg,
        "--fixture-pki",
        &pki,
        "--insecure-public-demo-keys",
    ]);
    assert!(ok, "{out}{err}");
    assert!(
        err.contains("WARNING") && err.contains("private keys") && err.contains("public"),
        "{err}"
    );
    let named = credentials(&data)["pki"].as_str().unwrap().to_owned();
    assert_eq!(Path::new(&named), Path::new(&pki).canonicalize().unwrap());

    // Switching the same data directory to a fresh PKI would leave its identities unusable.
    let (ok, _, err) = tom(&["demo", "install", "--data-dir", data_arg]);
    assert!(
        !ok && err.contains("already holds demo identities"),
        "{err}"
    );
}
