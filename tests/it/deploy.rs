//! The deployment files, offline: every YAML and JSON file parses; every spendwatch config
//! they mount passes `spendwatch check` with what the deployment provides; the ports, paths
//! and metric names they refer to exist; the Kubernetes PrometheusRule and the runbooks
//! are generated from alerts/ and kept in sync. `stack` runs the dashboards and rules
//! against a real Prometheus.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

use crate::artifacts::{self, read_json, read_yaml, read_yaml_docs, rel, repo};
use crate::support::BIN;

const CURRENCIES: [&str; 4] = ["USD", "EUR", "GBP", "JPY"];

fn deploy(path: &str) -> PathBuf {
    repo().join("deploy").join(path)
}

fn text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", rel(path)))
}

fn s(v: &Yaml) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v:?}"))
}

/// The port of `HOST:PORT` or `scheme://HOST:PORT/...`.
fn port_of(addr: &str) -> u16 {
    let rest = addr.split("://").last().unwrap_or(addr);
    let hostport = rest.split('/').next().unwrap_or(rest);
    hostport
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr:?}"))
}

/// The container side of a compose `ports:` entry (`127.0.0.1:9750:9750` → 9750).
fn container_ports(service: &Yaml) -> Vec<u16> {
    service["ports"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|p| {
            s(p).rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("port")
        })
        .collect()
}

/// `listen = "..."` of a spendwatch config.
fn listen_of(config: &str) -> String {
    let v: toml::Value = toml::from_str(config).expect("config is TOML");
    v["server"]["listen"]
        .as_str()
        .expect("[server] listen")
        .to_string()
}

/// Every `http://HOST:PORT` named in a text.
fn urls(text: &str) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    for part in text.split("http://").skip(1) {
        let hostport: String = part
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
            .collect();
        if let Some((host, port)) = hostport.split_once(':') {
            if let Ok(port) = port.parse() {
                out.push((host.to_string(), port));
            }
        }
    }
    out
}

/// Runs `spendwatch check` with exactly `env` (nothing inherited but PATH).
fn check_config(config: &Path, env: &BTreeMap<String, String>) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(config)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env)
        .output()
        .expect("run spendwatch check");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn every_yaml_and_json_file_parses() {
    let mut n = 0;
    for dir in ["deploy", "dashboards", "alerts"] {
        for path in artifacts::files(dir, &[".yml", ".yaml"]) {
            assert!(!read_yaml_docs(&path).is_empty(), "{} is empty", rel(&path));
            n += 1;
        }
        for path in artifacts::files(dir, &[".json"]) {
            read_json(&path);
            n += 1;
        }
    }
    assert!(n >= 15, "only {n} files found");
}

// ---------------------------------------------------------------- docker compose

