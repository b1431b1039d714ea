//! Every shipped config file parses and validates; bad ones are refused by field.

use alternator::daemon::config::{ConfigError, ServeConfig};

#[test]
fn shipped_serve_configs_parse_and_validate() {
    let mut n = 0;
    for entry in std::fs::read_dir("config").unwrap() {
        let p = entry.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        if p.extension().map(|e| e == "toml").unwrap_or(false) && !text.contains("[train]\n") {
            let c = ServeConfig::load(&p).unwrap_or_else(|e| panic!("{e}"));
            c.validate(&p.display().to_string()).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 1, "no serve config found");
}

#[test]
fn default_toml_matches_the_built_in_defaults() {
    let file = ServeConfig::load(std::path::Path::new("config/default.toml")).unwrap();
    let mut builtin = ServeConfig::default();
    builtin.model.path = Some("recordings/demo-model.safetensors".into());
    assert_eq!(file, builtin, "config/default.toml drifted from ServeConfig::default()");
}

#[test]
fn invalid_config_names_each_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        "[ingest]\nmax_gap_bins = 3\n[ingest.protocol_v1]\nendpoint = \"5555\"\n[record]\nqueue_bytes = 2\n[retrain]\nnice = 40\n",
    )
    .unwrap();
    let c = ServeConfig::load(&p).unwrap();
    let e = c.validate("bad.toml").unwrap_err();
    let text = e.to_string();
    for f in ["ingest.protocol_v1.endpoint", "record.queue_bytes", "retrain.nice"] {
        assert!(text.contains(f), "{f} not named in: {text}");
    }
    std::fs::write(&p, "[publish]\nsend_hwm_messages = \"lots\"\n").unwrap();
    let e = ServeConfig::load(&p).unwrap_err();
    assert!(matches!(e, ConfigError::Parse { .. }) && e.to_string().contains("send_hwm_messages"), "{e}");
}

#[test]
fn train_config_parses() {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct F {
        train: alternator::model::train::TrainConfig,
    }
    let f: F = toml::from_str(&std::fs::read_to_string("config/train.toml").unwrap()).unwrap();
    assert!(f.train.validate("train.").is_empty());
    assert_eq!(f.train, alternator::model::train::TrainConfig::default());
}
