//! `--validate`: the embedded default (placeholders filled) builds and starts nothing;
//! a bad value is refused naming its path from the document root.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::process::Command;

use common::{default_yaml, EDGE};
use proxy_test_support::{closed_port, free_addr, temp::TempDir};

fn validate(yaml: &str) -> (bool, String) {
    let dir = TempDir::new("edge-validate");
    let file = dir.join("edge.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(EDGE)
        .args(["--validate", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn the_default_validates_and_a_bad_value_names_its_path() {
    let dir = TempDir::new("edge-validate-certs");
    let backends = [closed_port(), closed_port(), closed_port(), closed_port()];
    let yaml = default_yaml(free_addr(), free_addr(), &dir.join("certs"), backends);
    let (ok, text) = validate(&yaml);
    assert!(ok && text.contains("config ok"), "{text}");

    let bad = yaml.replace("max_per_source_ip: 256", "max_per_source_ip: -1");
    let (ok, text) = validate(&bad);
    assert!(!ok, "{text}");
    assert!(text.contains("listeners[0].network_filters[0]"), "{text}");

    let bad = yaml.replace(
        "{ from: 50, to: 100, zone: z2 }",
        "{ from: 50, to: 100, zone: z9 }",
    );
    let (ok, text) = validate(&bad);
    assert!(!ok, "{text}");
    assert!(text.contains("z9"), "{text}");
}