#[test]
fn compose_stack_is_consistent_and_its_config_passes_check() {
    let compose = read_yaml(&deploy("docker-compose.yml"));
    let services = &compose["services"];
    for name in ["sim", "spendwatch", "prometheus", "alertmanager", "grafana"] {
        assert!(
            services[name].is_mapping(),
            "docker-compose.yml lacks service {name}"
        );
    }

    // Host paths mounted into containers exist; the mapping container → host path is kept
    // to read the config the way the container sees it.
    let mut mounts: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    let named_volumes: BTreeSet<String> = compose["volumes"]
        .as_mapping()
        .expect("volumes")
        .keys()
        .map(|k| s(k).to_string())
        .collect();
    let mut volume_targets: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, service) in services.as_mapping().unwrap() {
        let name = s(name).to_string();
        for v in service["volumes"].as_sequence().into_iter().flatten() {
            // `${SPENDWATCH_CONFIG:-./spendwatch.toml}`: the default is what ships.
            let spec = s(v).replace(
                "${SPENDWATCH_CONFIG:-./spendwatch.toml}",
                "./spendwatch.toml",
            );
            let parts: Vec<&str> = spec.split(':').collect();
            let (source, target) = (parts[0], parts[1]);
            if named_volumes.contains(source) {
                volume_targets
                    .entry(name.clone())
                    .or_default()
                    .push(target.to_string());
                continue;
            }
            let host = repo().join("deploy").join(source);
            assert!(
                host.exists(),
                "service {name} mounts {source}, which does not exist"
            );
            mounts
                .entry(name.clone())
                .or_default()
                .insert(target.to_string(), host);
        }
    }
    for (secret, _) in services["spendwatch"]["secrets"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|v| (s(v), ()))
    {
        let file = s(&compose["secrets"][secret]["file"]);
        let host = deploy(file);
        assert!(host.exists(), "secret {secret}: {file} does not exist");
        mounts
            .entry("spendwatch".into())
            .or_default()
            .insert(format!("/run/secrets/{secret}"), host);
    }

    // The config spendwatch runs with, seen from the host: container paths of the mounts
    // replaced by their sources, environment from the service.
    let sw_mounts = &mounts["spendwatch"];
    let args: Vec<&str> = services["spendwatch"]["command"]
        .as_sequence()
        .expect("spendwatch command")
        .iter()
        .map(s)
        .collect();
    let config_in_container = args
        .iter()
        .position(|a| *a == "--config")
        .map(|i| args[i + 1])
        .expect("--config");
    let config_host = sw_mounts
        .get(config_in_container)
        .unwrap_or_else(|| panic!("{config_in_container} is not mounted into spendwatch"));
    assert_eq!(config_host, &deploy("spendwatch.toml"));
    let mut config = text(config_host);
    let mut by_length: Vec<(&String, &PathBuf)> = sw_mounts.iter().collect();
    by_length.sort_by_key(|(target, _)| std::cmp::Reverse(target.len()));
    for (target, host) in by_length {
        config = config.replace(target.as_str(), &host.display().to_string());
    }
    let dir = tempfile::tempdir().unwrap();
    let host_config = dir.path().join("spendwatch.toml");
    std::fs::write(&host_config, &config).unwrap();
    let env: BTreeMap<String, String> = services["spendwatch"]["environment"]
        .as_mapping()
        .expect("spendwatch environment")
        .iter()
        .map(|(k, v)| (s(k).to_string(), s(v).to_string()))
        .collect();
    let (ok, out) = check_config(&host_config, &env);
    assert!(
        ok,
        "deploy/spendwatch.toml fails `spendwatch check`:\n{out}"
    );
    // And without the environment compose gives it, it does not: the test is not vacuous.
    let (ok, out) = check_config(&host_config, &BTreeMap::new());
    assert!(!ok && out.contains("RACKSPACE_API_KEY"), "{out}");

    // The store lives on a named volume, so it survives container restarts.
    let raw = text(&deploy("spendwatch.toml"));
    let parsed: toml::Value = toml::from_str(&raw).unwrap();
    let store = parsed["store"]["sqlite"]["path"].as_str().expect("store");
    assert!(
        volume_targets["spendwatch"]
            .iter()
            .any(|t| store.starts_with(&format!("{t}/"))),
        "store {store} is not on a volume"
    );

    // Ports: spendwatch's listen address, its published port, Prometheus' target, the image.
    let listen = port_of(&listen_of(&raw));
    assert!(
        listen_of(&raw).starts_with("0.0.0.0:"),
        "listen on all interfaces"
    );
    assert!(container_ports(&services["spendwatch"]).contains(&listen));
    let prom = read_yaml(&deploy("prometheus.yml"));
    let job = prom["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|j| j["job_name"] == "spendwatch")
        .expect("a scrape job named spendwatch (alerts/ match job=\"spendwatch\")");
    let targets: Vec<&str> = job["static_configs"][0]["targets"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    assert_eq!(targets, vec![format!("spendwatch:{listen}")]);
    let dockerfile = text(&deploy("Dockerfile"));
    assert!(dockerfile.contains(&format!("EXPOSE {listen}")));
    assert!(dockerfile.contains(&format!("http://127.0.0.1:{listen}/healthz")));

    // Every http://SERVICE:PORT in the config reaches a service listening on that port.
    let sim_args: Vec<&str> = services["sim"]["command"]
        .as_sequence()
        .expect("sim command")
        .iter()
        .map(s)
        .collect();
    assert_eq!(sim_args[0], "sim");
    let sim_listen = sim_args
        .iter()
        .position(|a| *a == "--listen")
        .map(|i| sim_args[i + 1])
        .expect("sim --listen");
    let sim_port = port_of(sim_listen);
    let mut listening: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    for (name, service) in services.as_mapping().unwrap() {
        listening.insert(s(name).to_string(), container_ports(service));
    }
    listening.get_mut("sim").unwrap().push(sim_port);
    let mut named = 0;
    for (host, port) in urls(&raw) {
        if let Some(ports) = listening.get(&host) {
            named += 1;
            assert!(
                ports.contains(&port),
                "deploy/spendwatch.toml calls {host}:{port}, but {host} listens on {ports:?}"
            );
        }
    }
    assert!(named >= 6, "the config should poll the sim service");
    let sim_health = services["sim"]["healthcheck"]["test"]
        .as_sequence()
        .expect("sim healthcheck")
        .iter()
        .map(s)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(sim_health.contains(&format!("127.0.0.1:{sim_port}/")));

    // Prometheus: the rule glob matches alerts/*.yml through the ../alerts mount, and its
    // Alertmanager is the compose service.
    let prom_mounts = &mounts["prometheus"];
    let rule_glob = s(&prom["rule_files"][0]);
    let (rule_dir, pattern) = rule_glob.rsplit_once('/').unwrap();
    assert_eq!(pattern, "*.yml");
    assert_eq!(prom_mounts[rule_dir], deploy("../alerts"));
    assert!(!artifacts::rule_files().is_empty());
    let am = s(&prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0]);
    let (am_host, am_port) = am.split_once(':').unwrap();
    assert!(listening[am_host].contains(&am_port.parse().unwrap()));

    // Grafana: the provisioned dashboard path is where ../dashboards is mounted, the data
    // source points at the prometheus service.
    let grafana = &mounts["grafana"];
    let provider = read_yaml(&repo().join("dashboards/provisioning/dashboards.yml"));
    let path = s(&provider["providers"][0]["options"]["path"]);
    assert_eq!(grafana[path], deploy("../dashboards"));
    let ds = read_yaml(&repo().join("dashboards/provisioning/datasources.yml"));
    let url = s(&ds["datasources"][0]["url"]);
    assert_eq!(url, "http://prometheus:9090");
    assert!(listening["prometheus"].contains(&9090));
    assert_eq!(s(&ds["datasources"][0]["type"]), "prometheus");
    let home = s(&services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]);
    let home_file = home
        .strip_prefix(&format!("{path}/"))
        .expect("home in dashboards");
    assert!(repo().join("dashboards").join(home_file).exists());
}

