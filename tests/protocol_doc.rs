//! The Python snippets of docs/PROTOCOL.md ("Sending from Python") run as
//! written against a real daemon, so the documentation cannot drift from
//! the protocol: the code blocks are read from the file at test time, and
//! only the documented default endpoints are replaced by the test daemon's.

mod common;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use alternator::fixtures::synthetic_model;
use alternator::model::StepKernel;
use common::{config, Rig};

const DOC: &str = "docs/PROTOCOL.md";

/// The fenced `python` blocks of the section headed `heading`.
fn python_blocks(doc: &str, heading: &str) -> Vec<String> {
    let start = doc.find(heading).unwrap_or_else(|| panic!("{DOC} has no section {heading:?}"));
    let section = &doc[start + heading.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut blocks = Vec::new();
    let mut rest = section;
    while let Some(open) = rest.find("```python\n") {
        let body = &rest[open + "```python\n".len()..];
        let close = body.find("```").unwrap_or_else(|| panic!("unclosed code block in {heading:?}"));
        blocks.push(body[..close].to_string());
        rest = &body[close + 3..];
    }
    blocks
}

/// `block` with its one documented default endpoint pointed at the test daemon.
fn retarget(block: &str, documented: &str, actual: &str) -> String {
    assert_eq!(block.matches(documented).count(), 1, "the snippet no longer uses {documented}:\n{block}");
    block.replace(documented, actual)
}

fn python(code: &str) -> Command {
    let mut c = Command::new("python3");
    c.arg("-c").arg(code).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// Waits at most `limit` for `child`, killing it if it is still running.
fn wait_or_kill(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if child.try_wait().unwrap().is_none() {
        let _ = child.kill();
    }
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn the_documented_python_snippets_send_and_read_frames_as_written() {
    let doc = std::fs::read_to_string(DOC).unwrap();
    let blocks = python_blocks(&doc, "## Sending from Python");
    assert_eq!(blocks.len(), 2, "expected the sending and the reading snippet: {blocks:?}");

    let dir = tempfile::tempdir().unwrap();
    // The snippets' frames have 2 channels.
    let model = synthetic_model(2, 5);
    let rig = Rig::start(&config(dir.path()), model.clone());
    let sender = retarget(&blocks[0], "tcp://127.0.0.1:5555", &rig.daemon.ingest_endpoint);
    let reader = retarget(&blocks[1], "tcp://127.0.0.1:5556", &rig.daemon.publish_endpoint);
    let report = "\nimport json\nprint(json.dumps({'seq': seq, 't_ns': t_ns, 'flags': flags, \
                  'values': values, 'imputed': imputed, 'reset': reset}))\n";

    // The reader first (it keeps the first frame published after it connected).
    let reader = python(&format!("{reader}{report}")).spawn().expect("python3 with pyzmq must be installed");
    let subscribed = rig.daemon.counters.wait_until(Duration::from_secs(20), |c| c.subscriptions >= 2);
    let sent = if subscribed { Some(python(&sender).output().unwrap()) } else { None };
    let read = wait_or_kill(reader, Duration::from_secs(20));
    assert!(subscribed, "the reading snippet never subscribed: {}", text(&read));
    let sent = sent.unwrap();
    assert!(sent.status.success(), "the sending snippet failed: {}", text(&sent));
    assert!(read.status.success(), "the reading snippet failed: {}", text(&read));
    rig.wait_outputs(4);
    let (summary, got) = rig.finish();
    assert_eq!(summary.counters.dropped_total(), 0, "a documented frame was dropped: {:?}", summary.counters.drops);

    // The worked example (seq 7, t_ns 1 000 000, [1.5, -2.0]) and three u16
    // timesteps in one message (seqs 8-10, one shared t_ns), as the snippet sends them.
    let inputs: [[f32; 2]; 4] = [[1.5, -2.0], [0.0, 2.0], [1.0, 0.0], [3.0, 1.0]];
    let mut kernel = StepKernel::new(model.model.clone());
    let mut want = [0f32; 2];
    assert_eq!(got.len(), 4);
    for (k, (g, x)) in got.iter().zip(&inputs).enumerate() {
        kernel.step(x, &mut want);
        assert_eq!(g.seq, 7 + k as u64);
        assert_eq!(g.flags, 0);
        assert_eq!(g.values, want, "seq {}: decoded values differ from offline decoding", g.seq);
    }
    assert_eq!(got[0].t_ns, 1_000_000, "the worked example's t_ns is echoed");
    assert!(got[1].t_ns != 1_000_000 && got[1..].iter().all(|g| g.t_ns == got[1].t_ns), "one shared t_ns");

    // What the reading snippet parsed is the first decoded frame.
    let j: serde_json::Value = serde_json::from_slice(&read.stdout).unwrap();
    assert_eq!((j["seq"].as_u64(), j["t_ns"].as_u64(), j["flags"].as_u64()), (Some(7), Some(1_000_000), Some(0)));
    assert_eq!((j["imputed"].as_bool(), j["reset"].as_bool()), (Some(false), Some(false)));
    let values: Vec<f32> = j["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    assert_eq!(values, got[0].values, "the snippet's parsing gives the daemon's values");
}
