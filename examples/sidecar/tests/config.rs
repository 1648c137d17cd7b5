//! `sidecar --config FILE --validate`: a good file passes, bad files fail naming the
//! field path.

use crate::common;

use std::{ffi::OsStr, time::Duration};

use common::*;
use proxy_test_support::{temp::TempDir, with_timeout};

const LIMIT: Duration = Duration::from_secs(30);

const GOOD: &str = r#"
admin:
  address: "127.0.0.1:0"
listeners:
  - name: main
    address: "127.0.0.1:0"
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - name: r
            match: { path: { prefix: "/" } }
            cluster: app
            timeout: 2s
clusters:
  - name: app
    connect_timeout: 250ms
    endpoints: ["127.0.0.1:9"]
"#;

/// Runs `--validate` on `yaml`; returns (success, stdout, stderr).
async fn validate(yaml: &str) -> (bool, String, String) {
    let dir = TempDir::new("validate");
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let out = run_sidecar(
        &[
            OsStr::new("--config"),
            path.as_os_str(),
            OsStr::new("--validate"),
        ],
        Duration::from_secs(15),
    )
    .await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn good_file_validates() {
    with_timeout(LIMIT, async {
        let (ok, stdout, stderr) = validate(GOOD).await;
        assert!(
            ok,
            "a good config must validate; stdout: {stdout}\nstderr: {stderr}"
        );
        assert!(
            stdout.contains("config ok"),
            "prints \"config ok\": {stdout:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn unknown_field_is_rejected_naming_it() {
    with_timeout(LIMIT, async {
        let yaml = GOOD.replace(
            "    connect_timeout: 250ms\n",
            "    connect_timeout: 250ms\n    bogus: 1\n",
        );
        assert_ne!(yaml, GOOD);
        let (ok, stdout, stderr) = validate(&yaml).await;
        assert!(!ok, "unknown field must fail; stdout: {stdout}");
        assert!(
            stderr.contains("bogus"),
            "stderr names the unknown field `bogus`: {stderr}"
        );
        assert!(
            stderr.contains("clusters[0]"),
            "stderr names where it is (clusters[0]): {stderr}"
        );

        let (ok, _, stderr) = validate(&format!("{GOOD}bogus_top: true\n")).await;
        assert!(!ok, "unknown top-level field must fail");
        assert!(stderr.contains("bogus_top"), "{stderr}");
    })
    .await;
}

#[tokio::test]
async fn bad_duration_is_rejected_naming_the_field() {
    with_timeout(LIMIT, async {
        let yaml = GOOD.replace("connect_timeout: 250ms", "connect_timeout: 5 parsecs");
        let (ok, stdout, stderr) = validate(&yaml).await;
        assert!(!ok, "bad duration must fail; stdout: {stdout}");
        assert!(
            stderr.contains("clusters[0].connect_timeout"),
            "stderr names clusters[0].connect_timeout: {stderr}"
        );
    })
    .await;
}

#[tokio::test]
async fn route_to_unknown_cluster_is_rejected_naming_the_route() {
    with_timeout(LIMIT, async {
        let yaml = GOOD.replace("cluster: app", "cluster: nope");
        let (ok, stdout, stderr) = validate(&yaml).await;
        assert!(
            !ok,
            "route to a missing cluster must fail; stdout: {stdout}"
        );
        assert!(
            stderr.contains("listeners[0].virtual_hosts[0].routes[0].cluster"),
            "stderr names the route's cluster field: {stderr}"
        );
        assert!(
            stderr.contains("nope"),
            "stderr names the missing cluster: {stderr}"
        );
    })
    .await;
}

#[tokio::test]
async fn bad_address_and_missing_file_are_rejected() {
    with_timeout(LIMIT, async {
        let yaml = GOOD.replacen(
            "address: \"127.0.0.1:0\"\nlisteners",
            "address: \"not-an-address\"\nlisteners",
            1,
        );
        assert_ne!(yaml, GOOD);
        let (ok, _, stderr) = validate(&yaml).await;
        assert!(!ok, "bad admin address must fail");
        assert!(
            stderr.contains("admin.address"),
            "stderr names admin.address: {stderr}"
        );

        let out = run_sidecar(
            &[
                OsStr::new("--config"),
                OsStr::new("/nonexistent/sidecar-config.yaml"),
                OsStr::new("--validate"),
            ],
            Duration::from_secs(15),
        )
        .await;
        assert!(!out.status.success(), "a missing file must fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("/nonexistent/sidecar-config.yaml"),
            "stderr names the file: {stderr}"
        );
    })
    .await;
}