// ---------------------------------------------------------------- Kubernetes

fn k8s(name: &str) -> PathBuf {
    deploy("kubernetes").join(name)
}

fn kind_of<'a>(docs: &'a [(PathBuf, Yaml)], kind: &str) -> &'a Yaml {
    &docs
        .iter()
        .find(|(_, d)| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in deploy/kubernetes"))
        .1
}

#[test]
fn kubernetes_manifests_are_consistent_and_their_config_passes_check() {
    let kustomization = read_yaml(&k8s("kustomization.yaml"));
    let mut docs = Vec::new();
    for r in kustomization["resources"].as_sequence().expect("resources") {
        let path = k8s(s(r));
        assert!(path.exists(), "kustomization lists {}", s(r));
        for d in read_yaml_docs(&path) {
            docs.push((path.clone(), d));
        }
    }
    let generated = &kustomization["configMapGenerator"][0];
    let config_name = s(&generated["name"]);
    let config_file = k8s(s(&generated["files"][0]));
    assert!(config_file.exists());

    let deployment = kind_of(&docs, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(
        deployment["spec"]["replicas"].as_u64(),
        Some(1),
        "one SQLite writer"
    );

    // Hardening: non-root, read-only root file system, no privilege escalation, no caps.
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());

    // The config file is the ConfigMap mounted where --config points.
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    let config_arg = args
        .iter()
        .position(|a| *a == "--config")
        .map(|i| args[i + 1])
        .unwrap();
    let mounts: BTreeMap<&str, &str> = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| (s(&m["mountPath"]), s(&m["name"])))
        .collect();
    let volumes: BTreeMap<&str, &Yaml> = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| (s(&v["name"]), v))
        .collect();
    let (config_dir, config_base) = config_arg.rsplit_once('/').unwrap();
    let config_volume = volumes[mounts[config_dir]];
    assert_eq!(s(&config_volume["configMap"]["name"]), config_name);
    assert_eq!(
        config_file.file_name().unwrap().to_str().unwrap(),
        config_base
    );

    // The config passes check with the variables the Secret provides (and not without).
    let secret = read_yaml(&k8s("secret.example.yaml"));
    assert_eq!(
        s(&container["envFrom"][0]["secretRef"]["name"]),
        s(&secret["metadata"]["name"])
    );
    let env: BTreeMap<String, String> = secret["stringData"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, _)| (s(k).to_string(), "test-value".to_string()))
        .collect();
    let (ok, out) = check_config(&config_file, &env);
    assert!(ok, "deploy/kubernetes/spendwatch.toml fails check:\n{out}");
    let (ok, _) = check_config(&config_file, &BTreeMap::new());
    assert!(!ok, "the config should need the Secret's variables");

    // The store is on a writable volume (the root file system is read-only), a PVC.
    let config = text(&config_file);
    let parsed: toml::Value = toml::from_str(&config).unwrap();
    let store = parsed["store"]["sqlite"]["path"].as_str().unwrap();
    let store_dir = store.rsplit_once('/').unwrap().0;
    let data = volumes[mounts
        .get(store_dir)
        .unwrap_or_else(|| panic!("{store_dir} is not mounted"))];
    let claim = s(&data["persistentVolumeClaim"]["claimName"]);
    assert_eq!(
        s(&kind_of(&docs, "PersistentVolumeClaim")["metadata"]["name"]),
        claim
    );

    // Ports: listen = containerPort (named http) = the Service's target, scraped by name.
    let listen = listen_of(&config);
    assert!(listen.starts_with("0.0.0.0:"));
    let port = &container["ports"][0];
    assert_eq!(
        port["containerPort"].as_u64(),
        Some(port_of(&listen).into())
    );
    let port_name = s(&port["name"]);
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(s(&container[probe]["httpGet"]["port"]), port_name);
    }
    let service = kind_of(&docs, "Service");
    assert_eq!(
        s(&service["metadata"]["name"]),
        "spendwatch",
        "job=\"spendwatch\""
    );
    assert_eq!(s(&service["spec"]["ports"][0]["targetPort"]), port_name);
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (k, v) in service["spec"]["selector"].as_mapping().unwrap() {
        assert_eq!(&labels[s(k)], v, "Service selector {k:?}");
    }
    let monitor = kind_of(&docs, "ServiceMonitor");
    assert_eq!(
        s(&monitor["spec"]["endpoints"][0]["port"]),
        s(&service["spec"]["ports"][0]["name"])
    );
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .unwrap()
    {
        assert_eq!(&service["metadata"]["labels"][s(k)], v);
    }
    kind_of(&docs, "PrometheusRule");
}

