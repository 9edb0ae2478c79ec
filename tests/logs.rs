//! What lifeboat writes to its logs during a rescue, read back: every line of a rescue names
//! the instance, the group and the hook; one summary line per invocation; and nothing secret —
//! the credentials never appear, even with the AWS SDK logging at trace level.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use lifeboat::report::Outcome;
use support::World;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_rescue_logs_its_context_on_every_line_and_never_a_secret() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_span_list(true)
        .with_env_filter("trace")
        .with_writer(move || writer.clone())
        .init();
    let w = World::new(&[]).await;
    w.snapshots_take(1.0, &[]);
    let instances = w.group("api-db", 1, &["/dev/sda1", "/dev/sdf"], 900).await;
    w.asg
        .terminate_instance_in_auto_scaling_group()
        .instance_id(&instances[0])
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .unwrap();
    let event = w
        .take_events_of("EC2 Instance-terminate Lifecycle Action")
        .remove(0);
    let token = event["detail"]["LifecycleActionToken"]
        .as_str()
        .unwrap()
        .to_owned();
    captured.0.lock().unwrap().clear();
    let report = w.deliver(&event).await.unwrap();
    assert_eq!(report.rescues[0].outcome, Outcome::Released);

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        !text.contains(support::SECRET_ACCESS_KEY),
        "the secret access key was logged"
    );
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let ours: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("lifeboat"))
        })
        .collect();
    assert!(ours.len() >= 3, "{} lines of lifeboat's", ours.len());
    for line in ours.iter().filter(|l| l["message"] != "invocation summary") {
        let rescue = line["spans"]
            .as_array()
            .unwrap_or_else(|| panic!("a line outside any span: {line}"))
            .iter()
            .find(|s| s["name"] == "rescue")
            .unwrap_or_else(|| panic!("a line outside the rescue's span: {line}"));
        assert_eq!(rescue["instance_id"], instances[0].as_str());
        assert_eq!(rescue["asg"], "api-db");
        assert_eq!(rescue["hook"], "lifeboat");
        assert_eq!(rescue["action"], token.as_str());
    }
    assert_eq!(
        ours.iter()
            .filter(|l| l["message"] == "invocation summary")
            .count(),
        1
    );
}
