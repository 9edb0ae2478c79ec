//! End to end: the operator's commands (`lifeboat list`, `watch`, `restore`, `audit`) as the
//! built binary, on the standard environment pointed at the local AWS, after real rescues.
//! Each test sets a scene, runs the command, and checks both what it printed and the world.

mod support;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use lifeboat::report::Outcome;
use support::{devices, snapshots_of, World, DATA_KEY, REGION};

const STORY_DEVICES: [&str; 3] = ["/dev/sda1", "/dev/sdf", "/dev/sdg"];

/// The `lifeboat` binary on the operator's standard environment, pointed at the local AWS.
fn lifeboat(w: &World) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lifeboat"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_ENDPOINT_URL", &w.aws.endpoint)
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", "operator")
        .env("AWS_SECRET_ACCESS_KEY", "operator")
        .env("RUST_LOG", "warn");
    command
}

async fn run(w: &World, args: &[&str]) -> Output {
    let mut command = lifeboat(w);
    command.args(args);
    tokio::task::spawn_blocking(move || command.output().expect("lifeboat runs"))
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// GIVEN a group `name` of one instance with the story's devices, the data volumes named;
/// WHEN the group terminates it and lifeboat handles the events (completion events included);
/// THEN the outcome, with the instance and its (device, volume) pairs.
async fn rescue(w: &World, name: &str) -> (Outcome, String, Vec<(String, String)>) {
    let instance = w.group(name, 1, &STORY_DEVICES, 900).await.remove(0);
    let volumes = w.volumes_of(&instance).await;
    for (device, volume) in &volumes {
        w.ec2
            .create_tags()
            .resources(volume)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key("Name")
                    .value(format!("{name} {device}"))
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let event = w.terminate(&instance).await.remove(0);
    let outcome = w.deliver(&event).await.unwrap().rescues[0].outcome;
    (outcome, instance, volumes)
}

fn volume_of<'a>(volumes: &'a [(String, String)], device: &str) -> &'a str {
    &volumes.iter().find(|(d, _)| d == device).unwrap().1
}

#[tokio::test]
async fn list_shows_each_rescued_set_with_its_result_and_every_device() {
    // The failing cache set is taken three times, no sooner than 15 s apart (EC2's rate).
    let w = World::new(&[("LIFEBOAT_INLINE_WAIT_SECONDS", "60")]).await;
    w.snapshots_take(0.3, &[]);
    // GIVEN a released rescue in api-db, and one in cache whose /dev/sdg never snapshots
    let (released, db, db_volumes) = rescue(&w, "api-db").await;
    assert_eq!(released, Outcome::Released);
    let cache_instance = w.group("cache", 1, &STORY_DEVICES, 900).await.remove(0);
    let cache_volumes = w.volumes_of(&cache_instance).await;
    w.snapshots_take(
        0.3,
        &[(
            volume_of(&cache_volumes, "/dev/sdg"),
            &["error", "error", "error"],
        )],
    );
    let event = w.terminate(&cache_instance).await.remove(0);
    assert_eq!(
        w.deliver(&event).await.unwrap().rescues[0].outcome,
        Outcome::FailedSafe
    );

    // WHEN the operator lists every set
    let output = run(&w, &["list"]).await;
    // THEN both are there, by result, one line per device, with size and encryption
    assert!(output.status.success(), "{}", text(&output.stderr));
    let table = text(&output.stdout);
    assert!(table.starts_with("INSTANCE"), "{table}");
    for (instance, result) in [(&db, "released"), (&cache_instance, "failed safe")] {
        let lines: Vec<&str> = table
            .lines()
            .filter(|l| l.starts_with(instance.as_str()))
            .collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines.iter().all(|l| l.contains(result)), "{table}");
    }
    assert!(
        table.contains("20 GiB") && table.contains("yes ("),
        "{table}"
    );

    // WHEN it asks for one group as JSON
    let output = run(&w, &["list", "--group", "api-db", "--json"]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let sets: Value = serde_json::from_slice(&output.stdout).unwrap();
    // THEN each device's snapshot is the completed one EC2 holds for that volume
    assert_eq!(sets.as_array().unwrap().len(), 1);
    assert_eq!(sets[0]["instance_id"], db.as_str());
    assert_eq!(sets[0]["result"], "released");
    for v in sets[0]["volumes"].as_array().unwrap() {
        let volume = volume_of(&db_volumes, v["device"].as_str().unwrap());
        assert_eq!(v["volume_id"], volume);
        let snapshots = snapshots_of(&w.ec2, volume).await;
        assert_eq!(v["snapshot_id"], snapshots[0].0.as_str());
        assert_eq!(v["state"], "completed");
        if v["device"] != "/dev/sda1" {
            assert_eq!(v["encrypted"], true);
            assert_eq!(v["kms_key_id"], DATA_KEY);
            assert_eq!(v["size_gib"], 20);
        }
    }
    // …and --since and --instance narrow it, the failed one shows which device has no copy
    let output = run(
        &w,
        &[
            "list",
            "--since",
            "1h",
            "--instance",
            &cache_instance,
            "--json",
        ],
    )
    .await;
    let sets: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(sets[0]["result"], "failed_safe");
    let sdg = sets[0]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["device"] == "/dev/sdg")
        .unwrap();
    assert_eq!(sdg["state"], "error");

    // WHEN the arguments are wrong THEN the error names them, and exits 1
    for (args, named) in [
        (vec!["list", "--since", "3y"], "--since \"3y\""),
        (
            vec!["list", "--instance", "i-nothex"],
            "--instance \"i-nothex\"",
        ),
    ] {
        let output = run(&w, &args).await;
        assert_eq!(output.status.code(), Some(1));
        assert!(
            text(&output.stderr).contains(named),
            "{}",
            text(&output.stderr)
        );
    }
    w.assert_no_data_lost();
}