const GENERATED: &str = "# Generated from alerts/spendwatch.rules.yml by tests/it/deploy.rs: do not edit.\n\
# Regenerate: SPENDWATCH_UPDATE_DEPLOY=1 cargo test --test integration deploy\n";

/// deploy/kubernetes/prometheusrule.yaml: the rule file's `groups:` under a PrometheusRule,
/// text for text (comments and block scalars kept).
fn prometheus_rule_text() -> String {
    let rules = text(&repo().join("alerts/spendwatch.rules.yml"));
    let start = rules
        .lines()
        .position(|l| l.starts_with("groups:"))
        .expect("groups:");
    let body: Vec<String> = rules
        .lines()
        .skip(start)
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("  {l}")
            }
        })
        .collect();
    format!(
        "{GENERATED}apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: spendwatch\n  labels:\n    app.kubernetes.io/name: spendwatch\nspec:\n{}\n",
        body.join("\n")
    )
}

/// Compares a generated file; rewrites it when `var` is set.
fn assert_generated(path: &Path, expected: &str, var: &str) {
    let actual = std::fs::read_to_string(path).unwrap_or_default();
    if actual == expected {
        return;
    }
    if std::env::var_os(var).is_some() {
        std::fs::write(path, expected).unwrap();
        return;
    }
    panic!(
        "{} is out of date with alerts/. Regenerate it with:\n  {var}=1 cargo test --test integration deploy",
        rel(path)
    );
}

