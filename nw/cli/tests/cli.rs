//! Runs the `flexserve` binary end to end on the bundled model.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../llm-runtime/models/fortunes-q8_0.gguf"
);

fn flexserve(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flexserve"))
        .args(args)
        .output()
        .expect("run flexserve")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh scratch directory per test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("flexserve-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// keygen two devices and seal for the first; returns (dir, package).
fn sealed(name: &str) -> (PathBuf, PathBuf) {
    let d = scratch(name);
    for dev in ["dev", "other"] {
        let o = flexserve(&["keygen", "-o", s(&d.join(dev))]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let pkg = d.join("m.fsm");
    let o = flexserve(&[
        "seal",
        "--model",
        MODEL,
        "--to",
        s(&d.join("dev.pub")),
        "-o",
        s(&pkg),
        "--max-chunk",
        "65536",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    (d, pkg)
}

#[test]
fn seal_inspect_verify_round_trip() {
    let (d, pkg) = sealed("roundtrip");
    let o = flexserve(&["inspect", s(&pkg)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("recipients      1"), "{out}");
    assert!(
        out.contains("Block(0)") && out.contains("Embeddings"),
        "{out}"
    );
    let o = flexserve(&[
        "verify",
        s(&pkg),
        "--key",
        s(&d.join("dev.key")),
        "--model",
        MODEL,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("identical to the model"));
    assert!(stderr(&o).contains("MB/s"));
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn bad_inputs_fail_with_clear_errors() {
    let (d, pkg) = sealed("errors");
    let key = d.join("dev.key");
    let expect_err = |args: &[&str], want: &str| {
        let o = flexserve(args);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    };
    expect_err(&["inspect", s(&d.join("missing.fsm"))], "cannot read");
    expect_err(
        &[
            "seal",
            "--model",
            s(&key),
            "--to",
            s(&d.join("dev.pub")),
            "-o",
            s(&d.join("x")),
        ],
        "not a valid GGUF",
    );
    expect_err(
        &[
            "seal",
            "--model",
            MODEL,
            "--to",
            s(&key),
            "-o",
            s(&d.join("x")),
        ],
        "wrong kind of key file",
    );
    expect_err(
        &["verify", s(&pkg), "--key", s(&d.join("other.key"))],
        "not sealed for this device",
    );
    expect_err(&["inspect", MODEL], "bad magic");
    expect_err(&["frob"], "unknown command");

    let bytes = std::fs::read(&pkg).unwrap();
    let bad = d.join("bad.fsm");
    std::fs::write(&bad, &bytes[..bytes.len() - 7]).unwrap();
    expect_err(&["verify", s(&bad), "--key", s(&key)], "truncated");
    let mut flipped = bytes.clone();
    let n = flipped.len();
    flipped[n - 100] ^= 1;
    std::fs::write(&bad, &flipped).unwrap();
    expect_err(
        &["verify", s(&bad), "--key", s(&key)],
        "failed authentication",
    );
    let mut flipped = bytes;
    flipped[30] ^= 1; // model id
    std::fs::write(&bad, &flipped).unwrap();
    expect_err(
        &["verify", s(&bad), "--key", s(&key)],
        "header authentication failed",
    );
}

/// A report signed as the partition signs it (`flexserve_sealed::attest`) for the device
/// whose root `keygen` wrote, checked by `attest-verify`; a wrong nonce, a forged signature,
/// another package and another device are refused.
#[test]
fn attestation_reports_verify_and_forgeries_do_not() {
    use flexserve_sealed::{DeviceKeys, Package, attest::Report};
    let (d, pkg) = sealed("attest");
    let root_text = std::fs::read_to_string(d.join("dev.key")).unwrap();
    let hex = root_text.trim().rsplit(':').next().unwrap();
    let root: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let keys = DeviceKeys::from_root(&root.try_into().unwrap());
    let bytes = std::fs::read(&pkg).unwrap();
    let h = Package::parse(&bytes).unwrap().header;
    let nonce = [0x3c; 32];
    let report = Report {
        device: keys.public(),
        model_id: h.model_id,
        package_version: h.package_version,
        header_hash: h.hash,
        nonce,
    }
    .sign(&keys.sign);
    let rep = d.join("report.bin");
    std::fs::write(&rep, report).unwrap();
    let nonce_hex: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    let dev = d.join("dev.attest.pub");
    let ok = flexserve(&[
        "attest-verify",
        s(&rep),
        "--device",
        s(&dev),
        "--nonce",
        &nonce_hex,
        "--package",
        s(&pkg),
    ]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("OK: device"));
    let refused = |args: &[&str], why: &str| {
        let o = flexserve(args);
        assert!(!o.status.success());
        assert!(stderr(&o).contains(why), "{}", stderr(&o));
    };
    let other_nonce = "11".repeat(32);
    refused(
        &[
            "attest-verify",
            s(&rep),
            "--device",
            s(&dev),
            "--nonce",
            &other_nonce,
        ],
        "another nonce",
    );
    let mut forged = report;
    forged[200] ^= 1;
    let f = d.join("forged.bin");
    std::fs::write(&f, forged).unwrap();
    refused(
        &[
            "attest-verify",
            s(&f),
            "--device",
            s(&dev),
            "--nonce",
            &nonce_hex,
        ],
        "does not verify",
    );
    let other = d.join("other.attest.pub");
    refused(
        &[
            "attest-verify",
            s(&rep),
            "--device",
            s(&other),
            "--nonce",
            &nonce_hex,
        ],
        "another device",
    );
    // The recipient key is not an attestation key.
    refused(
        &[
            "attest-verify",
            s(&rep),
            "--device",
            s(&d.join("dev.pub")),
            "--nonce",
            &nonce_hex,
        ],
        "wrong kind of key file",
    );
}