#[tokio::test]
async fn watch_follows_a_rescue_in_flight_until_it_is_released() {
    let w = World::new(&[("LIFEBOAT_INLINE_WAIT_SECONDS", "0")]).await;
    // GIVEN nothing in flight THEN watch says so and exits 0
    let output = run(&w, &["watch"]).await;
    assert!(output.status.success());
    assert_eq!(text(&output.stdout).trim(), "no rescue in flight");

    // GIVEN a rescue whose snapshots take 4 s, handed back to EventBridge
    w.snapshots_take(4.0, &[]);
    let (outcome, instance, _) = rescue(&w, "api-db").await;
    assert_eq!(outcome, Outcome::Waiting);
    w.until_ec2_lists_new_snapshots().await;
    // WHEN the operator watches (not a terminal: plain lines)
    let mut watching = lifeboat(&w);
    watching
        .args(["watch", "--interval-seconds", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let watching = watching.spawn().unwrap();
    let watched = tokio::task::spawn_blocking(move || watching.wait_with_output());
    // …and the completion event arrives
    let mut released = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(event) = w
            .take_events_of("EBS Multi-Volume Snapshots Completion Status")
            .pop()
        {
            let report = w.deliver(&event).await.unwrap();
            released = report.rescues[0].outcome == Outcome::Released;
            break;
        }
    }
    assert!(released);
    // THEN watch ends by itself, with 0, having shown the hold, the limits and the release
    let output = tokio::time::timeout(Duration::from_secs(30), watched)
        .await
        .expect("watch ends once the rescue is over")
        .unwrap()
        .unwrap();
    let lines = text(&output.stdout);
    assert!(output.status.success(), "{lines}{}", text(&output.stderr));
    assert!(
        lines.contains(&format!(
            "{instance} (api-db, hook lifeboat): in flight, held"
        )),
        "{lines}"
    );
    assert!(
        lines.contains("heartbeat timeout 15m 00s") && lines.contains("global limit"),
        "{lines}"
    );
    assert!(
        lines.contains("/dev/sdf") && lines.contains("pending"),
        "{lines}"
    );
    assert!(
        lines
            .trim_end()
            .ends_with(&format!("{instance} (api-db): released")),
        "{lines}"
    );
    w.assert_no_data_lost();
}

/// The volumes attached to `instance`: device → (volume id, the volume).
async fn attached(w: &World, instance: &str) -> Vec<(String, aws_sdk_ec2::types::Volume)> {
    let reply = w
        .ec2
        .describe_volumes()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("attachment.instance-id")
                .values(instance)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut found: Vec<_> = reply
        .volumes()
        .iter()
        .map(|v| {
            (
                v.attachments()[0].device().unwrap_or_default().to_owned(),
                v.clone(),
            )
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

async fn volume_count(w: &World) -> usize {
    w.ec2
        .describe_volumes()
        .send()
        .await
        .unwrap()
        .volumes()
        .len()
}

async fn standalone(w: &World, zone: &str) -> String {
    let reply = w
        .ec2
        .run_instances()
        .image_id("ami-0123456789abcdef0")
        .instance_type("m5.large".into())
        .min_count(1)
        .max_count(1)
        .placement(
            aws_sdk_ec2::types::Placement::builder()
                .availability_zone(zone)
                .build(),
        )
        .send()
        .await
        .unwrap();
    reply.instances()[0].instance_id().unwrap().to_owned()
}

fn tag_of<'a>(volume: &'a aws_sdk_ec2::types::Volume, key: &str) -> Option<&'a str> {
    volume
        .tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

#[tokio::test]
async fn restore_puts_the_rescued_set_back_on_a_new_instance_as_it_was() {
    let w = World::new(&[]).await;
    w.snapshots_take(0.3, &[]);
    // GIVEN the story's instance, rescued and gone, and a new instance in another zone
    let (outcome, old, old_volumes) = rescue(&w, "api-db").await;
    assert_eq!(outcome, Outcome::Released);
    let new = standalone(&w, "us-east-1b").await;
    let before = volume_count(&w).await;

    // WHEN the operator asks for a dry run THEN it prints the plan and creates nothing
    let output = run(
        &w,
        &["restore", "--instance", &old, "--to", &new, "--dry-run"],
    )
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let plan = text(&output.stdout);
    assert!(
        plan.starts_with(&format!("Would restore the rescued set of {old}")),
        "{plan}"
    );
    assert!(
        plan.contains("/dev/sdf") && plan.contains("(not created)"),
        "{plan}"
    );
    assert!(
        plan.contains("skipped /dev/sda1"),
        "the boot volume stays out: {plan}"
    );
    assert_eq!(volume_count(&w).await, before);

    // WHEN it restores
    let output = run(&w, &["restore", "--instance", &old, "--to", &new, "--json"]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let done: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(done["availability_zone"], "us-east-1b");
    // THEN the data volumes are attached at their devices, as they were, saying where from
    let now_attached = attached(&w, &new).await;
    let devices: Vec<&str> = now_attached.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(devices, ["/dev/sda1", "/dev/sdf", "/dev/sdg"]);
    for (device, volume) in &now_attached[1..] {
        assert_eq!(volume.availability_zone(), Some("us-east-1b"));
        assert_eq!(volume.size(), Some(20));
        assert_eq!(volume.volume_type().map(|t| t.as_str()), Some("gp3"));
        assert_eq!(volume.encrypted(), Some(true));
        assert_eq!(volume.kms_key_id(), Some(DATA_KEY));
        assert_eq!(
            tag_of(volume, "lifeboat:restored-from-instance"),
            Some(old.as_str())
        );
        assert_eq!(
            tag_of(volume, "lifeboat:restored-from-volume"),
            Some(volume_of(&old_volumes, device))
        );
        assert_eq!(
            tag_of(volume, "Name"),
            Some(format!("api-db {device}").as_str())
        );
        let snapshot = tag_of(volume, "lifeboat:restored-from-snapshot").unwrap();
        assert_eq!(volume.snapshot_id(), Some(snapshot));
        // AND the snapshot says a restore uses it, so retention leaves its set alone
        let used = w
            .ec2
            .describe_snapshots()
            .snapshot_ids(snapshot)
            .send()
            .await
            .unwrap();
        assert!(used.snapshots()[0]
            .tags()
            .iter()
            .any(|t| t.key() == Some("lifeboat:in-use-until")));
    }

    // WHEN it restores again onto the same instance THEN the devices are taken: refused, nothing created
    let before = volume_count(&w).await;
    let output = run(&w, &["restore", "--instance", &old, "--to", &new]).await;
    assert_eq!(output.status.code(), Some(1));
    let error = text(&output.stderr);
    assert!(
        error.contains("refused, nothing was changed") && error.contains("is taken by"),
        "{error}"
    );
    assert!(error.contains("--device-map /dev/sdf=/dev/sdX"), "{error}");
    assert_eq!(volume_count(&w).await, before);
    // …and a device map moves them elsewhere
    let output = run(
        &w,
        &[
            "restore",
            "--instance",
            &old,
            "--to",
            &new,
            "--device-map",
            "/dev/sdf=/dev/sdm,/dev/sdg=/dev/sdn",
        ],
    )
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let devices: Vec<String> = attached(&w, &new)
        .await
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    assert_eq!(
        devices,
        ["/dev/sda1", "/dev/sdf", "/dev/sdg", "/dev/sdm", "/dev/sdn"]
    );

    // WHEN it asks for volumes in a zone THEN they are created there, unattached
    let output = run(
        &w,
        &[
            "restore",
            "--instance",
            &old,
            "--zone",
            "us-east-1c",
            "--json",
        ],
    )
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let done: Value = serde_json::from_slice(&output.stdout).unwrap();
    for v in done["volumes"].as_array().unwrap() {
        let id = v["volume_id"].as_str().unwrap();
        let reply = w
            .ec2
            .describe_volumes()
            .volume_ids(id)
            .send()
            .await
            .unwrap();
        let volume = &reply.volumes()[0];
        assert_eq!(volume.availability_zone(), Some("us-east-1c"));
        assert_eq!(volume.state().map(|s| s.as_str()), Some("available"));
    }

    // WHEN the target is terminated THEN refused
    let gone = standalone(&w, "us-east-1a").await;
    // (its boot volume is kept, so that the world's ledger counts no loss of ours)
    w.ec2
        .modify_instance_attribute()
        .instance_id(&gone)
        .block_device_mappings(
            aws_sdk_ec2::types::InstanceBlockDeviceMappingSpecification::builder()
                .device_name("/dev/sda1")
                .ebs(
                    aws_sdk_ec2::types::EbsInstanceBlockDeviceSpecification::builder()
                        .delete_on_termination(false)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    w.ec2
        .terminate_instances()
        .instance_ids(&gone)
        .send()
        .await
        .unwrap();
    let output = run(&w, &["restore", "--instance", &old, "--to", &gone]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("not running or stopped"),
        "{}",
        text(&output.stderr)
    );
    w.assert_no_data_lost();
}

#[tokio::test]
async fn a_set_of_42_volumes_one_with_40_tags_of_its_own_keeps_a_complete_record() {
    let w = World::new(&[("LIFEBOAT_INLINE_WAIT_SECONDS", "60")]).await;
    w.snapshots_take(1.0, &[]);
    // GIVEN an instance of 42 volumes — more descriptors than fit in one snapshot's 50 tags, so
    // each snapshot is told its own volume after EC2 created it (when EC2 may not see it yet) —
    // one of them carrying 40 tags of its own
    let devices = devices(42);
    let devices: Vec<&str> = devices.iter().map(String::as_str).collect();
    let instance = w.group("wide", 1, &devices, 900).await.remove(0);
    let volumes = w.volumes_of(&instance).await;
    assert_eq!(volumes.len(), 42);
    let heavy = volume_of(&volumes, "/dev/sdf");
    let mut tagging = w.ec2.create_tags().resources(heavy);
    for n in 0..40 {
        tagging = tagging.tags(
            aws_sdk_ec2::types::Tag::builder()
                .key(format!("team:{n:02}"))
                .value("db")
                .build(),
        );
    }
    tagging.send().await.unwrap();
    // WHEN the group terminates it
    let event = w.terminate(&instance).await.remove(0);
    assert_eq!(
        w.deliver(&event).await.unwrap().rescues[0].outcome,
        Outcome::Released
    );
    // THEN the record is complete: every volume placed at its device, nothing marked
    // incomplete. (The heavy volume's 40 tags, with the 3 kept-first tags and lifeboat's label,
    // would pass 50 on its snapshot: the set is taken without copying the volumes' tags rather
    // than refused.)
    let output = run(&w, &["list", "--instance", &instance, "--json"]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let sets: Value = serde_json::from_slice(&output.stdout).unwrap();
    let set = &sets[0];
    assert_eq!(set["record_complete"], true, "{set:#}");
    let listed = set["volumes"].as_array().unwrap();
    assert_eq!(listed.len(), 42);
    for (device, volume) in &volumes {
        let entry = listed
            .iter()
            .find(|v| v["volume_id"] == volume.as_str())
            .unwrap();
        assert_eq!(entry["device"], device.as_str());
        assert_eq!(entry["placed"], true);
        assert_eq!(entry["state"], "completed");
    }
    let heavy_entry = listed.iter().find(|v| v["volume_id"] == heavy).unwrap();
    assert_eq!(heavy_entry["volume_tags"].as_object().unwrap().len(), 0);
    let table = text(&run(&w, &["list", "--instance", &instance]).await.stdout);
    assert!(!table.contains("record incomplete"), "{table}");

    // WHEN a snapshot's descriptor is lost all the same (removed by hand)
    let snapshot = heavy_entry["snapshot_id"].as_str().unwrap();
    w.ec2
        .delete_tags()
        .resources(snapshot)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key(format!("lifeboat:volume:{heavy}"))
                .build(),
        )
        .send()
        .await
        .unwrap();
    // THEN list marks the set, and restore refuses, naming the volume it cannot place
    let table = text(&run(&w, &["list", "--instance", &instance]).await.stdout);
    assert!(table.contains("released (record incomplete)"), "{table}");
    assert!(table.contains("unknown"), "{table}");
    let new = standalone(&w, "us-east-1a").await;
    let before = volume_count(&w).await;
    let output = run(&w, &["restore", "--instance", &instance, "--to", &new]).await;
    assert_eq!(output.status.code(), Some(1));
    let error = text(&output.stderr);
    assert!(
        error.contains("record of the rescued set")
            && error.contains(&format!("{heavy} ({snapshot})")),
        "{error}"
    );
    assert_eq!(volume_count(&w).await, before);
    w.assert_no_data_lost();
}

#[tokio::test]
async fn restore_refuses_a_set_that_is_not_complete() {
    let w = World::new(&[("LIFEBOAT_INLINE_WAIT_SECONDS", "0")]).await;
    // GIVEN a rescue still in flight
    w.snapshots_take(3600.0, &[]);
    let (outcome, old, _) = rescue(&w, "api-db").await;
    assert_eq!(outcome, Outcome::Waiting);
    w.until_ec2_lists_new_snapshots().await;
    let new = standalone(&w, "us-east-1a").await;
    let before = volume_count(&w).await;
    // WHEN the operator restores from it THEN refused, naming the devices and what to do
    let output = run(&w, &["restore", "--instance", &old, "--to", &new]).await;
    assert_eq!(output.status.code(), Some(1));
    let error = text(&output.stderr);
    assert!(error.contains("is incomplete: /dev/sda1"), "{error}");
    assert!(
        error.contains(&format!("lifeboat watch --instance {old}")),
        "{error}"
    );
    assert_eq!(volume_count(&w).await, before);
    // …and an instance with no rescued set is named as such
    let output = run(&w, &["restore", "--instance", &new, "--to", &old]).await;
    assert!(text(&output.stderr).contains(&format!("no rescued set of {new}")));
    w.assert_no_data_lost();
}

#[tokio::test]
async fn audit_finds_each_risk_of_the_story_and_gates_on_the_high_ones() {
    let w = World::new(&[]).await;
    w.snapshots_take(0.0, &[]);
    // GIVEN "story": data volumes, deleted on termination, never snapshotted, and no hook
    w.group("story", 1, &STORY_DEVICES, 900).await;
    w.asg
        .delete_lifecycle_hook()
        .auto_scaling_group_name("story")
        .lifecycle_hook_name("lifeboat")
        .send()
        .await
        .unwrap();
    // …"careless": a hook lifeboat cannot hold (120 s), answering CONTINUE by default
    w.group("careless", 1, &STORY_DEVICES, 900).await;
    w.asg
        .put_lifecycle_hook()
        .auto_scaling_group_name("careless")
        .lifecycle_hook_name("lifeboat")
        .lifecycle_transition("autoscaling:EC2_INSTANCE_TERMINATING")
        .heartbeat_timeout(120)
        .default_result("CONTINUE")
        .send()
        .await
        .unwrap();
    // …"guarded": lifeboat's hook, retention on abandon, and yesterday's snapshots
    let guarded = w.group("guarded", 1, &STORY_DEVICES, 900).await.remove(0);
    w.retain_on_abandon("guarded").await;
    w.ec2
        .create_snapshots()
        .instance_specification(
            aws_sdk_ec2::types::InstanceSpecification::builder()
                .instance_id(&guarded)
                .build(),
        )
        .send()
        .await
        .unwrap();
    w.until_ec2_lists_new_snapshots().await;
    w.tag_protected("guarded").await;

    // WHEN the operator audits the account
    let output = run(&w, &["audit", "--json"]).await;
    // THEN it exits 2, and each risk is found where it is
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let findings: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let has = |group: &str, severity: &str, start: &str| {
        findings.iter().any(|f| {
            f["group"] == group
                && f["severity"] == severity
                && f["finding"].as_str().unwrap().starts_with(start)
        })
    };
    assert!(
        has("story", "high", "no termination lifecycle hook"),
        "{findings:#?}"
    );
    assert!(
        has(
            "story",
            "high",
            "volumes deleted on termination with no snapshot"
        ),
        "{findings:#?}"
    );
    assert!(
        has(
            "story",
            "medium",
            "the instance lifecycle policy does not retain"
        ),
        "{findings:#?}"
    );
    assert!(
        has("careless", "high", "heartbeat timeout 120 s"),
        "{findings:#?}"
    );
    assert!(
        has("careless", "high", "default result CONTINUE"),
        "{findings:#?}"
    );
    assert!(
        !findings
            .iter()
            .any(|f| f["group"] == "guarded" && f["severity"] != "low"),
        "{findings:#?}"
    );
    assert!(has(
        "guarded",
        "low",
        "volumes deleted on termination (a recent snapshot exists)"
    ));
    let story_volume = findings
        .iter()
        .find(|f| f["group"] == "story" && f["severity"] == "high" && f["subject"] != "group")
        .unwrap();
    assert!(story_volume["finding"]
        .as_str()
        .unwrap()
        .contains("/dev/sdf"));
    assert!(
        story_volume["finding"]
            .as_str()
            .unwrap()
            .contains(" (boot)"),
        "the boot volume dies with the instance too"
    );

    // WHEN only the guarded group is audited THEN it passes the gate, as a table
    let output = run(&w, &["audit", "--group", "guarded"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let table = text(&output.stdout);
    assert!(
        table.contains("1 group(s) audited: 0 high, 0 medium, 1 low"),
        "{table}"
    );
    assert!(table.contains("fix: "), "{table}");
    // …and a group that does not exist is named
    let output = run(&w, &["audit", "--group", "nosuch"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("--group \"nosuch\""));
    w.assert_no_data_lost();
}