#[test]
fn prometheus_rule_wraps_the_alert_rules() {
    let path = k8s("prometheusrule.yaml");
    assert_generated(&path, &prometheus_rule_text(), "SPENDWATCH_UPDATE_DEPLOY");
    let wrapped = read_yaml(&path);
    let original = read_yaml(&repo().join("alerts/spendwatch.rules.yml"));
    assert_eq!(wrapped["spec"]["groups"], original["groups"]);
    assert_eq!(wrapped["kind"], "PrometheusRule");
}

// ---------------------------------------------------------------- probes and paths

#[tokio::test]
async fn probe_and_scrape_paths_answer() {
    crate::support::init();
    let state = spendwatch::server::ServerState {
        metrics: Arc::new(spendwatch::metrics::Metrics::new()),
        ready: Arc::new(AtomicBool::new(true)),
        status: Default::default(),
        store: Arc::new(spendwatch::store::SqliteStore::open_in_memory().unwrap()),
        inhibit_rules: Default::default(),
        api_token: None,
        pages: Default::default(),
        cluster: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, spendwatch::server::router(state))
            .await
            .unwrap()
    });

    // Every path a deployment file probes or scrapes on spendwatch.
    let mut paths = BTreeSet::new();
    let deployment = read_yaml(&k8s("deployment.yaml"));
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    for probe in ["livenessProbe", "readinessProbe"] {
        paths.insert(s(&container[probe]["httpGet"]["path"]).to_string());
    }
    let monitor = read_yaml(&k8s("servicemonitor.yaml"));
    paths.insert(s(&monitor["spec"]["endpoints"][0]["path"]).to_string());
    let prom = read_yaml(&deploy("prometheus.yml"));
    for job in prom["scrape_configs"].as_sequence().unwrap() {
        if job["job_name"] == "spendwatch" {
            paths.insert(s(&job["metrics_path"]).to_string());
        }
    }
    let dockerfile = text(&deploy("Dockerfile"));
    let health = dockerfile
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|r| r.find('/').map(|i| r[i..].to_string()))
        .expect("HEALTHCHECK url");
    paths.insert(health);
    let http = reqwest::Client::new();
    for path in &paths {
        let r = http
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
    }
    for want in ["/healthz", "/readyz", "/metrics"] {
        assert!(
            paths.contains(want),
            "no deployment file uses {want}: {paths:?}"
        );
    }
    server.abort();

    // The simulator's healthcheck path in compose.
    let (_sim, sim_addr) = crate::support::start_sim().await;
    let compose = read_yaml(&deploy("docker-compose.yml"));
    let test: Vec<&str> = compose["services"]["sim"]["healthcheck"]["test"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    let url = test.iter().find(|a| a.starts_with("http://")).unwrap();
    let path = &url[url[7..].find('/').unwrap() + 7..];
    let r = http
        .get(format!("http://{sim_addr}{path}"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "sim GET {path}: {}", r.status());
}

#[test]
fn dockerfile_and_systemd_unit_are_hardened() {
    let dockerfile = text(&deploy("Dockerfile"));
    assert!(dockerfile.matches("\nFROM ").count() >= 2, "multi-stage");
    assert!(dockerfile.contains("\nUSER 10001:10001"), "non-root by uid");
    assert!(dockerfile.contains("\nHEALTHCHECK "));
    let pod_uid = read_yaml(&k8s("deployment.yaml"))["spec"]["template"]["spec"]["securityContext"]
        ["runAsUser"]
        .as_u64();
    assert_eq!(pod_uid, Some(10001));

    let unit = text(&deploy("spendwatch.service"));
    for directive in [
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "StateDirectory=spendwatch",
        "SystemCallFilter=@system-service",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "ExecStart=/usr/local/bin/spendwatch run --config /etc/spendwatch/spendwatch.toml",
    ] {
        assert!(
            unit.contains(directive),
            "spendwatch.service lacks {directive:?}"
        );
    }
}

// ---------------------------------------------------------------- metric names

#[test]
fn every_metric_named_in_dashboards_and_rules_exists() {
    let reference = spendwatch::metrics::Metrics::new().reference();
    let known: BTreeSet<String> = reference.iter().flat_map(|f| f.sample_names()).collect();
    let mut used: Vec<(String, String)> = Vec::new();
    for (path, d) in artifacts::dashboards() {
        for q in artifacts::panel_queries(&d) {
            for m in artifacts::spendwatch_metric_names(&q.expr) {
                used.push((q.name(), m));
            }
        }
        for (var, selector, _) in artifacts::label_value_queries(&d) {
            for m in artifacts::spendwatch_metric_names(&selector) {
                used.push((format!("{} ${var}", rel(&path)), m));
            }
        }
    }
    for r in artifacts::rules() {
        // Expressions, and the queries and runbook steps in annotations.
        let text = serde_yaml_ng::to_string(&r.rule).unwrap();
        for m in artifacts::spendwatch_metric_names(&text) {
            used.push((format!("{} {}", r.file, r.name), m));
        }
    }
    assert!(used.len() > 40);
    let unknown: Vec<String> = used
        .iter()
        .filter(|(_, m)| !known.contains(m))
        .map(|(w, m)| format!("{w}: {m}"))
        .collect();
    assert!(
        unknown.is_empty(),
        "metrics not served by spendwatch (see Metrics::reference):\n{}",
        unknown.join("\n")
    );
}

// ---------------------------------------------------------------- dashboards

#[test]
fn dashboards_follow_the_conventions() {
    let reference = spendwatch::metrics::Metrics::new().reference();
    let money: BTreeSet<&str> = reference
        .iter()
        .filter(|f| f.labels.iter().any(|l| l == "currency"))
        .map(|f| f.name.as_str())
        .collect();
    let dashboards = artifacts::dashboards();
    let mut uids = BTreeSet::new();
    let mut problems = Vec::new();
    for want in [
        "spendwatch-overview",
        "spendwatch-unit-cost",
        "spendwatch-anomalies",
        "spendwatch-operations",
    ] {
        assert!(
            dashboards.iter().any(|(_, d)| d["uid"] == want),
            "missing dashboard {want}"
        );
    }
    for (path, d) in &dashboards {
        let uid = d["uid"].as_str().unwrap_or("");
        let stem = path.file_stem().unwrap().to_str().unwrap();
        assert_eq!(uid, stem, "{}: uid is the file name (stable)", rel(path));
        assert!(uids.insert(uid.to_string()), "uid {uid} twice");
        assert!(
            d["schemaVersion"].as_u64().unwrap_or(0) >= 39,
            "{uid}: schemaVersion"
        );
        assert!(d["id"].is_null(), "{uid}: id must be null for provisioning");
        let tags: Vec<&str> = d["tags"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Json::as_str)
            .collect();
        assert!(tags.contains(&"spendwatch"), "{uid}: tag spendwatch");
        let links = d["links"].as_array().unwrap();
        assert!(
            links
                .iter()
                .any(|l| l["type"] == "dashboards" && l["tags"][0] == "spendwatch"),
            "{uid}: links to the other spendwatch dashboards"
        );
        let vars = d["templating"]["list"].as_array().unwrap();
        assert!(
            vars.iter().any(|v| v["name"] == "datasource"
                && v["type"] == "datasource"
                && v["query"] == "prometheus"),
            "{uid}: datasource variable"
        );
        for v in vars.iter().filter(|v| v["type"] == "query") {
            if v["datasource"]["uid"] != "${datasource}" {
                problems.push(format!("{uid} ${}: datasource", v["name"]));
            }
        }
        for p in artifacts::panels(d) {
            let title = p["title"].as_str().unwrap_or("?");
            if p["type"] == "row" {
                continue;
            }
            let at = format!("{uid} / {title:?}");
            if p["datasource"]["uid"] != "${datasource}" {
                problems.push(format!("{at}: panel datasource is not ${{datasource}}"));
            }
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                problems.push(format!("{at}: no queries"));
            }
            for t in &targets {
                if t["datasource"]["uid"] != "${datasource}" {
                    problems.push(format!("{at}: target datasource"));
                }
            }
            let unit = p["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or("");
            if unit.is_empty() {
                problems.push(format!("{at}: no unit"));
            }
            let override_units: Vec<(String, String)> = p["fieldConfig"]["overrides"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|o| {
                    let matcher = o["matcher"]["options"].as_str().unwrap_or("").to_string();
                    o["properties"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|prop| prop["id"] == "unit")
                        .map(move |prop| {
                            (
                                matcher.clone(),
                                prop["value"].as_str().unwrap_or("").to_string(),
                            )
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            let names: BTreeSet<String> = targets
                .iter()
                .flat_map(|t| artifacts::spendwatch_metric_names(t["expr"].as_str().unwrap_or("")))
                .collect();
            let uses_money = names.iter().any(|n| money.contains(n.as_str()));
            // Money in a currency needs a unit per currency; a ratio of money is a percentage.
            if uses_money && unit != "percentunit" {
                let per_unit = names.iter().any(|n| n.starts_with("spendwatch_unit_cost"));
                for c in CURRENCIES {
                    let want = if per_unit {
                        format!("suffix: {c}/unit")
                    } else {
                        format!("currency{c}")
                    };
                    if !override_units
                        .iter()
                        .any(|(m, u)| m.contains(c) && *u == want)
                    {
                        problems.push(format!("{at}: no {want} override"));
                    }
                }
                for t in &targets {
                    let legend = t["legendFormat"].as_str().unwrap_or("");
                    let expr = t["expr"].as_str().unwrap_or("");
                    if artifacts::spendwatch_metric_names(expr)
                        .iter()
                        .any(|n| money.contains(n.as_str()))
                        && !legend.contains("{{currency}}")
                    {
                        problems.push(format!(
                            "{at}: legend {legend:?} lacks {{{{currency}}}}, so no currency override matches"
                        ));
                    }
                }
            }
            if names.iter().any(|n| {
                n.ends_with("_seconds")
                    && !n.ends_with("_timestamp_seconds")
                    && !n.contains("_duration_")
            }) && unit != "s"
            {
                problems.push(format!("{at}: seconds shown as {unit}"));
            }
            if names.iter().any(|n| n.ends_with("_ratio")) && unit != "percentunit" {
                problems.push(format!("{at}: a ratio shown as {unit}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "dashboard problems:\n{}",
        problems.join("\n")
    );
}

// ---------------------------------------------------------------- alerts

const RUNBOOK_BASE: &str = "https://github.com/spendwatch/spendwatch/blob/main/alerts/runbooks.md";

/// alerts/runbooks.md: one section per alert, from the rule file.
fn runbooks_text() -> String {
    let mut out = String::from(
        "# spendwatch alert runbooks\n\n\
         Generated from `alerts/spendwatch.rules.yml` by `tests/it/deploy.rs`; edit the rules, then\n\
         `SPENDWATCH_UPDATE_DOCS=1 cargo test --test integration deploy` rewrites this file. Each\n\
         alert's `runbook_url` points at its section. `{{ ... }}` are Prometheus templates, filled\n\
         in when the alert fires.\n",
    );
    for r in artifacts::rules().iter().filter(|r| !r.recording) {
        let a = &r.rule["annotations"];
        let field = |k: &str| a[k].as_str().unwrap_or("").trim().to_string();
        out.push_str(&format!(
            "\n## {}\n\n**Severity:** {} · **for:** {} · **group:** `{}`\n\n> {}\n\n{}\n\n```promql\n{}\n```\n\n### What to do\n\n{}\n",
            r.name,
            r.rule["labels"]["severity"].as_str().unwrap_or("-"),
            r.rule["for"].as_str().unwrap_or("0s"),
            r.group,
            field("summary"),
            field("description"),
            r.expr.trim_end(),
            field("runbook"),
        ));
    }
    out
}

#[test]
fn every_alert_has_annotations_a_runbook_and_a_promtool_test() {
    let tests: String = artifacts::files("alerts/tests", &[".yml", ".yaml"])
        .iter()
        .map(|p| text(p))
        .collect();
    let mut problems = Vec::new();
    let rules = artifacts::rules();
    for r in rules.iter().filter(|r| !r.recording) {
        let a = &r.rule["annotations"];
        for key in ["summary", "description", "runbook", "runbook_url"] {
            if a[key].as_str().is_none_or(|v| v.trim().is_empty()) {
                problems.push(format!("{}: no {key}", r.name));
            }
        }
        let want = format!("{RUNBOOK_BASE}#{}", r.name.to_lowercase());
        if a["runbook_url"].as_str() != Some(want.as_str()) {
            problems.push(format!("{}: runbook_url should be {want}", r.name));
        }
        if !r.rule["labels"]["severity"].is_string() {
            problems.push(format!("{}: no severity", r.name));
        }
        if !tests.contains(&format!("alertname: {}\n", r.name)) {
            problems.push(format!("{}: no alert_rule_test in alerts/tests", r.name));
        }
    }
    for r in rules.iter().filter(|r| r.recording) {
        if !tests.contains(&r.name) {
            problems.push(format!("{}: recording rule untested", r.name));
        }
    }
    // What the issue asks rules for.
    for name in [
        "SpendwatchPollsFailing",
        "SpendwatchPollsRateLimited",
        "SpendwatchNoSuccessfulPoll",
        "SpendwatchBillingDataStale",
        "SpendwatchOutboxBacklog",
        "SpendwatchNotificationsFailing",
        "SpendwatchEvaluationSlow",
        "SpendwatchBudgetForecastExceeded",
        "SpendwatchUnitCostOutsideBand",
        "SpendwatchAnomalyScoreHigh",
    ] {
        if !rules.iter().any(|r| r.name == name) {
            problems.push(format!("no alert {name}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_generated(
        &repo().join("alerts/runbooks.md"),
        &runbooks_text(),
        "SPENDWATCH_UPDATE_DOCS",
    );
}
